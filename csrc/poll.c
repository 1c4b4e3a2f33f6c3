/* add_reader / add_writer: fd readiness callbacks on the loop's own epoll set.
 *
 * These fds are not given to libuv: libuv aborts the process when a watched
 * fd is closed and its number reused behind its back, which Python code can
 * do at will. Our own epoll set is updated at once (errors reach the caller,
 * as with the stdlib's selector) and a stale registration is simply re-added.
 * The epoll fd itself is a uv_poll watcher in libuv's epoll set (loop.c):
 * when it is readable, pl_poll_dispatch collects the ready fds.
 *
 * One kind of reader skips that second set: a listening socket whose reader
 * is the loop's own _accept_connection (the stdlib's _start_serving adds it).
 * Its readiness through the nested set cost an epoll_wait() and more per
 * wake-up; it gets a uv_poll_t of its own in libuv's set instead, watching a
 * duplicate of the fd that only this file closes, so no Python code can
 * close it behind libuv's back, and accept.c accepts from that duplicate. */
#include "poll.h"
#include "accept.h"
#include "errors.h"
#include "module.h"
#include "uvhandle.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#define PL_POLL_MAX_EVENTS 256

/* Registry entry: a list [mask, reader handle or None, writer handle or None]. */
enum { PL_POLL_MASK = 0, PL_POLL_READER = 1, PL_POLL_WRITER = 2 };

/* In an entry's mask: the reader is on a watcher of its own (a listener
 * below), not in the epoll set; such an entry has no writer. */
#define PL_POLL_OWN (1L << 30)

/* ---- listening sockets on a watcher of their own ---------------------------- */

/* A listening socket's watcher. Its reader handle stays in the registry
 * entry (looked up when the watcher fires): this struct holds no Python
 * object, so the collector needs to see nothing here. Freed in uv_close's
 * callback. */
typedef struct PLPollListener {
    uv_poll_t poll; /* first: the callbacks cast back from it */
    struct PLPollListener *next;
    int fd;    /* the caller's number, the registry's key */
    int dupfd; /* ours, watched and accepted from, closed with the watcher */
    char fired;
} PLPollListener;

static void
pl__poll_listener_cb(uv_poll_t *handle, int status, int events)
{
    (void)status; /* an error still counts as readable: accept reports it */
    (void)events;
    pl_loop_gil_ensure(handle->loop);
    PLLoop *loop = (PLLoop *)handle->loop->data;
    /* Run after libuv's pass (pl_loop_after_pass), as the epoll set's
     * readers are, so a reader adding or removing watchers never runs inside
     * libuv's loop over its own events. */
    ((PLPollListener *)handle)->fired = 1;
    loop->listen_fired = 1;
}

static void
pl__poll_listener_close_cb(uv_handle_t *handle)
{
    pl_loop_gil_ensure(handle->loop);
    pl_counters.handles_freed++;
    PyMem_RawFree(handle);
}

static PLPollListener *
pl_poll_listener_find(PLLoop *loop, int fd)
{
    PLPollListener *l = loop->listeners;
    while (l != NULL && l->fd != fd)
        l = l->next;
    return l;
}

/* Whether add_reader(fd, callback, *args) is the stdlib's _start_serving
 * registering this loop's _accept_connection for the socket object whose
 * fd is `fd` (callback(protocol_factory, sock, ...)). Never raises. */
static int
pl_poll_is_listener(PLLoop *loop, PyObject *const *args, Py_ssize_t nargs, int fd)
{
    PyObject *cb = args[1];
    if (nargs < 4 || !PyCFunction_Check(cb) || PyCFunction_GET_SELF(cb) != (PyObject *)loop ||
        strcmp(((PyCFunctionObject *)cb)->m_ml->ml_name, "_accept_connection") != 0 ||
        !PyObject_TypeCheck(args[3], (PyTypeObject *)pl_accept_socket_class()))
        return 0;
    int sock_fd = pl_uvh_sock_fd(args[3]);
    if (sock_fd < 0)
        PyErr_Clear();
    return sock_fd == fd;
}

/* Watch `fd` through a duplicate on a uv_poll_t of its own. 0, or -1 with
 * the error set (the caller then uses the epoll set). */
static int
pl_poll_listener_start(PLLoop *loop, int fd)
{
    PLPollListener *l = PyMem_RawCalloc(1, sizeof(*l));
    if (l == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    l->fd = fd;
    l->dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (l->dupfd < 0) {
        pl_error_set_errno();
        PyMem_RawFree(l);
        return -1;
    }
    int err = uv_poll_init_socket(&loop->uv, &l->poll, l->dupfd);
    if (err < 0) {
        close(l->dupfd);
        PyMem_RawFree(l);
        pl_error_set_uv(err);
        return -1;
    }
    pl_counters.handles_created++;
    /* Referenced, as a user handle: a pass that must look at the listener
     * runs libuv (pl_loop_poll skips uv_run when no handle is active). */
    err = uv_poll_start(&l->poll, UV_READABLE, pl__poll_listener_cb);
    if (err < 0) {
        uv_close((uv_handle_t *)&l->poll, pl__poll_listener_close_cb);
        close(l->dupfd);
        pl_error_set_uv(err);
        return -1;
    }
    l->next = loop->listeners;
    loop->listeners = l;
    return 0;
}

/* Stop watching: the watcher leaves the list now (a dispatch in progress
 * never meets it again) and its memory goes in uv_close's callback. The
 * duplicate is closed at once, so the listening socket is gone when the
 * caller's close() returns, as it is on the stdlib's loop: uv_close has
 * taken it out of libuv's epoll set already (EPOLL_CTL_DEL right away, and
 * a start not yet applied is dropped from libuv's queue). */
static void
pl_poll_listener_stop(PLLoop *loop, PLPollListener *l)
{
    PLPollListener **p = &loop->listeners;
    while (*p != NULL && *p != l)
        p = &(*p)->next;
    if (*p == NULL)
        return;
    *p = l->next;
    uv_close((uv_handle_t *)&l->poll, pl__poll_listener_close_cb);
    close(l->dupfd);
    l->dupfd = -1;
}

void
pl_poll_listeners_close(PLLoop *loop)
{
    while (loop->listeners != NULL)
        pl_poll_listener_stop(loop, loop->listeners);
}

/* The socket object closed (or detached) without remove_reader: what the
 * kernel does to an epoll registration when the fd is closed, done here.
 * The listening socket closes with our duplicate; the entry stays, in no
 * set, as a selector keeps the key of a closed fd (remove_reader still
 * answers True). */
static void
pl_poll_listener_orphan(PLLoop *loop, PLPollListener *l, PyObject *entry)
{
    pl_poll_listener_stop(loop, l);
    PyObject *m = PyLong_FromLong(EPOLLIN);
    if (m != NULL)
        PyList_SetItem(entry, PL_POLL_MASK, m);
    else
        PyErr_Clear();
}

int
pl_poll_dispatch_listeners(PLLoop *loop)
{
restart:
    for (PLPollListener *l = loop->listeners; l != NULL; l = l->next) {
        if (!l->fired)
            continue;
        l->fired = 0;
        PyObject *key = PyLong_FromLong(l->fd);
        if (key == NULL)
            return -1;
        PyObject *entry = loop->pollers ? PyDict_GetItemWithError(loop->pollers, key) : NULL;
        Py_DECREF(key);
        if (entry == NULL) {
            if (PyErr_Occurred())
                return -1;
            continue;
        }
        Py_INCREF(entry);
        PLHandle *h = (PLHandle *)Py_NewRef(PyList_GET_ITEM(entry, PL_POLL_READER));
        /* The socket object (the reader's second argument) must still own the
         * fd it was registered with: closed or detached behind our back, it
         * no longer does, and the stdlib's selector would hear nothing more. */
        PyObject *sock = (PyObject *)h != Py_None && h->args != NULL &&
                                 PyTuple_GET_SIZE(h->args) >= 2
                             ? PyTuple_GET_ITEM(h->args, 1)
                             : NULL;
        int fd = sock != NULL ? pl_uvh_sock_fd(sock) : -1;
        int rc = 0;
        if (fd != l->fd) {
            PyErr_Clear();
            pl_poll_listener_orphan(loop, l, entry);
        }
        else {
            loop->accept_fd = l->fd;
            loop->accept_dupfd = l->dupfd;
            rc = pl_loop_run_handle(loop, h);
            loop->accept_fd = loop->accept_dupfd = -1;
        }
        Py_DECREF(h);
        Py_DECREF(entry);
        if (rc < 0)
            return -1;
        goto restart; /* the reader may have changed the list */
    }
    return 0;
}

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
    /* Left only in a forked child's copy, which leaves libuv alone (loop.c):
     * our duplicates are closed, the structs stay with libuv's memory. */
    for (PLPollListener *l = loop->listeners; l != NULL; l = l->next)
        if (l->dupfd >= 0)
            close(l->dupfd);
    loop->listeners = NULL;
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
    /* Asked before the registry is read: the socket's fileno() may be a
     * subclass's Python code, which may change the registry. */
    int listener = slot == PL_POLL_READER && pl_poll_is_listener(self, args, nargs, fd);

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
    long new_mask;
    listener = listener && (old_mask == 0 || (old_mask & PL_POLL_OWN));
    if (old_mask & PL_POLL_OWN) {
        /* The watcher's duplicate may be of another socket than the one the
         * fd number names now (closed and reused without remove_reader):
         * a new listener gets a new watcher; anything else joins the epoll
         * set, the reader with it. */
        PLPollListener *l = pl_poll_listener_find(self, fd);
        if (l != NULL)
            pl_poll_listener_stop(self, l);
        old_mask = 0;
        bit |= EPOLLIN;
    }
    if (listener && old_mask == 0) {
        if (pl_poll_listener_start(self, fd) == 0) {
            new_mask = EPOLLIN | PL_POLL_OWN;
            goto set_handle;
        }
        PyErr_Clear(); /* the epoll set serves it as before */
    }
    new_mask = old_mask | bit;
    if (pl_poll_ctl(self, fd, old_mask, new_mask) < 0) {
        if (old_mask == 0)
            PyDict_DelItem(self->pollers, key);
        goto error_key;
    }
set_handle:;
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
    if (old_mask & PL_POLL_OWN) {
        /* A listener's entry has its reader only. */
        if (slot == PL_POLL_READER) {
            PLPollListener *l = pl_poll_listener_find(self, fd);
            if (l != NULL)
                pl_poll_listener_stop(self, l);
            PyDict_DelItem(self->pollers, key);
        }
    }
    else if (new_mask == 0) {
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
