"""gunicorn worker classes whose event loop is a pyloop loop.

    gunicorn -k pyloop.workers.UvicornWorker  app:asgi_app     # ASGI (FastAPI, Starlette...) via uvicorn
    gunicorn -k pyloop.workers.GunicornWebWorker app:web_app   # aiohttp.web Application

Each worker process makes its own loop with pyloop.new_event_loop() after the
fork (a loop cannot cross a fork), without installing an event loop policy:
policies are deprecated from Python 3.14 on, and a policy would also change
what unrelated code in the worker gets from asyncio.new_event_loop().

Importing this module needs gunicorn; each class needs its server package
(uvicorn or aiohttp) only when it is used.
"""
import asyncio
import logging
import signal
import sys

from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker

import pyloop

__all__ = ("UvicornWorker", "GunicornWebWorker")


class UvicornWorker(Worker):
    """Serve an ASGI application with uvicorn's HTTP server on a pyloop loop."""

    # Options passed to uvicorn.Config; subclasses may change "http" (h11, httptools).
    # "loop": "none" because the loop is ours: uvicorn must not pick one.
    CONFIG_KWARGS = {"loop": "none", "http": "auto"}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        from uvicorn.config import Config

        # uvicorn logs through its own loggers; send them where gunicorn's go.
        for name, source in (("uvicorn.error", self.log.error_log),
                             ("uvicorn.access", self.log.access_log)):
            logger = logging.getLogger(name)
            logger.handlers = source.handlers
            logger.setLevel(source.level)
            logger.propagate = False

        kwargs = {
            "app": None,  # the application is loaded by gunicorn (self.wsgi)
            "log_config": None,
            "timeout_keep_alive": self.cfg.keepalive,
            "timeout_notify": self.timeout,
            "callback_notify": self._notify_arbiter,
            "limit_max_requests": self.max_requests,
            "forwarded_allow_ips": self.cfg.forwarded_allow_ips,
        }
        if self.cfg.is_ssl:
            opts = self.cfg.ssl_options
            kwargs.update(
                ssl_keyfile=opts.get("keyfile"), ssl_certfile=opts.get("certfile"),
                ssl_keyfile_password=opts.get("password"),
                ssl_version=opts.get("ssl_version"), ssl_cert_reqs=opts.get("cert_reqs"),
                ssl_ca_certs=opts.get("ca_certs"), ssl_ciphers=opts.get("ciphers"))
        backlog = self.cfg.settings["backlog"].value
        if backlog:
            kwargs["backlog"] = backlog
        kwargs.update(self.CONFIG_KWARGS)
        self.config = Config(**kwargs)

    def init_signals(self):
        # uvicorn's Server installs its own SIGINT/SIGTERM handling once serving;
        # gunicorn's Python-level handlers would otherwise swallow them (and
        # SIGCHLD, which would hide the exit codes of the app's subprocesses).
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, self.handle_usr1)
        signal.siginterrupt(signal.SIGUSR1, False)

    async def _notify_arbiter(self):
        self.notify()

    async def _serve(self):
        from uvicorn.server import Server

        self.config.app = self.wsgi
        server = Server(config=self.config)
        # gunicorn's master sends SIGQUIT to its workers on a quick shutdown
        # (its own SIGQUIT or SIGINT); uvicorn's server watches SIGINT and SIGTERM
        # only. gunicorn's handle_exit would only clear self.alive, which uvicorn
        # never reads: ask the server itself to stop.
        def stop_server():
            server.should_exit = True
        asyncio.get_running_loop().add_signal_handler(signal.SIGQUIT, stop_server)
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

    def run(self):
        pyloop.run(self._serve())


def _make_aiohttp_worker():
    from aiohttp.worker import GunicornWebWorker as AiohttpWorker

    class GunicornWebWorker(AiohttpWorker):
        """Serve an aiohttp.web Application (or an async factory of one) on a
        pyloop loop. Request handling is aiohttp's own worker; only the loop differs."""

        def init_process(self):
            # aiohttp's init_process makes the loop with asyncio.new_event_loop();
            # make ours and go straight on to gunicorn's set-up, which calls run().
            self.loop = pyloop.new_event_loop()
            asyncio.set_event_loop(self.loop)
            Worker.init_process(self)

    GunicornWebWorker.__module__ = __name__
    GunicornWebWorker.__qualname__ = "GunicornWebWorker"
    return GunicornWebWorker


def __getattr__(name):
    # Built on first use so that this module imports without aiohttp installed.
    if name == "GunicornWebWorker":
        cls = globals()[name] = _make_aiohttp_worker()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
