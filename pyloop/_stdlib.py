"""What pyloop takes from the running Python's asyncio, in one place.

pyloop's C core does the per-callback work; the cold orchestration around it
(argument checks, happy eyeballs, server lifecycle, sock_* retries, sendfile,
pipes, TLS handshake and shutdown, the exception handler's policy) is the
running Python's own code, referenced here at import time so that each
version's semantics, messages and fixes come with it. Nothing is copied.

Two kinds of names:
- METHODS: functions of the stdlib's loop classes that become methods of
  pyloop.Loop. They run on pyloop's primitives and read the attributes listed
  in ATTRIBUTES, which pyloop.Loop keeps under the stdlib's names.
- HELPERS: module-level names pyloop's own code calls.

Every name is required on every supported version (3.11 to 3.15): a Python
that lacks one fails `import pyloop` with an ImportError naming it and the
version, instead of losing a feature silently. tests/test_stdlib_contract.py
checks the table against the running interpreter.
"""
import sys
from asyncio import (base_events, constants, coroutines, events, futures, selector_events,
                     sslproto, tasks, transports, trsock, unix_events)

_VERSION = "%d.%d.%d" % sys.version_info[:3]

# (owner class, names): the first owner that lists a name is the one used,
# so the Unix loop's overrides come before the generic ones.
METHODS = (
    (unix_events._UnixSelectorEventLoop, (
        # Unix sockets: the stdlib's checks and cleanup.
        "create_unix_connection", "create_unix_server",
        # os.sendfile() for sock_sendfile().
        "_sock_sendfile_native", "_sock_sendfile_native_impl",
        "_sock_sendfile_update_filepos", "_sock_add_cancellation_callback",
    )),
    (selector_events.BaseSelectorEventLoop, (
        # Accepting connections on the loop's own poller (_add_reader).
        # (pyloop's own _accept_connection hands TLS and debug mode to the
        # stdlib's, ACCEPT_CONNECTION below, which makes them in a task;
        # its _start_serving wraps START_SERVING below.)
        "_accept_connection2",
        # loop.sendfile() on a transport: hold its reads, wait for its write
        # queue to empty, then sock_sendfile() on its socket.
        "_sendfile_native",
        "_ensure_fd_no_transport",
        # sock_*: try the call, wait on _add_reader/_add_writer when it would
        # block, with the stdlib's cancellation handling.
        "sock_recv", "_sock_recv", "_sock_read_done",
        "sock_recv_into", "_sock_recv_into",
        "sock_recvfrom", "_sock_recvfrom", "sock_recvfrom_into", "_sock_recvfrom_into",
        "sock_sendall", "_sock_sendall", "_sock_write_done",
        "sock_sendto", "_sock_sendto",
        "sock_connect", "_sock_connect", "_sock_connect_cb",
        "sock_accept", "_sock_accept",
    )),
    (base_events.BaseEventLoop, (
        # Resolving before connecting (getaddrinfo itself is pyloop's: _dns.py).
        "_ensure_resolved",
        # Connections, servers and endpoints: argument checks, happy eyeballs,
        # errors; the transports they make are pyloop's (_make_*_transport).
        "create_connection", "_connect_sock", "_create_connection_transport",
        "create_server", "_create_server_getaddrinfo", "connect_accepted_socket",
        "create_datagram_endpoint",
        "sendfile", "connect_read_pipe", "connect_write_pipe",
        "sock_sendfile", "_sock_sendfile_fallback", "_check_sendfile_params",
        "subprocess_exec", "subprocess_shell", "_log_subprocess",
        # Cold loop methods whose semantics follow the version: run a future
        # to completion (with _run_until_complete_cb as its done callback,
        # which libraries look for), the exception handler's policy (3.12+
        # runs a custom handler in the failing task's context), the default
        # executor's shutdown (3.12+ takes a timeout), coroutine origin
        # tracking in debug mode.
        "run_until_complete", "call_exception_handler",
        "shutdown_default_executor", "_do_shutdown",
        "_set_coroutine_origin_tracking",
    )),
)

# Attributes of the loop the METHODS above read or write; pyloop.Loop sets
# each of them in __init__ under the same name (tests/test_stdlib_contract.py).
ATTRIBUTES = (
    "_default_executor", "_executor_shutdown_called", "_exception_handler",
    "_transports", "_unix_server_sockets", "_coroutine_origin_tracking_enabled",
    "_coroutine_origin_tracking_saved_depth",
)

# Module-level private names pyloop's own code uses:
# (module, name, first version, last version or None, what for).
HELPERS = (
    (base_events, "_SendfileFallbackProtocol", (3, 11), None, "the base of sendfile()'s fallback protocol"),
    (futures, "_set_result_unless_cancelled", (3, 11), None, "waking a transport's waiter"),
    (events, "_set_running_loop", (3, 11), None, "registering the running loop"),
    (events, "_get_running_loop", (3, 11), None, "checking for another running loop"),
    (events, "_py__set_running_loop", (3, 11), None, "the running loop for pure-Python asyncio code"),
    (coroutines, "_is_debug_mode", (3, 11), None, "debug mode from -X dev / PYTHONASYNCIODEBUG"),
    (constants, "_SendfileMode", (3, 11), None, "what sendfile() looks for on a transport"),
    (constants, "DEBUG_STACK_DEPTH", (3, 11), None, "coroutine origin tracking depth in debug mode"),
    (tasks, "_set_task_name", (3, 11), (3, 12), "naming a factory's task before Task.set_name was enough"),
    (sslproto, "SSLProtocol", (3, 11), None, "the base of pyloop's TLS protocol"),
    (sslproto, "_SSLProtocolTransport", (3, 11), None, "the base of pyloop's TLS app transport"),
    (transports, "_FlowControlMixin", (3, 11), None, "telling the stdlib's TLS app transports in sendfile()"),
    (unix_events, "_UnixReadPipeTransport", (3, 11), None, "the base of pyloop's read pipe transport"),
    (unix_events, "_UnixWritePipeTransport", (3, 11), None, "the base of pyloop's write pipe transport"),
    (trsock, "TransportSocket", (3, 11), None, "get_extra_info('socket')"),
)


def _unsupported(what):
    return ImportError(
        f"pyloop needs {what} from the running Python's asyncio, and Python {_VERSION} "
        f"has none: this Python version is not supported by this pyloop release")


def methods():
    """{name: function} for every METHODS entry, the first owner winning."""
    taken = {}
    for owner, names in METHODS:
        for name in names:
            if name in taken:
                continue
            value = vars(owner).get(name)
            if value is None:
                raise _unsupported(f"{owner.__module__}.{owner.__qualname__}.{name}")
            taken[name] = value
    return taken


def helper(module, name):
    """A private module-level name listed in HELPERS."""
    value = getattr(module, name, None)
    if value is None:
        raise _unsupported(f"{module.__name__}.{name}")
    return value


def check_helpers(version=sys.version_info[:2]):
    """Resolve every HELPERS entry meant for `version`; ImportError if one is missing."""
    for module, name, first, last, _why in HELPERS:
        if first <= version and (last is None or version <= last):
            helper(module, name)


check_helpers()

# The running loop is kept by two implementations, the pure-Python one and
# the C one of _asyncio (absent on a Python built without it); pyloop
# registers its loop with both.
PY_SET_RUNNING_LOOP = events._py__set_running_loop
C_SET_RUNNING_LOOP = getattr(events, "_c__set_running_loop", None)

# The stdlib's accept loop: pyloop's _accept_connection runs it for TLS
# servers and in debug mode (its task per connection and debug logging).
ACCEPT_CONNECTION = vars(selector_events.BaseSelectorEventLoop).get("_accept_connection")
if ACCEPT_CONNECTION is None:
    raise _unsupported("asyncio.selector_events.BaseSelectorEventLoop._accept_connection")

# Registering a listening socket's reader: pyloop's _start_serving gives the
# server pyloop's set of clients first (3.13+), then runs it.
START_SERVING = vars(selector_events.BaseSelectorEventLoop).get("_start_serving")
if START_SERVING is None:
    raise _unsupported("asyncio.selector_events.BaseSelectorEventLoop._start_serving")

# 3.14's call_soon_threadsafe returns this Handle subclass (a lock makes
# cancel() from another thread wait for a running callback); None before.
THREADSAFE_HANDLE = getattr(events, "_ThreadSafeHandle", None)
if THREADSAFE_HANDLE is None and sys.version_info >= (3, 14):
    raise _unsupported("asyncio.events._ThreadSafeHandle")
