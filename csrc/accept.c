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
    if (extra == NULL || PyDict_SetItemString(extra, "sockname", sockname) < 0 ||
        PyDict_SetItemString(extra, "peername", peer) < 0)
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
    meth = PyObject_GetAttrString(protocol, "connection_made");
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

PyObject *
Loop__accept_serve(PLLoop *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 6) {
        PyErr_SetString(PyExc_TypeError, "_accept_serve(sock, count, aborted_continue, "
                                         "protocol_factory, server, context)");
        return NULL;
    }
    PyObject *factory = args[3], *server = args[4], *context = args[5];
    if (pl_loop_check_closed(self) < 0 || pl_loop_check_uv_thread(self) < 0)
        return NULL;
    if (context != Py_None && !PyContext_CheckExact(context)) {
        PyErr_SetString(PyExc_TypeError, "context must be a contextvars.Context or None");
        return NULL;
    }
    Py_ssize_t count = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    int aborted_continue = PyObject_IsTrue(args[2]);
    if ((count == -1 && PyErr_Occurred()) || aborted_continue < 0)
        return NULL;
    int lfd = pl_uvh_sock_fd(args[0]);
    int kind[3];
    if (lfd < 0 || pl_accept_socket_class() == NULL ||
        pl_accept_sockopt(lfd, SO_DOMAIN, &kind[0]) < 0 ||
        pl_accept_sockopt(lfd, SO_TYPE, &kind[1]) < 0 ||
        pl_accept_sockopt(lfd, SO_PROTOCOL, &kind[2]) < 0)
        return NULL;
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
            return NULL;
        }
        served++;
        if (pl_accept_serve_one(self, fd, kind, (struct sockaddr *)&ss, len, factory, server,
                                context) < 0)
            return NULL;
    }
    return PyLong_FromSsize_t(served);
}
