/* loop._accept_batch(sock, count, aborted_continue): up to `count`
 * connections accepted from the listening socket `sock`, as a list of
 * (socket.socket, address), each socket's fd non-blocking and close-on-exec
 * (the transport sets the object's own blocking flag), of
 * the listener's family, type and protocol. The batch ends early when no
 * connection is waiting (EAGAIN) or a signal interrupted (EINTR); an aborted
 * connection (ECONNABORTED) ends it too, or is skipped when
 * `aborted_continue` is true (3.14+'s stdlib). Any other error is raised as
 * the OSError socket.accept() raises, unless connections were accepted
 * before it: those are returned and the error recurs on the next call.
 *
 * The stdlib calls sock.accept() per connection: a Python method that makes
 * the socket object through family/type properties converted to enums (four
 * IntEnum lookups per connection). Here the listener's numbers are read once
 * per batch and the socket objects made with them, so no system call asks
 * the new fd what it is. */
#include "accept.h"
#include "errors.h"
#include "module.h"
#include "sockaddr.h"

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

/* (socket.socket(family, type, proto, fileno=fd), address) for a new fd;
 * the fd is closed when the socket object cannot be made. */
static PyObject *
pl_accept_pair(int fd, int family, int type, int proto, const struct sockaddr *sa, socklen_t len)
{
    PyObject *addr = pl_sockaddr_to_py(sa, len);
    if (addr == NULL) {
        close(fd);
        return NULL;
    }
    PyObject *sock = PyObject_CallFunction(pl_accept_socket_type, "iiii", family, type, proto, fd);
    if (sock == NULL) {
        close(fd);
        Py_DECREF(addr);
        return NULL;
    }
    return Py_BuildValue("(NN)", sock, addr);
}

PyObject *
Loop__accept_batch(PLLoop *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *list = NULL;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "_accept_batch(sock, count, aborted_continue)");
        return NULL;
    }
    if (pl_loop_check_closed(self) < 0)
        return NULL;
    Py_ssize_t count = PyNumber_AsSsize_t(args[1], PyExc_OverflowError);
    int aborted_continue = PyObject_IsTrue(args[2]);
    if ((count == -1 && PyErr_Occurred()) || aborted_continue < 0)
        return NULL;
    if (pl_accept_socket_type == NULL) {
        PyObject *mod = PyImport_ImportModule("socket");
        pl_accept_socket_type = mod ? PyObject_GetAttrString(mod, "socket") : NULL;
        Py_XDECREF(mod);
        if (pl_accept_socket_type == NULL)
            return NULL;
    }
    PyObject *fdobj = PyObject_CallMethod(args[0], "fileno", NULL);
    long lfd = fdobj ? PyLong_AsLong(fdobj) : -1;
    Py_XDECREF(fdobj);
    if (lfd == -1 && PyErr_Occurred())
        return NULL;
    int family, type, proto;
    if (pl_accept_sockopt((int)lfd, SO_DOMAIN, &family) < 0 ||
        pl_accept_sockopt((int)lfd, SO_TYPE, &type) < 0 ||
        pl_accept_sockopt((int)lfd, SO_PROTOCOL, &proto) < 0)
        return NULL;
    list = PyList_New(0);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < count; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        memset(&ss, 0, sizeof(ss));
        int fd = accept4((int)lfd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                break;
            if (errno == ECONNABORTED) {
                if (aborted_continue)
                    continue;
                break;
            }
            if (PyList_GET_SIZE(list) > 0)
                break; /* it recurs on the next call, with nothing accepted before it */
            pl_error_set_errno();
            Py_CLEAR(list);
            break;
        }
        PyObject *pair = pl_accept_pair(fd, family, type, proto, (struct sockaddr *)&ss, len);
        if (pair == NULL || PyList_Append(list, pair) < 0) {
            Py_XDECREF(pair);
            Py_CLEAR(list);
            break;
        }
        Py_DECREF(pair);
    }
    return list;
}
