"""pyloop.Loop: the C core (pyloop._core.Loop) plus the cold orchestration that
the stdlib keeps in Python too: run_until_complete, executors, async generator
hooks, the exception handler, and signal handlers.

The per-callback path (call_soon, call_later, call_at, call_soon_threadsafe,
time, get_debug, create_future and the run loop itself) is C.
"""

import asyncio
import concurrent.futures
import contextvars
import errno
import inspect
import os
import signal
import socket
import sys
import threading
import traceback
import warnings
import weakref
try:
    import ssl
except ImportError:  # a Python built without ssl: no TLS, as the stdlib
    ssl = None
from asyncio import (base_events, constants, coroutines, events, futures, selector_events,
                     sslproto, streams, tasks, transports, trsock, unix_events)
from asyncio.log import logger

from . import _core, _dns, _stdlib, _subprocess

__all__ = ("Loop",)

_PY312 = sys.version_info >= (3, 12)
_PY313 = sys.version_info >= (3, 13)
# accept() errors that mean "out of resources": the stdlib pauses accepting.
_ACCEPT_EXHAUSTED = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))
# create_task(coro, **kwargs) passes every keyword to the Task/factory from
# 3.13.3 (and 3.14) on; earlier versions take only name and context.
_CREATE_TASK_KWARGS = sys.version_info >= (3, 13, 3)


def _set_running_loop(loop):
    """Register `loop` as this thread's running loop with every
    implementation asyncio has: the one installed as
    events._set_running_loop, and both the C (_asyncio) and pure-Python ones
    behind it. Code may use either: the C Task checks the C one, and 3.14's
    tests install the Python ones (TestPyGetEventLoop) next to the C Task
    that pyloop's create_task makes."""
    done = []
    for setter in (events._set_running_loop, _stdlib.PY_SET_RUNNING_LOOP,
                   _stdlib.C_SET_RUNNING_LOOP):
        if setter is not None and setter not in done:
            setter(loop)
            done.append(setter)


# Python 3.13+ keeps a server's connections in Server._clients.
_SERVER_CLIENTS = sys.version_info >= (3, 13)


def _sighandler_noop(signum, frame):
    """Python-level handler for signals owned by add_signal_handler: its only
    job is to make Python write the signal number to the wakeup fd."""


class _TransportMap(weakref.WeakValueDictionary):
    """loop._transports, which the stdlib's code reads to refuse an fd an open
    transport uses ("File descriptor ... is used by transport"). What Python
    code registers is kept as the stdlib keeps it; pyloop's stream transports
    are found through the loop (csrc/stream.c keeps them by fd while they
    are open), without a weak reference and its callback per connection."""

    def __init__(self, loop):
        super().__init__()
        self._loop = weakref.ref(loop)  # no cycle: a loop goes when dropped

    def _stream(self, fd):
        loop = self._loop()
        return None if loop is None else loop._fd_transport(fd)

    def __getitem__(self, fd):
        transport = self._stream(fd)
        return transport if transport is not None else super().__getitem__(fd)

    def get(self, fd, default=None):
        transport = self._stream(fd)
        return transport if transport is not None else super().get(fd, default)

    def __contains__(self, fd):
        return self._stream(fd) is not None or super().__contains__(fd)

    # The stdlib's sendfile takes the transport out while sock_sendfile
    # uses its fd, and puts it back after.
    def __setitem__(self, fd, transport):
        loop = self._loop()
        if loop is None or not loop._set_fd_transport(fd, transport):
            super().__setitem__(fd, transport)

    def __delitem__(self, fd):
        loop = self._loop()
        if loop is None or not loop._set_fd_transport(fd, None):
            super().__delitem__(fd)

    def values(self):
        # the stream transports that have closed (the stdlib keeps them
        # until they are collected) are left out
        loop = self._loop()
        return [*(loop._open_streams() if loop is not None else ()), *super().values()]


class Loop(_core.Loop, asyncio.AbstractEventLoop):
    """An asyncio event loop on libuv."""

    # name resolution on libuv's thread pool (csrc/dns.c)
    getaddrinfo = _dns.getaddrinfo
    getnameinfo = _dns.getnameinfo

    def __init__(self):
        self._default_executor = None
        self._executor_shutdown_called = False
        self._exception_handler = None
        self._asyncgens = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._signal_handlers = {}
        self._transports = _TransportMap(self)
        self._unix_server_sockets = {}  # used by 3.13's create_unix_server cleanup
        self._old_wakeup_fd = None
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth = None
        self._set_debug_flag(coroutines._is_debug_mode())
        if os.environ.get("PYLOOP_MONITOR"):
            from . import monitor
            monitor._enable_from_env(self)

    def __setattr__(self, name, value):
        # `loop.time = f` (tests and libraries mock the clock): the C core
        # then reads its timers' clock through f, as the stdlib's loop reads
        # self.time(). Every other attribute is stored as usual.
        if name == "time":
            self._set_time_override(value if callable(value) else None)
        super().__setattr__(name, value)

    def __delattr__(self, name):
        super().__delattr__(name)
        if name == "time":
            self._set_time_override(None)

    def __repr__(self):
        return (f"<{self.__class__.__name__} running={self.is_running()} "
                f"closed={self.is_closed()} debug={self.get_debug()}>")

    # ---- running ------------------------------------------------------------

    def _check_closed(self):
        if self.is_closed():
            raise RuntimeError("Event loop is closed")

    def _check_running(self):
        if self.is_running():
            raise RuntimeError("This event loop is already running")
        if events._get_running_loop() is not None:
            raise RuntimeError(
                "Cannot run the event loop while another loop is running")

    def run_forever(self):
        """Run until stop() is called."""
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self.get_debug())
        old_hooks = sys.get_asyncgen_hooks()
        in_main = threading.current_thread() is threading.main_thread()
        try:
            sys.set_asyncgen_hooks(firstiter=self._asyncgen_firstiter_hook,
                                   finalizer=self._asyncgen_finalizer_hook)
            _set_running_loop(self)
            if in_main:
                self._install_wakeup_fd()
            self._run()
        finally:
            if in_main:
                self._restore_wakeup_fd()
            _set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_hooks)

    def close(self):
        """Close the loop: drop pending callbacks, close libuv, shut the
        default executor down without waiting. Not allowed while running."""
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        if self.get_debug():
            logger.debug("Close %r", self)
        _subprocess.loop_closing(self)
        self._close()
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)
        if self._signal_handlers:
            if sys.is_finalizing():
                warnings.warn(f"Closing the loop {self!r} on interpreter shutdown "
                              f"stage, skipping signal handlers removal",
                              ResourceWarning, source=self)
                self._signal_handlers.clear()
            else:
                for sig in list(self._signal_handlers):
                    self.remove_signal_handler(sig)

    # ---- monitoring (pyloop.monitor) -------------------------------------------

    def utilization(self, previous=None):
        """Utilization(idle, active, utilization): seconds blocked in the poll,
        seconds running and the running share, since pyloop.monitor.enable()
        or, given an earlier sample, since it."""
        from . import monitor
        return monitor.utilization(self, previous)

    # ---- debug --------------------------------------------------------------

    def set_debug(self, enabled):
        self._set_debug_flag(enabled)
        if self.is_running():
            self.call_soon_threadsafe(self._set_coroutine_origin_tracking, enabled)

    # ---- tasks --------------------------------------------------------------

    def _create_task_with_factory(self, coro, kwargs):
        # Called by the C create_task when a task factory is set.
        if _CREATE_TASK_KWARGS:
            return self._task_factory(self, coro, **kwargs)
        name = kwargs.get("name")
        context = kwargs.get("context")
        if context is None:
            task = self._task_factory(self, coro)
        else:
            task = self._task_factory(self, coro, context=context)
        if name is not None:
            if _PY313:
                task.set_name(name)
            else:
                tasks._set_task_name(task, name)
        return task

    # ---- executor -----------------------------------------------------------

    def _check_callback(self, callback, method):
        if coroutines.iscoroutine(callback) or inspect.iscoroutinefunction(callback):
            raise TypeError(f"coroutines cannot be used with {method}()")
        if not callable(callback):
            raise TypeError(
                f"a callable object was expected by {method}(), got {callback!r}")

    def run_in_executor(self, executor, func, *args):
        self._check_closed()
        if self.get_debug():
            self._check_callback(func, "run_in_executor")
        if executor is None:
            executor = self._default_executor
            if self._executor_shutdown_called:
                raise RuntimeError("Executor shutdown has been called")
            if executor is None:
                executor = concurrent.futures.ThreadPoolExecutor(
                    thread_name_prefix="asyncio")
                self._default_executor = executor
        return futures.wrap_future(executor.submit(func, *args), loop=self)

    def set_default_executor(self, executor):
        if not isinstance(executor, concurrent.futures.ThreadPoolExecutor):
            raise TypeError("executor must be ThreadPoolExecutor instance")
        self._default_executor = executor

    # ---- async generators ---------------------------------------------------

    def _asyncgen_finalizer_hook(self, agen):
        self._asyncgens.discard(agen)
        if not self.is_closed():
            self.call_soon_threadsafe(self.create_task, agen.aclose())

    def _asyncgen_firstiter_hook(self, agen):
        if self._asyncgens_shutdown_called:
            warnings.warn(
                f"asynchronous generator {agen!r} was scheduled after "
                f"loop.shutdown_asyncgens() call",
                ResourceWarning, source=self)
        self._asyncgens.add(agen)

    async def shutdown_asyncgens(self):
        """Shutdown all active asynchronous generators."""
        self._asyncgens_shutdown_called = True
        if not len(self._asyncgens):
            return
        closing = list(self._asyncgens)
        self._asyncgens.clear()
        results = await tasks.gather(*[ag.aclose() for ag in closing],
                                     return_exceptions=True)
        for result, agen in zip(results, closing):
            if isinstance(result, Exception):
                self.call_exception_handler({
                    "message": f"an error occurred during closing of "
                               f"asynchronous generator {agen!r}",
                    "exception": result,
                    "asyncgen": agen,
                })

    # ---- exception handling -------------------------------------------------

    def get_exception_handler(self):
        return self._exception_handler

    def set_exception_handler(self, handler):
        if handler is not None and not callable(handler):
            raise TypeError(f"A callable object or None is expected, got {handler!r}")
        self._exception_handler = handler

    def default_exception_handler(self, context):
        """Log the error message and the context, with a traceback of where
        the handle was created in debug mode."""
        message = context.get("message") or "Unhandled exception in event loop"
        exception = context.get("exception")
        if exception is not None:
            exc_info = (type(exception), exception, exception.__traceback__)
        else:
            exc_info = False
        current = self._current_handle
        if ("source_traceback" not in context and current is not None
                and current._source_traceback):
            context["handle_traceback"] = current._source_traceback
        lines = [message]
        for key in sorted(context):
            if key in ("message", "exception"):
                continue
            value = context[key]
            if key == "source_traceback":
                value = ("Object created at (most recent call last):\n"
                         + "".join(traceback.format_list(value)).rstrip())
            elif key == "handle_traceback":
                value = ("Handle created at (most recent call last):\n"
                         + "".join(traceback.format_list(value)).rstrip())
            else:
                value = repr(value)
            lines.append(f"{key}: {value}")
        logger.error("\n".join(lines), exc_info=exc_info)

    _make_subprocess_transport = _subprocess.make_subprocess_transport

    # ---- fd readiness callbacks -----------------------------------------------

    def add_reader(self, fd, callback, *args):
        """Call callback(*args) whenever fd is readable."""
        self._ensure_fd_no_transport(fd)
        self._add_reader(fd, callback, *args)

    def remove_reader(self, fd):
        """Stop watching fd for reading; True if a callback was removed."""
        self._ensure_fd_no_transport(fd)
        return self._remove_reader(fd)

    def add_writer(self, fd, callback, *args):
        """Call callback(*args) whenever fd is writable."""
        self._ensure_fd_no_transport(fd)
        self._add_writer(fd, callback, *args)

    def remove_writer(self, fd):
        """Stop watching fd for writing; True if a callback was removed."""
        self._ensure_fd_no_transport(fd)
        return self._remove_writer(fd)

    # ---- stream transports (networking work in progress) --------------------

    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None,
                               server=None, context=None):
        """Wrap a connected stream socket in pyloop's C transport, scheduling
        connection_made, reading and the waiter as the stdlib does."""
        # A socket another open transport owns: RuntimeError, as from the
        # stdlib (3.12+), not the FileExistsError libuv gives for its fd.
        self._ensure_fd_no_transport(sock)
        sock.setblocking(False)
        info = {"socket": trsock.TransportSocket(sock)}
        try:
            info["sockname"] = sock.getsockname()
        except OSError:
            info["sockname"] = None
        if not extra or "peername" not in extra:
            try:
                info["peername"] = sock.getpeername()
            except OSError:
                info["peername"] = None
        if extra:
            info.update(extra)
        # The context the protocol's callbacks run in: the one 3.15's server
        # and create_connection capture for the connection, else a copy of
        # the current one (the stdlib's handles copy it when scheduled).
        # (csrc/stream.c keeps it by fd for loop._transports while it is open)
        transport = self._new_stream_transport(sock, protocol, info, context)
        if server is not None:
            transport._attach_server(server)
        # As the stdlib's transport: its steps in the context given for the
        # connection (3.15's server and create_connection give one), else in
        # a copy of the current one.
        self.call_soon(protocol.connection_made, transport, context=context)
        self.call_soon(transport._start_reading, context=context)
        if waiter is not None:
            self.call_soon(futures._set_result_unless_cancelled, waiter, None)
        return transport

    # _accept_connection, the reader callback of a listening socket, is C
    # (csrc/accept.c): it accepts what waits (up to the stdlib's batch) and
    # makes each connection's protocol and transport at once, where the
    # stdlib runs a task per connection for it. It hands these two cases here.

    def _start_serving(self, protocol_factory, sock, sslcontext=None, server=None, *args,
                       **kwargs):
        # 3.13+: the stdlib's Server keeps its connections in a WeakSet, a
        # weak reference each; pyloop's set (csrc/server.c) finds the ones
        # attached in C through the loop instead. Only for that class itself
        # (a subclass may use _clients its own way), before its first
        # connection; what the set held already moves over.
        if (_SERVER_CLIENTS and type(server) is base_events.Server
                and type(server._clients) is weakref.WeakSet):
            clients = _core.ServerClients(self)
            for transport in server._clients:
                clients.add(transport)
            server._clients = clients
        return _stdlib.START_SERVING(self, protocol_factory, sock, sslcontext, server, *args,
                                     **kwargs)

    def _accept_connection_stdlib(self, *args):
        # TLS servers and debug mode take the stdlib's path as it is.
        return _stdlib.ACCEPT_CONNECTION(self, *args)

    def _accept_failed(self, exc, protocol_factory, sock, sslcontext=None, server=None,
                       backlog=100, *timeouts_and_context):
        if exc.errno not in _ACCEPT_EXHAUSTED:
            raise exc  # to the exception handler, as from the stdlib's
        # Out of fds or memory: the socket stays readable, so stop watching
        # it for a while, as the stdlib does.
        self.call_exception_handler({
            "message": "socket.accept() out of system resource",
            "exception": exc,
            "socket": trsock.TransportSocket(sock),
        })
        self._remove_reader(sock.fileno())
        self.call_later(constants.ACCEPT_RETRY_DELAY, self._start_serving, protocol_factory,
                        sock, sslcontext, server, backlog, *timeouts_and_context)

    # ---- datagram transports --------------------------------------------------

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None,
                                 extra=None):
        """Wrap a datagram socket in pyloop's C transport, scheduling
        connection_made, reading and the waiter as the stdlib does."""
        self._ensure_fd_no_transport(sock)
        # The stdlib's _SelectorTransport fills in the caller's dict itself.
        info = {} if extra is None else extra
        info["socket"] = trsock.TransportSocket(sock)
        try:
            info["sockname"] = sock.getsockname()
        except OSError:
            info["sockname"] = None
        if "peername" not in info:
            try:
                info["peername"] = sock.getpeername()
            except OSError:
                info["peername"] = None
        transport = _core.UDPTransport._new(self, sock, protocol, address, info)
        self._transports[sock.fileno()] = transport
        self.call_soon(protocol.connection_made, transport)
        # Only start reading when connection_made() has been called.
        self.call_soon(transport._start_reading)
        if waiter is not None:
            self.call_soon(futures._set_result_unless_cancelled, waiter, None)
        return transport

    def _udp_address(self, family, addr):
        """An address for UDPTransport.sendto() that is not a numeric
        (host, port) tuple: resolved as sock.sendto() would resolve it (host
        names, '' and '<broadcast>'), or the socket module's error."""
        name = "AF_INET6" if family == socket.AF_INET6 else "AF_INET"
        if not isinstance(addr, tuple):
            raise TypeError(f"{name} address must be tuple, not {type(addr).__name__}")
        if len(addr) != 2 and not (family == socket.AF_INET6 and 2 <= len(addr) <= 4):
            raise TypeError(f"{name} address must be a pair (host, port)")
        host, port, *rest = addr
        if not isinstance(host, (str, bytes, bytearray)):
            raise TypeError(f"str, bytes or bytearray expected, not {type(host).__name__}")
        if host in ("", b""):
            host = "::" if family == socket.AF_INET6 else "0.0.0.0"
        elif host in ("<broadcast>", b"<broadcast>") and family == socket.AF_INET:
            host = "255.255.255.255"
        port = port.__index__()
        if not 0 <= port <= 65535:
            raise OverflowError("sendto(): port must be 0-65535.")
        resolved = socket.getaddrinfo(host, port, family, socket.SOCK_DGRAM)[0][4]
        if family != socket.AF_INET6:
            return (resolved[0], port)
        flowinfo = rest[0] if rest else resolved[2]
        scope_id = rest[1] if len(rest) > 1 else resolved[3]
        return (resolved[0].partition("%")[0], port, flowinfo, scope_id)

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        # The C transport (csrc/pipe.c) on a FIFO or a socket; a character
        # device (None from C) is read the stdlib's way on the poller.
        transport = self._new_read_pipe_transport(pipe, protocol, extra)
        if transport is None:
            return _ReadPipeTransport(self, pipe, protocol, waiter, extra)
        return self._pipe_transport_started(transport, protocol, waiter)

    def _make_write_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        transport = self._new_write_pipe_transport(pipe, protocol, extra)
        return self._pipe_transport_started(transport, protocol, waiter)

    def _pipe_transport_started(self, transport, protocol, waiter):
        # A C pipe transport (csrc/pipe.c), then the stdlib's order of steps:
        # connection_made, reading (or, for a write pipe, watching for the
        # reader going away), the waiter.
        self.call_soon(protocol.connection_made, transport)
        self.call_soon(transport._start_reading)
        if waiter is not None:
            self.call_soon(futures._set_result_unless_cancelled, waiter, None)
        return transport

    def _make_ssl_transport(self, rawsock, protocol, sslcontext, waiter=None, *,
                            server_side=False, server_hostname=None, extra=None,
                            server=None,
                            ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
                            ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
                            context=None):
        # TLS through the stdlib's memory-BIO protocol on top of the C
        # transport (a BufferedProtocol: records are read into its buffer).
        self._ensure_fd_no_transport(rawsock)
        ssl_protocol = _SSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
        self._make_socket_transport(rawsock, ssl_protocol, extra=extra, server=server,
                                    context=context)
        return ssl_protocol._app_transport

    async def start_tls(self, transport, protocol, sslcontext, *,
                        server_side=False, server_hostname=None,
                        ssl_handshake_timeout=None, ssl_shutdown_timeout=None):
        """Upgrade `transport` to TLS; return the transport `protocol` talks
        to from now on. pyloop's own, since the stdlib's builds the stdlib's
        TLS protocol: pyloop's has its per-record path in C."""
        if ssl is None:
            raise RuntimeError("Python ssl module is not available")
        if not isinstance(sslcontext, ssl.SSLContext):
            raise TypeError(f"sslcontext is expected to be an instance of "
                            f"ssl.SSLContext, got {sslcontext!r}")
        if not getattr(transport, "_start_tls_compatible", False):
            raise TypeError(f"transport {transport!r} is not supported by start_tls()")
        done = self.create_future()
        tls = _SSLProtocol(self, protocol, sslcontext, done, server_side, server_hostname,
                           ssl_handshake_timeout=ssl_handshake_timeout,
                           ssl_shutdown_timeout=ssl_shutdown_timeout,
                           call_connection_made=False)
        # No record may reach the TLS protocol before its connection_made.
        transport.pause_reading()
        if server_side:
            # A stream server that read the peer's ClientHello before
            # upgrading (it sits in the StreamReader's buffer) hands it to
            # the TLS protocol: that data is TLS, not the app's (gh-142352).
            reader = getattr(protocol, "_stream_reader", None)
            pending = getattr(reader, "_buffer", None)
            if isinstance(protocol, streams.StreamReaderProtocol) and pending:
                tls._incoming.write(pending)
                pending.clear()
        transport.set_protocol(tls)
        steps = (self.call_soon(tls.connection_made, transport),
                 self.call_soon(transport.resume_reading))
        try:
            await done
        except BaseException:
            transport.close()
            for step in steps:
                step.cancel()
            # The failure's traceback refers to this frame: drop the frame's
            # references so nothing keeps the transport alive in a cycle.
            done = tls = steps = None
            raise
        return tls._app_transport

    async def _sendfile_fallback(self, transp, file, offset, count):
        # Read the file in an executor and write it through the transport,
        # pausing on its flow control. TLS transports are the stdlib's own
        # (_FlowControlMixin) and take the stdlib's path as they are.
        if isinstance(transp, transports._FlowControlMixin):
            return await base_events.BaseEventLoop._sendfile_fallback(
                self, transp, file, offset, count)
        if offset:
            file.seek(offset)
        chunk = min(count, 16384) if count else 16384
        buf = bytearray(chunk)
        sent = 0
        proto = _SendfileFallbackProtocol(transp)
        try:
            while not count or sent < count:
                size = min(chunk, count - sent) if count else chunk
                view = memoryview(buf)[:size]
                n = await self.run_in_executor(None, file.readinto, view)
                if not n:
                    break
                await proto.drain()
                transp.write(bytes(view[:n]))
                sent += n
            return sent
        finally:
            if sent > 0 and hasattr(file, "seek"):
                file.seek(offset + sent)
            await proto.restore()

    def _stop_serving(self, sock):
        # Stop accepting on a listening socket and close it; a Unix socket
        # created by create_unix_server(cleanup_socket=True) (3.13+) is also
        # unlinked, unless something else has replaced the file since.
        path = None
        if sock in self._unix_server_sockets:
            path = sock.getsockname()
        self._remove_reader(sock.fileno())
        sock.close()
        if path is None:
            return
        inode = self._unix_server_sockets.pop(sock)
        try:
            if os.stat(path).st_ino == inode:
                os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            logger.error("Unable to clean up listening UNIX socket %r: %r", path, err)

    # ---- signals ------------------------------------------------------------

    def _install_wakeup_fd(self):
        # While the loop sleeps in C, Python's C-level signal handler writes
        # the signal number here; that wakes the loop so Python handlers
        # (Ctrl-C's KeyboardInterrupt among them) run at once.
        try:
            self._old_wakeup_fd = signal.set_wakeup_fd(
                self._signal_wakeup_fd, warn_on_full_buffer=False)
        except (ValueError, OSError):
            self._old_wakeup_fd = None

    def _restore_wakeup_fd(self):
        old, self._old_wakeup_fd = self._old_wakeup_fd, None
        if old is None or self._signal_handlers:
            return  # our fd stays while add_signal_handler handlers exist
        try:
            signal.set_wakeup_fd(old)
        except (ValueError, OSError):
            pass

    def _check_signal(self, sig):
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def _release_wakeup_fd(self):
        # The last handler is gone: Python no longer needs to wake this loop.
        try:
            signal.set_wakeup_fd(-1)
        except (ValueError, OSError) as exc:
            logger.info("set_wakeup_fd(-1) failed: %s", exc)

    @staticmethod
    def _set_disposition(sig, handler):
        """signal.signal(sig, handler), with the stdlib loop's RuntimeError
        for a signal the process cannot catch (SIGKILL, SIGSTOP)."""
        try:
            signal.signal(sig, handler)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught") from None
            raise

    def add_signal_handler(self, sig, callback, *args):
        """Run callback(*args) on the loop each time signal `sig` arrives
        (main thread only). Python's C-level handler writes the signal number
        to the loop's wakeup fd; the loop reads it and queues the callback."""
        if coroutines.iscoroutine(callback) or inspect.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        # Only the main thread may own the wakeup fd: elsewhere set_wakeup_fd
        # raises ValueError, which the stdlib loop reports as RuntimeError.
        try:
            signal.set_wakeup_fd(self._signal_wakeup_fd, warn_on_full_buffer=False)
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc)) from None
        # a Handle queued anew (its _run) each time the signal arrives
        self._signal_handlers[sig] = events.Handle(callback, args, self, None)
        self._has_signal_handlers = True
        try:
            self._set_disposition(sig, _sighandler_noop)
            # a handled signal must not interrupt system calls with EINTR
            signal.siginterrupt(sig, False)
        except BaseException:
            # as the stdlib loop: the signal has no handler afterwards
            self._signal_handlers.pop(sig, None)
            if not self._signal_handlers:
                self._has_signal_handlers = False
                self._release_wakeup_fd()
            raise

    def remove_signal_handler(self, sig):
        """Forget the handler of `sig` and give the signal back its default
        disposition (KeyboardInterrupt for SIGINT). True if there was one."""
        self._check_signal(sig)
        if self._signal_handlers.pop(sig, None) is None:
            return False
        remaining = bool(self._signal_handlers)
        self._has_signal_handlers = remaining
        self._set_disposition(
            sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
        if not remaining:
            self._release_wakeup_fd()
        return True

    def _process_self_data(self, data):
        for signum in data:
            if signum:
                self._handle_signal(signum)

    def _handle_signal(self, sig):
        handle = self._signal_handlers.get(sig)
        if handle is None:
            return
        if handle.cancelled():
            self.remove_signal_handler(sig)
        else:
            self.call_soon(handle._run)


class _SendfileFallbackProtocol(base_events._SendfileFallbackProtocol):
    """The stdlib's stand-in protocol for loop.sendfile()'s fallback, for
    pyloop's C stream transport: the stdlib's class insists on its own
    transport base class, whose flow-control state the C transport exposes
    under the same names (_protocol_paused, _loop)."""

    def __init__(self, transp):
        self._transport = transp
        self._proto = transp.get_protocol()
        self._should_resume_reading = transp.is_reading()
        self._should_resume_writing = transp._protocol_paused
        transp.pause_reading()
        transp.set_protocol(self)
        self._write_ready_fut = transp._loop.create_future() if self._should_resume_writing else None


# The C base replaces these methods of the stdlib's SSLProtocol and calls the
# others by name. A Python whose sslproto lacks one of them (its internals
# changed) or has no ssl module (no TLSProtocol then) gets the stdlib's class
# unchanged.
_TLS_METHODS = (
    "get_buffer", "buffer_updated", "_do_read", "_do_read__copied", "_do_read__buffered",
    "_write_appdata", "_do_write", "_process_outgoing", "_control_app_writing",
    "_control_ssl_reading", "_get_write_buffer_size", "_get_read_buffer_size",
    "_get_app_transport", "_do_handshake", "_do_flush", "_do_shutdown", "_call_eof_received",
    "_start_shutdown", "_fatal_error", "_set_app_protocol")
_TLS_BASES = (
    (_core.TLSProtocol,)
    if hasattr(_core, "TLSProtocol")
    and all(callable(getattr(sslproto.SSLProtocol, name, None)) for name in _TLS_METHODS)
    else ())


class _SSLProtocol(*_TLS_BASES, sslproto.SSLProtocol):
    """The stdlib's TLS protocol with its per-record methods in C
    (csrc/tls.c): get_buffer, buffer_updated, _do_read and its two read
    steps, _write_appdata, _do_write, _process_outgoing and the flow-control
    checks. Handshake, shutdown, timeouts and errors are the stdlib's
    methods, unchanged."""

    def __init__(self, *args, **kwargs):
        # The stdlib's __init__ makes a max_size (256 KiB) bytearray for
        # get_buffer() and zero-fills it: a quarter of a megabyte of resident
        # memory per connection. pyloop's stream transport feeds the records
        # to the incoming BIO without it (csrc/tls.c, pl_tls_data_in), and
        # get_buffer() makes it at full size the first time a transport asks.
        self.max_size = 0
        try:
            super().__init__(*args, **kwargs)
        finally:
            del self.max_size

    def _get_app_transport(self):
        # the stdlib's, making pyloop's app transport
        if self._app_transport is None:
            if self._app_transport_created:
                raise RuntimeError('Creating _SSLProtocolTransport twice')
            self._app_transport = _SSLTransport(self._loop, self)
            self._app_transport_created = True
        return self._app_transport


class _SSLTransport(sslproto._SSLProtocolTransport):
    """The stdlib's TLS app transport; write() is C (csrc/tls.c)."""

    write = getattr(_core, "_tls_transport_write", sslproto._SSLProtocolTransport.write)


class _ReadPipeTransport(unix_events._UnixReadPipeTransport):
    """The stdlib's read pipe transport, for character devices (a tty; epoll
    refuses some, which libuv cannot survive), reading through the loop's
    buffer (loop._pipe_read, csrc/pipe.c) instead of os.read(fd, max_size)."""

    def __init__(self, *args):
        _core._count_transport("pipe", self)  # _core._counters(), for the tests
        super().__init__(*args)

    def _read_ready(self):
        try:
            data = self._loop._pipe_read(self._fileno)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal_error(exc, 'Fatal read error on pipe transport')
            return
        if data:
            self._protocol.data_received(data)
            return
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        self._closing = True
        self._loop._remove_reader(self._fileno)
        self._loop.call_soon(self._protocol.eof_received)
        self._loop.call_soon(self._call_connection_lost, None)


def _take_from_stdlib():
    """The stdlib's cold methods (pyloop/_stdlib.py says which and why) become
    Loop's. A name Loop defines itself must not be in that table: the table
    says exactly what is taken."""
    for name, function in _stdlib.methods().items():
        if name in vars(Loop):
            raise RuntimeError(f"pyloop._stdlib.METHODS lists {name}, which Loop defines")
        setattr(Loop, name, function)


_take_from_stdlib()


def _threadsafe_handle_debug(loop, callback, args, context):
    # call_soon_threadsafe's handle in debug mode (3.14+): made by its class,
    # which records the source traceback; the caller's frame ends it, as
    # from the stdlib's call_soon_threadsafe.
    handle = _stdlib.THREADSAFE_HANDLE(callback, args, loop, context)
    tb = handle._source_traceback
    while tb and tb[-1].filename in (__file__, events.__file__):
        del tb[-1]
    return handle


if _stdlib.THREADSAFE_HANDLE is not None:
    # From 3.14 call_soon_threadsafe returns an events._ThreadSafeHandle
    # (cancel() from another thread waits while the callback runs); the C
    # core makes it and runs the callback under its lock (csrc/handle.c).
    _core._set_threadsafe_handle(_stdlib.THREADSAFE_HANDLE, threading.RLock,
                                 _threadsafe_handle_debug)

# What the stdlib's start_tls() and sendfile() look for on a transport.
_core.TCPTransport._start_tls_compatible = True
_core.TCPTransport._sendfile_compatible = constants._SendfileMode.TRY_NATIVE

