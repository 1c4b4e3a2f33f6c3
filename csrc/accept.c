/* loop._accept_serve(sock, count, aborted_continue, protocol_factory,
 * server, context): accept up to `count` connections waiting on the
 * listening socket `sock` and make each one's protocol and transport at
 * once, in a context of its own (a copy of `context`, 3.15's server
 * context, else of the current one), as the stdlib's _accept_connection2
 * task does one iteration later: protocol_factory(), the stream transport
 * with `sockname`/`peername` in its extra (found by loop._transports),
 * attached to `server`, connection_made and reading scheduled. What
 * protocol_factory or the transport's set-up raises drops that connection
 * (the stdlib's behaviour outside debug mode), except KeyboardInterrupt and
 * SystemExit, which are raised. Returns how many connections were accepted.
 *
 * Every fd is accepted non-blocking and close-on-exec with the listener's
 * family, type and protocol (read once per batch, not asked of each new fd);
 * the transport's socket object is made only if something asks for it
 * (stream.c), where the stdlib makes a socket object and a TransportSocket
 * per connection. The batch ends early when no connection is waiting
 * (EAGAIN) or a signal interrupted (EINTR); an aborted connection
 * (ECONNABORTED) ends it too, or is skipped when `aborted_continue` is true
 * (3.14+'s stdlib). Any other error is raised as the OSError
 * socket.accept() raises, unless connections were accepted before it: then
 * the batch ends and the error recurs on the next call. */
#include "accept.h"
#include "errors.h"
#include "module.h"
#include "sockaddr.h"
#include "stream.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static PyObject *pl_accept_socket_type; /* socket.socket */

/* The most arguments _start_serving passes to _accept_connection (3.15's
 * eight), with room to spare. */
#define PL_ACCEPT_MAX_ARGS 12

static int
pl_accept_sockopt(int fd, int opt, int *out)
{
    socklen_t len = sizeof(*out);
    if (getsockopt(fd, SOL_SOCKET, opt, out, &len) < 0) {
        pl_error_set_errno();
        return -1;
    }
    return 0;
}

PyObject *
pl_accept_socket_class(void)
{
    if (pl_accept_socket_type == NULL) {
        PyObject *mod = PyImport_ImportModule("socket");
        pl_accept_socket_type = mod ? PyObject_GetAttrString(mod, "socket") : NULL;
        Py_XDECREF(mod);
    }
    return pl_accept_socket_type;
}

/* The local address of an accepted connection: the same for every
 * connection of a listener bound to one address, so one tuple serves them
 * all while it repeats (an idle connection keeps its extra dict: a tuple and
 * a host string less each). New reference, or NULL with the error set. */
static PyObject *
pl_accept_sockname(const struct sockaddr *sa, socklen_t len)
{
    static struct sockaddr_storage last;
    static socklen_t last_len;
    static PyObject *last_obj;
    if (last_obj != NULL && len == last_len && memcmp(sa, &last, len) == 0)
        return Py_NewRef(last_obj);
    PyObject *addr = pl_sockaddr_to_py(sa, len);
    if (addr != NULL && len <= sizeof(last)) {
        memcpy(&last, sa, len);
        last_len = len;
        Py_XSETREF(last_obj, Py_NewRef(addr));
    }
    return addr;
}

/* The listener's family, type and protocol, which its connections share:
 * what the socket object recorded when it was made (_socket.socket's own
 * getters, not socket.socket's enum-making properties), three system calls
 * fewer per wake-up than asking the kernel; asked of the kernel for any
 * other object with a fileno(). 0, or -1 with the error set. */
static int
pl_accept_listener_kind(PyObject *sock, int lfd, int kind[3])
{
    static const char *const names[3] = {"family", "type", "proto"};
    static PyObject *getters[3];
    PyTypeObject *base = Py_TYPE(sock);
    while (base != NULL && base->tp_base != &PyBaseObject_Type)
        base = base->tp_base; /* _socket.socket, for a socket.socket */
    PyTypeObject *sock_base = ((PyTypeObject *)pl_accept_socket_class())->tp_base;
    if (base != sock_base || sock_base == NULL) {
        static const int opts[3] = {SO_DOMAIN, SO_TYPE, SO_PROTOCOL};
        for (int i = 0; i < 3; i++) {
            if (pl_accept_sockopt(lfd, opts[i], &kind[i]) < 0)
                return -1;
        }
        return 0;
    }
    for (int i = 0; i < 3; i++) {
        if (getters[i] == NULL) {
            PyObject *d = PyDict_GetItemString(sock_base->tp_dict, names[i]);
            if (d == NULL || Py_TYPE(d)->tp_descr_get == NULL) {
                PyErr_Format(PyExc_RuntimeError, "_socket.socket has no %s getter", names[i]);
                return -1;
            }
            getters[i] = Py_NewRef(d);
        }
        PyObject *v = Py_TYPE(getters[i])->tp_descr_get(getters[i], sock, (PyObject *)sock_base);
        long n = v != NULL ? PyLong_AsLong(v) : -1;
        Py_XDECREF(v);
        if (n == -1 && PyErr_Occurred())
            return -1;
        kind[i] = (int)n;
    }
    return 0;
}

/* extra[key] = value, with key an interned name (PyDict_SetItemString
 * makes and interns a new string each time). */
static int
pl_accept_dict_set(PyObject *dict, const char *key, PyObject *value)
{
    PyObject *name = pl_uvh_name(key);
    int rc = name ? PyDict_SetItem(dict, name, value) : -1;
    Py_XDECREF(name);
    return rc;
}

/* The connection's transport set up, inside its context `ctx` (also the
 * transport's when `given`). 0, or -1 with the error set; the fd is owned by
 * the transport once it exists, else still the caller's (*fd_taken 0). */
static int
pl_accept_connect(PLLoop *loop, int fd, const int kind[3], PyObject *peer, PyObject *factory,
                  PyObject *server, PyObject *ctx, int given, int *fd_taken)
{
    PyObject *protocol = NULL, *extra = NULL, *sockname = NULL, *meth = NULL;
    PLStream *t = NULL;
    int rc = -1;
    protocol = PyObject_CallNoArgs(factory);
    if (protocol == NULL)
        goto done;
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    memset(&ss, 0, sizeof(ss));
    /* As the stdlib's transport: None when the system cannot say. */
    sockname = getsockname(fd, (struct sockaddr *)&ss, &len) == 0
                   ? pl_accept_sockname((struct sockaddr *)&ss, len)
                   : Py_NewRef(Py_None);
    extra = sockname ? PyDict_New() : NULL;
    if (extra == NULL || pl_accept_dict_set(extra, "sockname", sockname) < 0 ||
        pl_accept_dict_set(extra, "peername", peer) < 0)
        goto done;
    /* The protocol's callbacks run in ctx, which nothing else runs in after
     * this (the stdlib's run in a copy of it: the same values, one context
     * object more per connection). The transport's own steps still take a
     * copy of the current context unless one was given, as the stdlib's. */
    t = pl_stream_new_fd(loop, fd, kind[0], kind[1], kind[2], protocol, extra, ctx);
    if (t == NULL)
        goto done;
    t->context_given = (char)given;
    *fd_taken = 1;
    if (server != Py_None && pl_stream_attach_server(t, server) < 0)
        goto fail;
    PyObject *name = pl_uvh_name("connection_made");
    meth = name ? PyObject_GetAttr(protocol, name) : NULL;
    Py_XDECREF(name);
    PyObject *args = meth ? PyTuple_Pack(1, (PyObject *)t) : NULL;
    if (args == NULL)
        goto fail;
    /* In the stdlib's order: connection_made, then reading starts. */
    rc = pl_loop_call_soon_c(loop, meth, args, given ? ctx : NULL);
    Py_DECREF(args);
    if (rc == 0)
        rc = pl_uvh_call_soon((PLUVHandle *)t, "_start_reading", NULL);
    if (rc == 0)
        goto done;
fail:
    /* Never connected: closed without connection_lost (libuv closes the fd). */
    pl_stream_discard(t);
    rc = -1;
done:
    Py_XDECREF(meth);
    Py_XDECREF(t);
    Py_XDECREF(extra);
    Py_XDECREF(sockname);
    Py_XDECREF(protocol);
    return rc;
}

/* One accepted fd served in a fresh context. 0 (served or dropped), or -1
 * with KeyboardInterrupt/SystemExit (or a context failure) set. */
static int
pl_accept_serve_one(PLLoop *loop, int fd, const int kind[3], const struct sockaddr *sa,
                    socklen_t len, PyObject *factory, PyObject *server, PyObject *context)
{
    int fd_taken = 0, rc = -1;
    PyObject *peer = pl_sockaddr_to_py(sa, len);
    int given = context != Py_None;
    PyObject *ctx = peer == NULL ? NULL : given ? PyContext_Copy(context) : PyContext_CopyCurrent();
    if (ctx != NULL && PyContext_Enter(ctx) == 0) {
        rc = pl_accept_connect(loop, fd, kind, peer, factory, server, ctx, given, &fd_taken);
        PyObject *err = rc < 0 ? pl_err_fetch() : NULL;
        if (PyContext_Exit(ctx) < 0)
            PyErr_Clear(); /* entered just above: cannot fail */
        if (err != NULL)
            pl_err_restore(err);
    }
    if (rc < 0 && !fd_taken)
        close(fd);
    Py_XDECREF(ctx);
    Py_XDECREF(peer);
    if (rc < 0 && !PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) &&
        !PyErr_ExceptionMatches(PyExc_SystemExit)) {
        PyErr_Clear(); /* nowhere to report it: the connection is dropped */
        rc = 0;
    }
    return rc;
}

/* Accept up to `count` connections on the listening socket `sock` and serve
 * each one. The number accepted, or -1 with the error set. */
static Py_ssize_t
pl_accept_batch(PLLoop *self, PyObject *sock, Py_ssize_t count, int aborted_continue,
                PyObject *factory, PyObject *server, PyObject *context)
{
    int lfd = pl_uvh_sock_fd(sock);
    int kind[3];
    if (lfd < 0 || pl_accept_socket_class() == NULL || pl_accept_listener_kind(sock, lfd, kind) < 0)
        return -1;
    /* Woken by the listener's own watcher (poll.c): accept from the
     * duplicate it watches, the same listening socket even if something
     * closed the socket object's fd number and reused it meanwhile. */
    if (lfd == self->accept_fd)
        lfd = self->accept_dupfd;
    Py_ssize_t served = 0;
    for (Py_ssize_t i = 0; i < count; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        memset(&ss, 0, sizeof(ss));
        int fd = accept4(lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                break;
            if (errno == ECONNABORTED) {
                if (aborted_continue)
                    continue;
                break;
            }
            if (served > 0)
                break; /* it recurs on the next call, with nothing accepted before it */
            pl_error_set_errno();
            return -1;
        }
        served++;
        if (pl_accept_serve_one(self, fd, kind, (struct sockaddr *)&ss, len, factory, server,
                                context) < 0)
            return -1;
    }
    return served;
}

static int
pl_accept_check_context(PyObject *context)
{
    if (context != Py_None && !PyContext_CheckExact(context)) {
        PyErr_SetString(PyExc_TypeError, "context must be a contextvars.Context or None");
        return -1;
    }
    return 0;
}

PyObject *
Loop__accept_serve(PLLoop *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "_accept_serve(sock, count, aborted_continue, "
                                         "protocol_factory, server, context)");
        return NULL;
    }
    PyObject *factory = args[3], *server = args[4], *context = args[5];
    if (pl_loop_check_closed(self) < 0 || pl_loop_check_uv_thread(self) < 0 ||
        pl_accept_check_context(context) < 0)
        return NULL;
    Py_ssize_t count = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    int aborted_continue = PyObject_IsTrue(args[2]);
    if ((count == -1 && PyErr_Occurred()) || aborted_continue < 0)
        return NULL;
    Py_ssize_t served = pl_accept_batch(self, args[0], count, aborted_continue, factory, server,
                                        context);
    return served < 0 ? NULL : PyLong_FromSsize_t(served);
}

/* The stdlib's accept loop: from 3.14 one more than the backlog per wake-up,
 * an aborted connection skipped rather than ending the batch. */
#if PY_VERSION_HEX >= 0x030E0000
#define PL_ACCEPT_EXTRA 1
#define PL_ACCEPT_ABORTED_CONTINUE 1
#else
#define PL_ACCEPT_EXTRA 0
#define PL_ACCEPT_ABORTED_CONTINUE 0
#endif

/* self.<name>(*prefix, *args) for the cold cases the Python layer handles
 * (pyloop/loop.py). NULL with the error set. */
static PyObject *
pl_accept_call_python(PLLoop *self, const char *name, PyObject *prefix, PyObject *const *args,
                      Py_ssize_t nargs)
{
    PyObject *stack[PL_ACCEPT_MAX_ARGS + 2];
    Py_ssize_t n = 0;
    stack[n++] = (PyObject *)self;
    if (prefix != NULL)
        stack[n++] = prefix;
    for (Py_ssize_t i = 0; i < nargs; i++)
        stack[n++] = args[i];
    PyObject *str = pl_uvh_name(name);
    PyObject *r = str ? PyObject_VectorcallMethod(str, stack, (size_t)n, NULL) : NULL;
    Py_XDECREF(str);
    return r;
}

/* loop._accept_connection(protocol_factory, sock, sslcontext=None,
 * server=None, backlog=100, *timeouts_and_context): the reader callback the
 * stdlib's _start_serving registers on a listening socket, in C so that a
 * wake-up runs no Python frame of the loop's. TLS servers and debug mode go
 * to the stdlib's accept loop (loop._accept_connection_stdlib); an accept
 * error to loop._accept_failed, which pauses accepting when the process is
 * out of fds or memory, as the stdlib's does. */
PyObject *
Loop__accept_connection(PLLoop *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 2 || nargs > PL_ACCEPT_MAX_ARGS) {
        PyErr_SetString(PyExc_TypeError, "_accept_connection(protocol_factory, sock, "
                                         "sslcontext=None, server=None, backlog=100, "
                                         "*timeouts_and_context)");
        return NULL;
    }
    PyObject *ssl = nargs > 2 ? args[2] : Py_None;
    int tls = ssl == Py_None ? 0 : PyObject_IsTrue(ssl);
    if (tls < 0)
        return NULL;
    if (tls || self->debug)
        return pl_accept_call_python(self, "_accept_connection_stdlib", NULL, args, nargs);
    PyObject *server = nargs > 3 ? args[3] : Py_None;
    PyObject *context = nargs > 7 ? args[7] : Py_None;
    Py_ssize_t backlog = 100;
    if (nargs > 4) {
        backlog = PyNumber_AsSsize_t(args[4], PyExc_OverflowError);
        if (backlog == -1 && PyErr_Occurred())
            return NULL;
    }
    if (pl_loop_check_closed(self) < 0 || pl_loop_check_uv_thread(self) < 0 ||
        pl_accept_check_context(context) < 0)
        return NULL;
    if (pl_accept_batch(self, args[1], backlog + PL_ACCEPT_EXTRA, PL_ACCEPT_ABORTED_CONTINUE,
                        args[0], server, context) >= 0)
        Py_RETURN_NONE;
    if (!PyErr_ExceptionMatches(PyExc_OSError))
        return NULL;
    PyObject *exc = pl_err_fetch();
    PyObject *r = pl_accept_call_python(self, "_accept_failed", exc, args, nargs);
    Py_DECREF(exc);
    return r;
}
