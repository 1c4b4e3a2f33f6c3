"""pyloop.Loop: the C core (pyloop._core.Loop) plus the cold orchestration that
the stdlib keeps in Python too: run_until_complete, executors, async generator
hooks, the exception handler, and signal handlers.

The per-callback path (call_soon, call_later, call_at, call_soon_threadsafe,
time, get_debug, create_future and the run loop itself) is C.
"""

import asyncio
import concurrent.futures
import errno
import functools
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
                     sslproto, tasks, transports, trsock, unix_events)
from asyncio.log import logger

from . import _core, _subprocess

__all__ = ("Loop",)

_PY312 = sys.version_info >= (3, 12)
_PY313 = sys.version_info >= (3, 13)
# create_task(coro, **kwargs) passes every keyword to the Task/factory from
# 3.13.3 (and 3.14) on; earlier versions take only name and context.
_CREATE_TASK_KWARGS = sys.version_info >= (3, 13, 3)


def _sighandler_noop(signum, frame):
    """Python-level handler for signals owned by add_signal_handler: its only
    job is to make Python write the signal number to the wakeup fd."""


class Loop(_core.Loop, asyncio.AbstractEventLoop):
    """An asyncio event loop on libuv."""

    def __init__(self):
        self._default_executor = None
        self._executor_shutdown_called = False
        self._exception_handler = None
        self._asyncgens = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._signal_handlers = {}
        self._transports = weakref.WeakValueDictionary()
        self._unix_server_sockets = {}  # used by 3.13's create_unix_server cleanup
        self._old_wakeup_fd = None
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth = None
        self._set_debug_flag(coroutines._is_debug_mode())
        if os.environ.get("PYLOOP_MONITOR"):
            from . import monitor
            monitor._enable_from_env(self)

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
            events._set_running_loop(self)
            if in_main:
                self._install_wakeup_fd()
            self._run()
        finally:
            if in_main:
                self._restore_wakeup_fd()
            events._set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            sys.set_asyncgen_hooks(*old_hooks)

    def run_until_complete(self, future):
        """Run until the Future is done; return its result or raise its
        exception. A coroutine is wrapped in a Task."""
        self._check_closed()
        self._check_running()
        new_task = not futures.isfuture(future)
        future = tasks.ensure_future(future, loop=self)
        if new_task:
            # The caller has no reference to the task: an exception is raised
            # below if it did not finish, so no "destroyed pending" message.
            future._log_destroy_pending = False
        future.add_done_callback(base_events._run_until_complete_cb)
        try:
            self.run_forever()
        except BaseException:
            if new_task and future.done() and not future.cancelled():
                # Consume the exception: the caller cannot reach the task.
                future.exception()
            raise
        finally:
            future.remove_done_callback(base_events._run_until_complete_cb)
        if not future.done():
            raise RuntimeError("Event loop stopped before Future completed.")
        return future.result()

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

    def _set_coroutine_origin_tracking(self, enabled):
        if bool(enabled) == bool(self._coroutine_origin_tracking_enabled):
            return
        if enabled:
            self._coroutine_origin_tracking_saved_depth = (
                sys.get_coroutine_origin_tracking_depth())
            sys.set_coroutine_origin_tracking_depth(constants.DEBUG_STACK_DEPTH)
        else:
            sys.set_coroutine_origin_tracking_depth(
                self._coroutine_origin_tracking_saved_depth)
        self._coroutine_origin_tracking_enabled = enabled

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
        if coroutines.iscoroutine(callback) or coroutines.iscoroutinefunction(callback):
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

    def _do_shutdown(self, future):
        # Runs in a helper thread: the executor's join must not block the loop.
        try:
            self._default_executor.shutdown(wait=True)
            if not self.is_closed():
                self.call_soon_threadsafe(futures._set_result_unless_cancelled,
                                          future, None)
        except Exception as ex:
            if not self.is_closed() and not future.cancelled():
                self.call_soon_threadsafe(future.set_exception, ex)

    if _PY312:
        async def shutdown_default_executor(self, timeout=None):
            """Schedule the shutdown of the default executor; wait up to
            `timeout` seconds (None: no limit) for its threads to join."""
            self._executor_shutdown_called = True
            if self._default_executor is None:
                return
            future = self.create_future()
            thread = threading.Thread(target=self._do_shutdown, args=(future,))
            thread.start()
            try:
                async with asyncio.timeout(timeout):
                    await future
            except TimeoutError:
                warnings.warn("The executor did not finishing joining "
                              f"its threads within {timeout} seconds.",
                              RuntimeWarning, stacklevel=2)
                self._default_executor.shutdown(wait=False)
            else:
                thread.join()
    else:
        async def shutdown_default_executor(self):
            """Schedule the shutdown of the default executor."""
            self._executor_shutdown_called = True
            if self._default_executor is None:
                return
            future = self.create_future()
            thread = threading.Thread(target=self._do_shutdown, args=(future,))
            thread.start()
            try:
                await future
            finally:
                thread.join()

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

    def call_exception_handler(self, context):
        """Call the loop's exception handler (or the default one) with the
        context dict; errors in the handler itself are logged, never raised,
        except KeyboardInterrupt and SystemExit."""
        if self._exception_handler is None:
            try:
                self.default_exception_handler(context)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error("Exception in default exception handler", exc_info=True)
            return
        try:
            ctx = None
            if _PY312:
                thing = context.get("task")
                if thing is None:
                    thing = context.get("future")
                if thing is None:
                    thing = context.get("handle")
                if thing is not None and hasattr(thing, "get_context"):
                    ctx = thing.get_context()
            if ctx is not None and hasattr(ctx, "run"):
                ctx.run(self._exception_handler, self, context)
            else:
                self._exception_handler(self, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            try:
                self.default_exception_handler({
                    "message": "Unhandled error in exception handler",
                    "exception": exc,
                    "context": context,
                })
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                logger.error("Exception in default exception handler while "
                             "handling an unexpected error in custom exception "
                             "handler", exc_info=True)

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
        base_events._set_nodelay(sock)
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
        transport = self._new_stream_transport(sock, protocol, info)
        self._transports[sock.fileno()] = transport
        if server is not None:
            if _PY313:
                server._attach(transport)
                transport._set_lost_hook(functools.partial(server._detach, transport))
            else:
                server._attach()
                transport._set_lost_hook(server._detach)
        # context: the one 3.15's server and create_connection capture for the
        # connection (None before 3.15: the current one, as call_soon takes it).
        self.call_soon(protocol.connection_made, transport, context=context)
        self.call_soon(transport._start_reading)
        if waiter is not None:
            self.call_soon(futures._set_result_unless_cancelled, waiter, None)
        return transport

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
        return _ReadPipeTransport(self, pipe, protocol, waiter, extra)

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
                        server_side=False,
                        server_hostname=None,
                        ssl_handshake_timeout=None,
                        ssl_shutdown_timeout=None):
        """Upgrade transport to TLS.

        Return a new transport that *protocol* should start using
        immediately.
        """
        # The stdlib's steps (the same in 3.11-3.13), with pyloop's TLS
        # protocol instead of sslproto.SSLProtocol.
        if ssl is None:
            raise RuntimeError('Python ssl module is not available')
        if not isinstance(sslcontext, ssl.SSLContext):
            raise TypeError(
                f'sslcontext is expected to be an instance of ssl.SSLContext, '
                f'got {sslcontext!r}')
        if not getattr(transport, '_start_tls_compatible', False):
            raise TypeError(
                f'transport {transport!r} is not supported by start_tls()')
        waiter = self.create_future()
        ssl_protocol = _SSLProtocol(
            self, protocol, sslcontext, waiter,
            server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            call_connection_made=False)
        # Paused until connection_made ran, as the stdlib does.
        transport.pause_reading()
        transport.set_protocol(ssl_protocol)
        conmade_cb = self.call_soon(ssl_protocol.connection_made, transport)
        resume_cb = self.call_soon(transport.resume_reading)
        try:
            await waiter
        except BaseException:
            transport.close()
            conmade_cb.cancel()
            resume_cb.cancel()
            raise
        return ssl_protocol._app_transport

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

    def add_signal_handler(self, sig, callback, *args):
        """Run callback(*args) on the loop when signal `sig` arrives."""
        if coroutines.iscoroutine(callback) or coroutines.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        try:
            # Raises ValueError outside the main thread: a loop running in
            # another thread cannot own signals.
            signal.set_wakeup_fd(self._signal_wakeup_fd, warn_on_full_buffer=False)
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc))
        # The stdlib's Handle: queued anew each time the signal arrives.
        handle = events.Handle(callback, args, self, None)
        self._signal_handlers[sig] = handle
        self._has_signal_handlers = True
        try:
            signal.signal(sig, _sighandler_noop)
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            if not self._signal_handlers:
                self._has_signal_handlers = False
                try:
                    signal.set_wakeup_fd(-1)
                except (ValueError, OSError) as nexc:
                    logger.info("set_wakeup_fd(-1) failed: %s", nexc)
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught")
            raise

    def remove_signal_handler(self, sig):
        """Remove the handler for `sig`; return True if one was removed."""
        self._check_signal(sig)
        try:
            del self._signal_handlers[sig]
        except KeyError:
            return False
        if not self._signal_handlers:
            self._has_signal_handlers = False
        handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, handler)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig} cannot be caught")
            raise
        if not self._signal_handlers:
            try:
                signal.set_wakeup_fd(-1)
            except (ValueError, OSError) as exc:
                logger.info("set_wakeup_fd(-1) failed: %s", exc)
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
    """The stdlib's read pipe transport (its checks, blocking flag, EOF and
    close order are the stdlib's), reading through the loop's buffer
    (loop._pipe_read, csrc/pipe.c) instead of os.read(fd, max_size)."""

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


class _NotProvided:
    """Stands in for an AbstractEventLoop method pyloop does not provide yet,
    so that the method is absent (hasattr() is False, AttributeError on use)
    instead of present and raising NotImplementedError."""

    def __init__(self, name):
        self.name = name

    def __get__(self, obj, objtype=None):
        raise AttributeError(
            f"pyloop.Loop has no attribute {self.name!r}: not provided yet")


# Cold orchestration taken as-is from the running Python's own asyncio, so the
# semantics (argument checks, error messages, cancellation) are the stdlib's:
# it runs on pyloop's C primitives (_add_reader/_add_writer on the loop's epoll
# set, run_in_executor, create_future).
_BORROWED = {
    selector_events.BaseSelectorEventLoop: (
        "_ensure_fd_no_transport",
        "sock_recv", "_sock_recv", "_sock_read_done",
        "sock_recv_into", "_sock_recv_into",
        "sock_recvfrom", "_sock_recvfrom", "sock_recvfrom_into", "_sock_recvfrom_into",
        "sock_sendall", "_sock_sendall", "_sock_write_done",
        "sock_sendto", "_sock_sendto",
        "sock_connect", "_sock_connect", "_sock_connect_cb",
        "sock_accept", "_sock_accept",
    ),
    base_events.BaseEventLoop: (
        "getaddrinfo", "getnameinfo", "_getaddrinfo_debug", "_ensure_resolved",
        "create_connection", "_connect_sock", "_create_connection_transport",
        "create_server", "_create_server_getaddrinfo", "connect_accepted_socket", "start_tls",
        "create_datagram_endpoint",
        "sendfile", "connect_read_pipe", "connect_write_pipe",
        "sock_sendfile", "_sock_sendfile_native", "_sock_sendfile_fallback",
        "_check_sendfile_params",
        "subprocess_exec", "subprocess_shell", "_log_subprocess",
    ),
}
# The Unix loop's versions win where it overrides the generic ones.
_BORROWED_FIRST = {
    unix_events._UnixSelectorEventLoop: (
        "create_unix_connection", "create_unix_server",
        "_sock_sendfile_native", "_sock_sendfile_native_impl",
        "_sock_sendfile_update_filepos", "_sock_add_cancellation_callback",
        # Pipe transports: the stdlib's own, on the loop's poller (the read
        # one with its read path in C: _ReadPipeTransport).
        "_make_write_pipe_transport",
    ),
    selector_events.BaseSelectorEventLoop: (
        "_start_serving", "_accept_connection", "_accept_connection2",
        # Native sendfile: hold the transport's reads, wait for its write
        # queue to empty, then sock_sendfile() on its socket.
        "_sendfile_native",
    ),
}


def _borrow():
    for owner, names in [*_BORROWED_FIRST.items(), *_BORROWED.items()]:
        for name in names:
            if name in vars(owner) and name not in vars(Loop):
                setattr(Loop, name, vars(owner)[name])


_borrow()

# What the stdlib's start_tls() and sendfile() look for on a transport.
_core.TCPTransport._start_tls_compatible = True
_core.TCPTransport._sendfile_compatible = constants._SendfileMode.TRY_NATIVE

# The C datagram transport's cold paths are the stdlib's own methods: the
# write-buffer limits and flow-control hooks, and the _fatal_error policy.
for _name in ("set_write_buffer_limits", "get_write_buffer_limits", "_set_write_buffer_limits",
              "_maybe_pause_protocol", "_maybe_resume_protocol"):
    setattr(_core.UDPTransport, _name, vars(transports._FlowControlMixin)[_name])
_core.UDPTransport._fatal_error = selector_events._SelectorTransport._fatal_error
del _name


def _hide_unprovided():
    for name, value in vars(asyncio.AbstractEventLoop).items():
        if name.startswith("_") or not callable(value):
            continue
        if getattr(Loop, name, None) is value:
            setattr(Loop, name, _NotProvided(name))


_hide_unprovided()
