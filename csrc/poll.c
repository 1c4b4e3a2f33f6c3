/* add_reader / add_writer: fd readiness callbacks on the loop's own epoll set.
 *
 * These fds are not given to libuv: libuv aborts the process when a watched
 * fd is closed and its number reused behind its back, which Python code can
 * do at will. Our own epoll set is updated at once (errors reach the caller,
 * as with the stdlib's selector) and a stale registration is simply re-added.
 * The epoll fd itself is a uv_poll watcher in libuv's epoll set (loop.c):
 * when it is readable, pl_poll_dispatch collects the ready fds. */
#include "poll.h"
#include "errors.h"
#include "module.h"

#include <errno.h>
#include <sys/epoll.h>
#include <unistd.h>

#define PL_POLL_MAX_EVENTS 256

/* Registry entry: a list [mask, reader handle or None, writer handle or None]. */
enum { PL_POLL_MASK = 0, PL_POLL_READER = 1, PL_POLL_WRITER = 2 };

int
pl_poll_init(PLLoop *loop)
{
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0) {
        pl_error_set_errno();
        return -1;
    }
    loop->pollers = PyDict_New();
    return loop->pollers ? 0 : -1;
}

void
pl_poll_close(PLLoop *loop)
{
    if (loop->epfd >= 0) {
        close(loop->epfd);
        loop->epfd = -1;
    }
    PyObject *p = loop->pollers;
    loop->pollers = NULL;
    if (p != NULL) {
        /* Cancel the handles so nothing can run them after close. */
        PyObject *key, *entry;
        Py_ssize_t pos = 0;
        while (PyDict_Next(p, &pos, &key, &entry)) {
            for (int i = PL_POLL_READER; i <= PL_POLL_WRITER; i++) {
                PyObject *h = PyList_GET_ITEM(entry, i);
                if (h != Py_None)
                    pl_handle_cancel((PLHandle *)h);
            }
        }
        Py_DECREF(p);
    }
}

/* The selectors module's rules: an int, or an object with fileno(). An fd
 * beyond a C int raises OverflowError, as epoll's register() does in the
 * stdlib's loop (pl_poll_remove turns it into "nothing registered"). */
static int
pl_poll_fileobj_to_fd(PyObject *obj)
{
    PyObject *num;
    if (PyLong_Check(obj)) {
        num = Py_NewRef(obj);
    }
    else {
        num = PyObject_CallMethod(obj, "fileno", NULL);
        if (num == NULL || !PyLong_Check(num)) {
            Py_XDECREF(num);
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "Invalid file object: %R", obj);
            return -1;
        }
    }
    int overflow;
    long long fd = PyLong_AsLongLongAndOverflow(num, &overflow);
    if (fd == -1 && PyErr_Occurred()) {
        Py_DECREF(num);
        return -1;
    }
    if (overflow < 0 || (overflow == 0 && fd < 0)) {
        PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %S", num);
        Py_DECREF(num);
        return -1;
    }
    Py_DECREF(num);
    if (overflow > 0 || fd > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "Python int too large to convert to C int");
        return -1;
    }
    return (int)fd;
}

static int
pl_poll_ctl(PLLoop *loop, int fd, long old_mask, long new_mask)
{
    struct epoll_event ev = {.events = (uint32_t)new_mask, .data.fd = fd};
    if (new_mask == 0) {
        /* The fd may be closed already: nothing to undo then. */
        epoll_ctl(loop->epfd, EPOLL_CTL_DEL, fd, &ev);
        return 0;
    }
    int op = old_mask ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    if (epoll_ctl(loop->epfd, op, fd, &ev) == 0)
        return 0;
    /* A registration that went stale (fd closed and its number reused) is
     * re-added; one that already exists is modified. */
    if (op == EPOLL_CTL_MOD && errno == ENOENT && epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
        return 0;
    if (op == EPOLL_CTL_ADD && errno == EEXIST && epoll_ctl(loop->epfd, EPOLL_CTL_MOD, fd, &ev) == 0)
        return 0;
    pl_error_set_errno();
    return -1;
}

/* _add_reader(fd, callback, *args) / _add_writer(...): returns the Handle. */
static PyObject *
pl_poll_register(PLLoop *self, PyObject *const *args, Py_ssize_t nargs, int slot, const char *meth)
{
    if (nargs < 2) {
        PyErr_Format(PyExc_TypeError, "%s() takes at least 2 arguments (fd, callback)", meth);
        return NULL;
    }
    if (pl_loop_check_closed(self) < 0)
        return NULL;
    if (self->pollers == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return NULL;
    }
    int fd = pl_poll_fileobj_to_fd(args[0]);
    if (fd < 0)
        return NULL;
    if (!PyCallable_Check(args[1])) {
        PyErr_Format(PyExc_TypeError, "a callable object was expected by %s(), got %R", meth,
                     args[1]);
        return NULL;
    }
    PyObject *cbargs = PyTuple_New(nargs - 2);
    if (cbargs == NULL)
        return NULL;
    for (Py_ssize_t i = 2; i < nargs; i++)
        PyTuple_SET_ITEM(cbargs, i - 2, Py_NewRef(args[i]));
    PLHandle *h = pl_handle_new(&PLHandle_Type, self, args[1], cbargs, NULL);
    Py_DECREF(cbargs);
    if (h == NULL)
        return NULL;

    PyObject *key = PyLong_FromLong(fd);
    if (key == NULL)
        goto error;
    PyObject *entry = PyDict_GetItemWithError(self->pollers, key);
    long old_mask = 0;
    if (entry == NULL) {
        if (PyErr_Occurred())
            goto error_key;
        entry = Py_BuildValue("[iOO]", 0, Py_None, Py_None);
        if (entry == NULL || PyDict_SetItem(self->pollers, key, entry) < 0) {
            Py_XDECREF(entry);
            goto error_key;
        }
        Py_DECREF(entry); /* the dict keeps it */
    }
    else {
        old_mask = PyLong_AsLong(PyList_GET_ITEM(entry, PL_POLL_MASK));
    }
    long bit = slot == PL_POLL_READER ? EPOLLIN : EPOLLOUT;
    long new_mask = old_mask | bit;
    if (pl_poll_ctl(self, fd, old_mask, new_mask) < 0) {
        if (old_mask == 0)
            PyDict_DelItem(self->pollers, key);
        goto error_key;
    }
    PyObject *m = PyLong_FromLong(new_mask);
    if (m == NULL)
        goto error_key;
    PyList_SetItem(entry, PL_POLL_MASK, m);
    PyObject *old = PyList_GET_ITEM(entry, slot);
    if (old != Py_None)
        pl_handle_cancel((PLHandle *)old);
    Py_INCREF(h);
    PyList_SetItem(entry, slot, (PyObject *)h);
    Py_DECREF(key);
    return (PyObject *)h;

error_key:
    Py_DECREF(key);
error:
    Py_DECREF(h);
    return NULL;
}

/* _remove_reader(fd) / _remove_writer(fd): True when a callback was removed. */
static PyObject *
pl_poll_unregister(PLLoop *self, PyObject *fdobj, int slot)
{
    if (self->state != PL_LOOP_OPEN || self->pollers == NULL)
        Py_RETURN_FALSE;
    int fd = pl_poll_fileobj_to_fd(fdobj);
    if (fd < 0) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return NULL;
        /* No fd that large can have been added. */
        PyErr_Clear();
        Py_RETURN_FALSE;
    }
    PyObject *key = PyLong_FromLong(fd);
    if (key == NULL)
        return NULL;
    PyObject *entry = PyDict_GetItemWithError(self->pollers, key);
    if (entry == NULL) {
        Py_DECREF(key);
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_FALSE;
    }
    Py_INCREF(entry);
    long old_mask = PyLong_AsLong(PyList_GET_ITEM(entry, PL_POLL_MASK));
    long new_mask = old_mask & ~(slot == PL_POLL_READER ? EPOLLIN : EPOLLOUT);
    PyObject *h = PyList_GET_ITEM(entry, slot);
    int had = h != Py_None;
    if (new_mask == 0) {
        pl_poll_ctl(self, fd, old_mask, 0);
        PyDict_DelItem(self->pollers, key);
    }
    else if (pl_poll_ctl(self, fd, old_mask, new_mask) < 0) {
        /* The fd is gone: forget it entirely. */
        PyErr_Clear();
        pl_poll_ctl(self, fd, old_mask, 0);
        PyDict_DelItem(self->pollers, key);
    }
    else {
        PyList_SetItem(entry, PL_POLL_MASK, PyLong_FromLong(new_mask));
    }
    if (had) {
        pl_handle_cancel((PLHandle *)h);
        Py_INCREF(Py_None);
        PyList_SetItem(entry, slot, Py_None);
    }
    Py_DECREF(entry);
    Py_DECREF(key);
    return PyBool_FromLong(had);
}

PyObject *
Loop__add_reader(PLLoop *self, PyObject *const *args, Py_ssize_t nargs)
{
    return pl_poll_register(self, args, nargs, PL_POLL_READER, "add_reader");
}

PyObject *
Loop__add_writer(PLLoop *self, PyObject *const *args, Py_ssize_t nargs)
{
    return pl_poll_register(self, args, nargs, PL_POLL_WRITER, "add_writer");
}

PyObject *
Loop__remove_reader(PLLoop *self, PyObject *fd)
{
    return pl_poll_unregister(self, fd, PL_POLL_READER);
}

PyObject *
Loop__remove_writer(PLLoop *self, PyObject *fd)
{
    return pl_poll_unregister(self, fd, PL_POLL_WRITER);
}

int
pl_poll_add(PLLoop *loop, int fd, int writer, PyObject *callback)
{
    PyObject *args[2] = {PyLong_FromLong(fd), callback};
    if (args[0] == NULL)
        return -1;
    PyObject *h = pl_poll_register(loop, args, 2, writer ? PL_POLL_WRITER : PL_POLL_READER,
                                   writer ? "add_writer" : "add_reader");
    Py_DECREF(args[0]);
    Py_XDECREF(h);
    return h == NULL ? -1 : 0;
}

int
pl_poll_remove(PLLoop *loop, int fd, int writer)
{
    PyObject *fdobj = PyLong_FromLong(fd);
    if (fdobj == NULL)
        return -1;
    PyObject *r = pl_poll_unregister(loop, fdobj, writer ? PL_POLL_WRITER : PL_POLL_READER);
    Py_DECREF(fdobj);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

int
pl_poll_active(PLLoop *loop)
{
    return loop->pollers != NULL && PyDict_GET_SIZE(loop->pollers) > 0;
}

int
pl_poll_dispatch(PLLoop *loop)
{
    struct epoll_event events[PL_POLL_MAX_EVENTS];
    int n = epoll_wait(loop->epfd, events, PL_POLL_MAX_EVENTS, 0);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        pl_error_set_errno();
        return -1;
    }
    for (int i = 0; i < n; i++) {
        PyObject *key = PyLong_FromLong(events[i].data.fd);
        if (key == NULL)
            return -1;
        PyObject *entry = PyDict_GetItemWithError(loop->pollers, key);
        Py_DECREF(key);
        if (entry == NULL) {
            if (PyErr_Occurred())
                return -1;
            continue;
        }
        uint32_t ev = events[i].events;
        /* As selectors.EpollSelector: anything but "writable" counts as
         * readable and anything but "readable" as writable, so errors and
         * hang-ups wake both sides. Both run now, as libuv runs its I/O
         * callbacks: this iteration's I/O comes after the callbacks that
         * were ready when it began. The reader may remove the entry or the
         * writer: hold them, and run the writer only if still registered. */
        Py_INCREF(entry);
        PyObject *reader = Py_NewRef(PyList_GET_ITEM(entry, PL_POLL_READER));
        PyObject *writer = Py_NewRef(PyList_GET_ITEM(entry, PL_POLL_WRITER));
        int rc = 0;
        if ((ev & ~(uint32_t)EPOLLOUT) && reader != Py_None)
            rc = pl_loop_run_handle(loop, (PLHandle *)reader);
        if (rc == 0 && (ev & ~(uint32_t)EPOLLIN) && writer != Py_None &&
            PyList_GET_ITEM(entry, PL_POLL_WRITER) == writer)
            rc = pl_loop_run_handle(loop, (PLHandle *)writer);
        Py_DECREF(reader);
        Py_DECREF(writer);
        Py_DECREF(entry);
        if (rc < 0)
            return -1;
    }
    return 0;
}
