/* pyloop.fs's C core. Every call submits one libuv fs request (uv_fs_*) that
 * libuv runs on its thread pool without the GIL; pl__fs_done_cb resolves the
 * request's asyncio.Future on the loop thread. A few calls that would be a
 * chain of requests (open+fstat, whole-file read, whole-file write) are one
 * uv_queue_work job instead, its system calls made in the worker: one
 * thread-pool round trip, where most of a small operation's cost is.
 *
 * A request is a Python object (PLFsReq) so that the Python layer can cancel
 * it: `req = fs_read(loop, ...)`, `await req.future`, `req.cancel()` when the
 * await is interrupted. While libuv owns it, the request holds a reference to
 * itself, the loop, the Future and every buffer the worker thread touches;
 * pl_fs_req_release() drops them all, once, from the completion callback (or
 * from the submit function when libuv refused the request).
 *
 * Reads at an explicit offset first try the page cache from the loop thread
 * (pl_fs_read_inline, Linux's preadv2 with RWF_NOWAIT): a cached answer is
 * returned at once, with no request, Future or pool hop; only what the kernel
 * would have to wait for goes to the pool. */
#include "fs.h"
#include "errors.h"
#include "module.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <stddef.h>
#include <uv.h>

typedef enum {
    PL_FS_OPEN, PL_FS_CLOSE, PL_FS_READ, PL_FS_READINTO, PL_FS_WRITE, PL_FS_STAT,
    PL_FS_LSTAT, PL_FS_FSTAT, PL_FS_RENAME, PL_FS_UNLINK, PL_FS_RMDIR, PL_FS_MKDIR,
    PL_FS_SCANDIR, PL_FS_READLINK, PL_FS_REALPATH, PL_FS_SYMLINK, PL_FS_LINK,
    PL_FS_CHMOD, PL_FS_FCHMOD, PL_FS_UTIME, PL_FS_LUTIME, PL_FS_FUTIME, PL_FS_ACCESS,
    PL_FS_COPYFILE, PL_FS_SENDFILE, PL_FS_FSYNC, PL_FS_FDATASYNC, PL_FS_FTRUNCATE,
    /* stat(2) or lstat(2) answering one question about the path (exists,
     * isfile, isdir, islink): a bool, False for any error, as os.path. */
    PL_FS_STATTEST,
    /* Compound operations: one uv_queue_work job doing several system calls
     * in the worker (one thread-pool round trip instead of one per call). */
    PL_FS_OPENSTAT, PL_FS_READFILE, PL_FS_WRITEFILE,
    PL_FS_NOPS
} pl_fs_op;

/* Arguments after the loop, per operation (checked before parsing). */
static const Py_ssize_t pl_fs_nargs[PL_FS_NOPS] = {
    [PL_FS_OPEN] = 4, [PL_FS_CLOSE] = 1, [PL_FS_READ] = 4, [PL_FS_READINTO] = 4,
    [PL_FS_WRITE] = 3, [PL_FS_STAT] = 2, [PL_FS_LSTAT] = 2, [PL_FS_FSTAT] = 1,
    [PL_FS_RENAME] = 4, [PL_FS_UNLINK] = 2, [PL_FS_RMDIR] = 2, [PL_FS_MKDIR] = 3,
    [PL_FS_SCANDIR] = 2, [PL_FS_READLINK] = 2, [PL_FS_REALPATH] = 2, [PL_FS_SYMLINK] = 5,
    [PL_FS_LINK] = 4, [PL_FS_CHMOD] = 3, [PL_FS_FCHMOD] = 2, [PL_FS_UTIME] = 4,
    [PL_FS_LUTIME] = 4, [PL_FS_FUTIME] = 3, [PL_FS_ACCESS] = 3, [PL_FS_COPYFILE] = 5,
    [PL_FS_SENDFILE] = 4, [PL_FS_FSYNC] = 1, [PL_FS_FDATASYNC] = 1, [PL_FS_FTRUNCATE] = 2,
    [PL_FS_STATTEST] = 3,
    [PL_FS_OPENSTAT] = 4, [PL_FS_READFILE] = 2, [PL_FS_WRITEFILE] = 3,
};

#define PL_FS_IS_WORK(op) ((op) >= PL_FS_OPENSTAT)
/* Operations whose result is a descriptor the caller must close. */
#define PL_FS_OPENS_FD(op) ((op) == PL_FS_OPEN || (op) == PL_FS_OPENSTAT)

typedef struct PLFsReq {
    PyObject_HEAD
    uv_fs_t req;
    pl_fs_op op;
    char pending;          /* libuv owns the request: the references below are held */
    PLLoop *loop;
    PyObject *future;
    PyObject *filename;    /* what an OSError names (the caller's path objects) */
    PyObject *filename2;
    PyObject *result_buf;  /* PL_FS_READ: the bytes object the worker reads into */
    PyObject *finished;    /* Future resolved when libuv is done with us (closing a file waits) */
    Py_buffer view;        /* PL_FS_READINTO/WRITE: the caller's buffer, held while pending */
    char has_view;
    /* Made by an fs_<verb>_f entry: the caller got the Future, not us, and
     * the Future has us as its done callback (a cancelled Future calls us,
     * and we take the request back from the pool); removed again before
     * the result is set, so a completion schedules nothing but the waiter. */
    char direct;
    char test;             /* PL_FS_STATTEST: one of pl_fs_test */
    /* PL_FS_READ/READINTO: the file system refused RWF_NOWAIT (the file
     * object stops asking); `head` bytes at the start of the destination
     * were read inline from the page cache, the pool reads the rest. */
    char nowait_refused;
    Py_ssize_t head;
    /* Compound operations (PL_FS_IS_WORK): libuv runs pl__fs_work_cb on a
     * worker; it reads only the fields below and writes only w_* ones. The
     * outcome goes to req.result (>= 0, or -errno) as for an fs request. */
    uv_work_t work;
    PyObject *path_obj, *path_obj2; /* the paths as bytes (`path` points into the first) */
    const char *path;
    int w_flags, w_mode;   /* open(2)'s arguments */
    char *w_data;          /* PL_FS_READFILE: the file's bytes (PyMem_Raw) */
    size_t w_len;
    unsigned long long w_st_mode, w_st_blksize, w_st_size;
    struct PLFsReq *prev, *next; /* every pending request, for loop teardown */
} PLFsReq;

/* PL_FS_STATTEST's questions (the Python layer passes these numbers). */
enum pl_fs_test { PL_FS_TEST_EXISTS = 1, PL_FS_TEST_ISFILE, PL_FS_TEST_ISDIR, PL_FS_TEST_ISLINK };

static PyTypeObject *PLFsReq_Type;
static PLFsReq *pl_fs_pending; /* list head; touched only with the GIL */
static PyObject *pl_fs_stat_result; /* os.stat_result */
static int pl_fs_stat_direct;       /* its layout is the 19 fields filled below */
static PyObject *pl_fs_str_done, *pl_fs_str_set_result, *pl_fs_str_set_exception;
static PyObject *pl_fs_str_add_done_callback, *pl_fs_str_remove_done_callback;

/* ---- completion ----------------------------------------------------------- */

/* A struct sequence is a tuple underneath, but the limited accessors differ. */
#define PL_FS_STAT_SET(t, i, v) \
    (pl_fs_stat_direct ? PyStructSequence_SET_ITEM((t), (i), (v)) : PyTuple_SET_ITEM((t), (i), (v)))
#define PL_FS_STAT_GET(t, i) \
    (pl_fs_stat_direct ? PyStructSequence_GET_ITEM((t), (i)) : PyTuple_GET_ITEM((t), (i)))

static PyObject *
pl_fs_stat_to_py(const uv_stat_t *st)
{
    /* os.stat_result's layout on Linux: ten sequence fields (integer times at
     * 7-9), then float times, ns times, blksize, blocks, rdev. */
    PyObject *t = NULL, *r = NULL;
    const uv_timespec_t *ts[3] = {&st->st_atim, &st->st_mtim, &st->st_ctim};
    /* Filling the struct sequence in place skips os.stat_result's
     * constructor (argument parsing, a copy of every field): a third of a
     * stat's cost on the loop thread. The tuple detour stays for a layout
     * other than the one known here. */
    if (pl_fs_stat_direct)
        t = PyStructSequence_New((PyTypeObject *)pl_fs_stat_result);
    else
        t = PyTuple_New(19);
    if (t == NULL)
        goto cleanup;
    PL_FS_STAT_SET(t, 0, PyLong_FromUnsignedLongLong(st->st_mode));
    PL_FS_STAT_SET(t, 1, PyLong_FromUnsignedLongLong(st->st_ino));
    PL_FS_STAT_SET(t, 2, PyLong_FromUnsignedLongLong(st->st_dev));
    PL_FS_STAT_SET(t, 3, PyLong_FromUnsignedLongLong(st->st_nlink));
    PL_FS_STAT_SET(t, 4, PyLong_FromUnsignedLongLong(st->st_uid));
    PL_FS_STAT_SET(t, 5, PyLong_FromUnsignedLongLong(st->st_gid));
    PL_FS_STAT_SET(t, 6, PyLong_FromUnsignedLongLong(st->st_size));
    for (int i = 0; i < 3; i++) {
        long long ns = (long long)ts[i]->tv_sec * 1000000000LL + ts[i]->tv_nsec;
        PL_FS_STAT_SET(t, 7 + i, PyLong_FromLongLong(ts[i]->tv_sec));
        PL_FS_STAT_SET(t, 10 + i,
                         PyFloat_FromDouble((double)ts[i]->tv_sec + ts[i]->tv_nsec * 1e-9));
        PL_FS_STAT_SET(t, 13 + i, PyLong_FromLongLong(ns));
    }
    PL_FS_STAT_SET(t, 16, PyLong_FromUnsignedLongLong(st->st_blksize));
    PL_FS_STAT_SET(t, 17, PyLong_FromUnsignedLongLong(st->st_blocks));
    PL_FS_STAT_SET(t, 18, PyLong_FromUnsignedLongLong(st->st_rdev));
    for (Py_ssize_t i = 0; i < 19; i++) {
        if (PL_FS_STAT_GET(t, i) == NULL)
            goto cleanup;
    }
    if (pl_fs_stat_direct) {
        r = t;
        t = NULL;
    }
    else {
        r = PyObject_CallOneArg(pl_fs_stat_result, t);
    }
cleanup:
    Py_XDECREF(t);
    return r;
}

static PyObject *
pl_fs_scandir_to_py(uv_fs_t *req)
{
    PyObject *list = PyList_New(0);
    uv_dirent_t ent;
    if (list == NULL)
        return NULL;
    while (uv_fs_scandir_next(req, &ent) != UV_EOF) {
        PyObject *item = Py_BuildValue("(y i)", ent.name, (int)ent.type);
        if (item == NULL || PyList_Append(list, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(list);
            return NULL;
        }
        Py_DECREF(item);
    }
    return list;
}

/* The Python value of a successful request. */
static PyObject *
pl_fs_result(PLFsReq *self)
{
    uv_fs_t *req = &self->req;
    PyObject *r;
    switch (self->op) {
    case PL_FS_READ:
        /* The worker filled the bytes object nobody else has seen yet. */
        if (req->result != PyBytes_GET_SIZE(self->result_buf) &&
            _PyBytes_Resize(&self->result_buf, req->result) < 0)
            return NULL;
        r = self->result_buf;
        self->result_buf = NULL;
        return r;
    case PL_FS_OPEN:
    case PL_FS_READINTO:
    case PL_FS_WRITE:
    case PL_FS_SENDFILE:
        return PyLong_FromSsize_t(req->result);
    case PL_FS_STAT:
    case PL_FS_LSTAT:
    case PL_FS_FSTAT:
        return pl_fs_stat_to_py(&req->statbuf);
    case PL_FS_SCANDIR:
        return pl_fs_scandir_to_py(req);
    case PL_FS_READLINK:
    case PL_FS_REALPATH:
        return PyBytes_FromString((const char *)req->ptr);
    case PL_FS_ACCESS:
        Py_RETURN_TRUE;
    case PL_FS_STATTEST: {
        uint64_t fmt = req->statbuf.st_mode & S_IFMT;
        switch (self->test) {
        case PL_FS_TEST_ISFILE:
            return PyBool_FromLong(fmt == S_IFREG);
        case PL_FS_TEST_ISDIR:
            return PyBool_FromLong(fmt == S_IFDIR);
        case PL_FS_TEST_ISLINK:
            return PyBool_FromLong(fmt == S_IFLNK);
        default:
            Py_RETURN_TRUE;
        }
    }
    case PL_FS_OPENSTAT:
        return Py_BuildValue("(nKKK)", (Py_ssize_t)req->result, self->w_st_mode,
                             self->w_st_blksize, self->w_st_size);
    case PL_FS_READFILE:
        return PyBytes_FromStringAndSize(self->w_data, (Py_ssize_t)self->w_len);
    case PL_FS_WRITEFILE:
        return PyLong_FromSsize_t(req->result);
    default:
        Py_RETURN_NONE;
    }
}

/* The one function that gives back what a pending request held. */
static void
pl_fs_req_release(PLFsReq *self)
{
    if (!PL_FS_IS_WORK(self->op))
        uv_fs_req_cleanup(&self->req);
    PyMem_RawFree(self->w_data);
    self->w_data = NULL;
    Py_CLEAR(self->path_obj);
    Py_CLEAR(self->path_obj2);
    if (self->has_view) {
        PyBuffer_Release(&self->view);
        self->has_view = 0;
    }
    Py_CLEAR(self->result_buf);
    Py_CLEAR(self->filename);
    Py_CLEAR(self->filename2);
    Py_CLEAR(self->future);
    Py_CLEAR(self->finished);
    if (self->pending) {
        self->pending = 0;
        if (self->prev != NULL)
            self->prev->next = self->next;
        else
            pl_fs_pending = self->next;
        if (self->next != NULL)
            self->next->prev = self->prev;
        self->prev = self->next = NULL;
        pl_counters.requests_freed++;
        Py_CLEAR(self->loop);
        Py_DECREF(self); /* the reference libuv's ownership stood for */
    }
    else {
        Py_CLEAR(self->loop);
    }
}

/* Set the Future's outcome. Returns -1 with an exception set when that
 * failed (the Future's own callbacks are not run here: set_result schedules
 * them on the loop). */
static int
pl_fs_settle(PLFsReq *self)
{
    PyObject *done = NULL, *value = NULL, *r = NULL;
    int rc = -1;
    ssize_t result = self->req.result;

    done = PyObject_CallMethodNoArgs(self->future, pl_fs_str_done);
    if (done == NULL)
        goto cleanup;
    if (done == Py_True) {
        /* Cancelled while the worker ran: its result goes nowhere, but a
         * descriptor it opened must not leak. */
        if (PL_FS_OPENS_FD(self->op) && result >= 0)
            close((int)result);
        rc = 0;
        goto cleanup;
    }
    if (self->direct) {
        /* Not cancelled: the callback that would take us out of the pool
         * has nothing left to do, and left in place it would be scheduled
         * as a second callback of every completion. */
        r = PyObject_CallMethodOneArg(self->future, pl_fs_str_remove_done_callback,
                                      (PyObject *)self);
        if (r == NULL)
            goto cleanup;
        Py_CLEAR(r);
    }
    if (result < 0 && (self->op == PL_FS_ACCESS || self->op == PL_FS_STATTEST)) {
        value = Py_NewRef(Py_False);
    }
    else if (result < 0) {
        errno = (int)-result;
        PyErr_SetFromErrnoWithFilenameObjects(PyExc_OSError, self->filename, self->filename2);
        PyObject *exc = pl_err_fetch();
        if (exc == NULL)
            goto cleanup;
        r = PyObject_CallMethodOneArg(self->future, pl_fs_str_set_exception, exc);
        Py_DECREF(exc);
        if (r != NULL)
            rc = 0;
        goto cleanup;
    }
    else {
        value = pl_fs_result(self);
        if (value == NULL) {
            /* Converting failed (memory): the awaiting task gets the error. */
            PyObject *exc = pl_err_fetch();
            if (exc == NULL)
                goto cleanup;
            r = PyObject_CallMethodOneArg(self->future, pl_fs_str_set_exception, exc);
            Py_DECREF(exc);
            if (r != NULL)
                rc = 0;
            goto cleanup;
        }
    }
    r = PyObject_CallMethodOneArg(self->future, pl_fs_str_set_result, value);
    if (r != NULL)
        rc = 0;
cleanup:
    Py_XDECREF(done);
    Py_XDECREF(value);
    Py_XDECREF(r);
    return rc;
}

/* Deliver a finished request (an fs request's or a compound job's) and
 * give back what it held. */
static void
pl_fs_complete(PLFsReq *self)
{
    PLLoop *loop = self->loop;
    /* A closed loop (teardown runs the last completions) has nobody to
     * deliver to: the Future's callbacks would be scheduled on it. */
    if (loop->state == PL_LOOP_OPEN && pl_fs_settle(self) < 0) {
        if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) ||
            PyErr_ExceptionMatches(PyExc_SystemExit))
            pl_loop_stash_exception(loop);
        else
            PyErr_WriteUnraisable((PyObject *)self);
    }
    else if (loop->state != PL_LOOP_OPEN && PL_FS_OPENS_FD(self->op) && self->req.result >= 0) {
        close((int)self->req.result);
    }
    if (self->finished != NULL && loop->state == PL_LOOP_OPEN) {
        PyObject *r = PyObject_CallMethodOneArg(self->finished, pl_fs_str_set_result, Py_None);
        if (r == NULL)
            PyErr_WriteUnraisable((PyObject *)self);
        Py_XDECREF(r);
    }
    pl_fs_req_release(self);
}

static void
pl__fs_done_cb(uv_fs_t *req)
{
    PLFsReq *self = (PLFsReq *)((char *)req - offsetof(PLFsReq, req));
    pl_loop_gil_ensure(req->loop);
    if (self->head > 0 && req->result != UV_ECANCELED) {
        /* The pool read the rest of what the page cache began: the caller
         * gets the whole count, and the cached head even when the rest
         * failed (as one read(2) reports what it copied before an error). */
        req->result = req->result >= 0 ? req->result + self->head : self->head;
    }
    pl_fs_complete(self);
}

/* ---- compound operations (run on a worker, without the GIL) ------------- */

static int
pl_fs_work_open(const char *path, int flags, int mode)
{
    int fd;
    do
        fd = open(path, flags | O_CLOEXEC, mode);
    while (fd < 0 && errno == EINTR);
    return fd;
}

/* The whole file into a PyMem_Raw buffer (the GIL is not held, so no bytes
 * object yet): -errno or 0. */
static ssize_t
pl_fs_work_slurp(PLFsReq *self, int fd)
{
    struct stat st;
    size_t cap = 64 * 1024, len = 0;
    char *buf;
    if (fstat(fd, &st) < 0)
        return -errno;
    /* One byte more than the size sees EOF in the same read. */
    if (S_ISREG(st.st_mode) && st.st_size > 0)
        cap = (size_t)st.st_size + 1;
    buf = PyMem_RawMalloc(cap);
    if (buf == NULL)
        return -ENOMEM;
    for (;;) {
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int err = errno;
            PyMem_RawFree(buf);
            return -err;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        if (len == cap) {
            char *bigger = PyMem_RawRealloc(buf, cap * 2);
            if (bigger == NULL) {
                PyMem_RawFree(buf);
                return -ENOMEM;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    self->w_data = buf;
    self->w_len = len;
    return 0;
}

static ssize_t
pl_fs_work_spill(PLFsReq *self, int fd)
{
    const char *p = self->view.buf;
    size_t left = (size_t)self->view.len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        left -= (size_t)n;
    }
    return (ssize_t)self->view.len;
}

static void
pl__fs_work_cb(uv_work_t *work)
{
    PLFsReq *self = (PLFsReq *)((char *)work - offsetof(PLFsReq, work));
    struct stat st;
    ssize_t r;
    int fd = pl_fs_work_open(self->path, self->w_flags, self->w_mode);
    if (fd < 0) {
        self->req.result = -errno;
        return;
    }
    switch (self->op) {
    case PL_FS_OPENSTAT:
        /* The descriptor is the result; what open() needs to know of it
         * (directory? block size? regular?) comes along. */
        if (fstat(fd, &st) < 0) {
            r = -errno;
            break; /* closed below */
        }
        self->w_st_mode = st.st_mode;
        self->w_st_blksize = (unsigned long long)st.st_blksize;
        /* a hint for a first read() to the end: no fstat request then */
        self->w_st_size = (unsigned long long)st.st_size;
        self->req.result = fd;
        return;
    case PL_FS_READFILE:
        r = pl_fs_work_slurp(self, fd);
        break;
    default:
        r = pl_fs_work_spill(self, fd);
        break;
    }
    /* A failed close can lose written data (NFS, quotas): it is the error. */
    if (close(fd) < 0 && r >= 0 && errno != EINTR)
        r = -errno;
    self->req.result = r;
}

static void
pl__fs_work_done_cb(uv_work_t *work, int status)
{
    PLFsReq *self = (PLFsReq *)((char *)work - offsetof(PLFsReq, work));
    pl_loop_gil_ensure(work->loop);
    if (status < 0) /* UV_ECANCELED: the worker never ran it */
        self->req.result = status;
    pl_fs_complete(self);
}

/* ---- submission ----------------------------------------------------------- */

/* A path argument: bytes as given, or str encoded as os.fsencode does. The
 * request keeps the bytes object in *keep until it is released (libuv copies
 * paths, but a compound job's worker reads it in place). */
static int
pl_fs_arg_path(PyObject *o, const char **out, PyObject **keep)
{
    PyObject *b;
    if (PyUnicode_Check(o)) {
        b = PyUnicode_EncodeFSDefault(o);
        if (b == NULL)
            return -1;
    }
    else if (PyBytes_Check(o)) {
        b = Py_NewRef(o);
    }
    else {
        PyErr_SetString(PyExc_TypeError, "path must be str or bytes (os.fspath)");
        return -1;
    }
    Py_XSETREF(*keep, b);
    *out = PyBytes_AS_STRING(b);
    if (strlen(*out) != (size_t)PyBytes_GET_SIZE(b)) {
        PyErr_SetString(PyExc_ValueError, "embedded null byte");
        return -1;
    }
    return 0;
}

static int
pl_fs_arg_int(PyObject *o, int *out)
{
    long v = PyLong_AsLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    if (v < INT_MIN || v > INT_MAX) {
        PyErr_SetString(PyExc_OverflowError, "value out of int range");
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int
pl_fs_arg_i64(PyObject *o, int64_t *out)
{
    long long v = PyLong_AsLongLong(o);
    if (v == -1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

static int
pl_fs_arg_double(PyObject *o, double *out)
{
    double v = PyFloat_AsDouble(o);
    if (v == -1.0 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

/* ---- reads answered from the page cache ---------------------------------- */

/* Reads larger than this always go to the pool: a cached copy of 1 MiB takes
 * tens of microseconds on the loop thread, a larger read(-1) would hold the
 * loop for longer. */
#define PL_FS_INLINE_MAX (1024 * 1024)
/* Above this the copy runs with the GIL released (other Python threads go
 * on; the destination is ours or held by a buffer export). */
#define PL_FS_INLINE_NOGIL (64 * 1024)

#if defined(__linux__) && defined(RWF_NOWAIT)
#define PL_FS_HAVE_NOWAIT 1
#else
#define PL_FS_HAVE_NOWAIT 0
#endif

/* What happened to reads (fs_read/fs_readinto), for tests and benchmarks:
 * which path answered is otherwise invisible to the caller. */
enum {
    PL_FS_RS_INLINE,   /* answered wholly from the page cache (EOF included) */
    PL_FS_RS_PARTIAL,  /* a cached head inline, the rest from the pool */
    PL_FS_RS_EAGAIN,   /* nothing cached at the offset: the pool */
    PL_FS_RS_REFUSED,  /* the file system or kernel refused RWF_NOWAIT */
    PL_FS_RS_POOL,     /* every read sent to the pool, for any reason */
    PL_FS_RS_N
};
static unsigned long long pl_fs_read_stats[PL_FS_RS_N];
/* Relaxed atomics: loops in several threads count at once (a free-threaded build runs them without
 * a GIL); a reader wants each count whole, not the counts at one instant. */
#define PL_FS_RS_COUNT(k) __atomic_add_fetch(&pl_fs_read_stats[(k)], 1, __ATOMIC_RELAXED)
#define PL_FS_RS_GET(k) __atomic_load_n(&pl_fs_read_stats[(k)], __ATOMIC_RELAXED)

/* fs_read's (fd, size, offset) or fs_readinto's (fd, -, offset) checked. */
static int
pl_fs_read_args(pl_fs_op op, PyObject *const *a, int *fd, Py_ssize_t *size, int64_t *off)
{
    if (pl_fs_arg_int(a[0], fd) < 0 || pl_fs_arg_i64(a[2], off) < 0)
        return -1;
    if (op != PL_FS_READ)
        return 0;
    *size = PyLong_AsSsize_t(a[1]);
    if (*size == -1 && PyErr_Occurred())
        return -1;
    if (*size < 0 || *size > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "read size out of range");
        return -1;
    }
    return 0;
}

/* What an inline attempt leaves for the pool request: the destination and
 * how much of it the page cache filled. */
typedef struct {
    PyObject *bytes;   /* PL_FS_READ's destination */
    Py_buffer view;    /* PL_FS_READINTO's */
    char has_view;
    char refused;
    Py_ssize_t head;
} PLFsInline;

static void
pl_fs_inline_clear(PLFsInline *in)
{
    Py_CLEAR(in->bytes);
    if (in->has_view) {
        PyBuffer_Release(&in->view);
        in->has_view = 0;
    }
}

/* preadv2(RWF_NOWAIT) until the destination is full, EOF, or the kernel
 * would block. Returns the bytes copied; *stop says why it stopped short
 * (0: full or EOF, else the errno). */
static Py_ssize_t
pl_fs_pread_nowait(int fd, char *dst, Py_ssize_t size, int64_t off, int *stop)
{
    Py_ssize_t got = 0;
    *stop = 0;
#if PL_FS_HAVE_NOWAIT
    PyThreadState *ts = size > PL_FS_INLINE_NOGIL ? PyEval_SaveThread() : NULL;
    while (got < size) {
        struct iovec iov = {dst + got, (size_t)(size - got)};
        ssize_t n = preadv2(fd, &iov, 1, (off_t)(off + got), RWF_NOWAIT);
        if (n > 0) {
            got += n;
            continue;
        }
        if (n == 0)
            break; /* EOF: a read there answers 0 whether cached or not */
        if (errno == EINTR)
            continue;
        *stop = errno;
        break;
    }
    if (ts != NULL)
        PyEval_RestoreThread(ts);
#else
    (void)fd; (void)dst; (void)size; (void)off;
    *stop = EOPNOTSUPP;
#endif
    return got;
}

/* fs_read/fs_readinto with `nowait` set: try the page cache from the loop
 * thread. Returns 1 with *out the answer (bytes, or readinto's count), 0 to
 * go on with a pool request (`in` says what is done already), -1 with an
 * exception set. */
static int
pl_fs_read_inline(pl_fs_op op, PyObject *const *a, PLFsInline *in, PyObject **out)
{
    int fd, stop;
    int64_t off;
    Py_ssize_t size = 0, got;
    char *dst;

    if (pl_fs_read_args(op, a, &fd, &size, &off) < 0)
        return -1;
    if (off < 0) /* at the descriptor's position: a pipe, or unseekable */
        return 0;
    if (op == PL_FS_READ) {
        if (size > PL_FS_INLINE_MAX)
            return 0;
        in->bytes = PyBytes_FromStringAndSize(NULL, size);
        if (in->bytes == NULL)
            return -1;
        dst = PyBytes_AS_STRING(in->bytes);
    }
    else {
        if (PyObject_GetBuffer(a[1], &in->view, PyBUF_WRITABLE) < 0)
            return -1;
        in->has_view = 1;
        size = in->view.len;
        if (size > PL_FS_INLINE_MAX)
            return 0;
        dst = in->view.buf;
    }
    got = pl_fs_pread_nowait(fd, dst, size, off, &stop);
    if (stop == 0) {
        PL_FS_RS_COUNT(PL_FS_RS_INLINE);
        if (op == PL_FS_READINTO) {
            *out = PyLong_FromSsize_t(got);
            pl_fs_inline_clear(in);
            return *out != NULL ? 1 : -1;
        }
        if (got != size && _PyBytes_Resize(&in->bytes, got) < 0)
            return -1; /* _PyBytes_Resize cleared in->bytes */
        *out = in->bytes;
        in->bytes = NULL;
        return 1;
    }
    if (stop == EOPNOTSUPP || stop == EINVAL || stop == ENOSYS) {
        /* tmpfs, procfs, a kernel before 4.14, O_DIRECT's alignment: the
         * pool's read gives the answer (or the error) as before. */
        in->refused = 1;
        PL_FS_RS_COUNT(PL_FS_RS_REFUSED);
    }
    else if (got > 0) {
        PL_FS_RS_COUNT(PL_FS_RS_PARTIAL);
    }
    else {
        /* EAGAIN, or an error the pool's read reports as it always did */
        PL_FS_RS_COUNT(PL_FS_RS_EAGAIN);
    }
    in->head = got;
    return 0;
}

static PyObject *
pl_fs_read_stats_py(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("{sKsKsKsKsKsO}",
                         "inline", PL_FS_RS_GET(PL_FS_RS_INLINE),
                         "partial", PL_FS_RS_GET(PL_FS_RS_PARTIAL),
                         "eagain", PL_FS_RS_GET(PL_FS_RS_EAGAIN),
                         "refused", PL_FS_RS_GET(PL_FS_RS_REFUSED),
                         "pool", PL_FS_RS_GET(PL_FS_RS_POOL),
                         "supported", PL_FS_HAVE_NOWAIT ? Py_True : Py_False);
}

/* Start libuv's request for `self->op` with args (after the loop). Returns
 * libuv's error (< 0) or 0; -2 with a Python exception set when an argument
 * was wrong (libuv never saw the request). */
static int
pl_fs_start(PLFsReq *self, PyObject *const *a)
{
    uv_loop_t *uv = &self->loop->uv;
    uv_fs_t *req = &self->req;
    const char *p1 = NULL, *p2 = NULL;
    int fd = -1, i1 = 0;
    int64_t off = 0, n64 = 0;
    double d1 = 0, d2 = 0;
    uv_buf_t buf;

    switch (self->op) {
    case PL_FS_OPEN:
        if (pl_fs_arg_path(a[0], &p1, &self->path_obj) < 0 || pl_fs_arg_int(a[2], &fd) < 0 ||
            pl_fs_arg_int(a[3], &i1) < 0)
            return -2;
        self->filename = Py_NewRef(a[1]);
        return uv_fs_open(uv, req, p1, fd, i1, pl__fs_done_cb);
    case PL_FS_CLOSE:
        if (pl_fs_arg_int(a[0], &fd) < 0)
            return -2;
        return uv_fs_close(uv, req, fd, pl__fs_done_cb);
    case PL_FS_READ: {
        Py_ssize_t size;
        if (pl_fs_read_args(self->op, a, &fd, &size, &off) < 0)
            return -2;
        /* The request owns the destination: a bytes object no Python code
         * sees until the completion hands it over (pl_fs_read_inline may
         * have made it and filled its head already). */
        if (self->result_buf == NULL) {
            self->result_buf = PyBytes_FromStringAndSize(NULL, size);
            if (self->result_buf == NULL)
                return -2;
        }
        buf = uv_buf_init(PyBytes_AS_STRING(self->result_buf) + self->head,
                          (unsigned int)(size - self->head));
        return uv_fs_read(uv, req, fd, &buf, 1, off >= 0 ? off + self->head : off,
                          pl__fs_done_cb);
    }
    case PL_FS_READINTO:
    case PL_FS_WRITE:
        if (pl_fs_arg_int(a[0], &fd) < 0 || pl_fs_arg_i64(a[2], &off) < 0)
            return -2;
        if (!self->has_view) {
            if (PyObject_GetBuffer(a[1], &self->view, self->op == PL_FS_READINTO
                                                          ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0)
                return -2;
            self->has_view = 1;
        }
        if (self->view.len > UINT_MAX) {
            PyErr_SetString(PyExc_OverflowError, "buffer too large for one request");
            return -2;
        }
        buf = uv_buf_init((char *)self->view.buf + self->head,
                          (unsigned int)(self->view.len - self->head));
        if (self->op == PL_FS_READINTO)
            return uv_fs_read(uv, req, fd, &buf, 1, off >= 0 ? off + self->head : off,
                              pl__fs_done_cb);
        return uv_fs_write(uv, req, fd, &buf, 1, off, pl__fs_done_cb);
    case PL_FS_STAT:
    case PL_FS_LSTAT:
    case PL_FS_UNLINK:
    case PL_FS_RMDIR:
    case PL_FS_SCANDIR:
    case PL_FS_READLINK:
    case PL_FS_REALPATH:
        if (pl_fs_arg_path(a[0], &p1, &self->path_obj) < 0)
            return -2;
        self->filename = Py_NewRef(a[1]);
        switch (self->op) {
        case PL_FS_STAT:
            return uv_fs_stat(uv, req, p1, pl__fs_done_cb);
        case PL_FS_LSTAT:
            return uv_fs_lstat(uv, req, p1, pl__fs_done_cb);
        case PL_FS_UNLINK:
            return uv_fs_unlink(uv, req, p1, pl__fs_done_cb);
        case PL_FS_RMDIR:
            return uv_fs_rmdir(uv, req, p1, pl__fs_done_cb);
        case PL_FS_SCANDIR:
            return uv_fs_scandir(uv, req, p1, 0, pl__fs_done_cb);
        case PL_FS_READLINK:
            return uv_fs_readlink(uv, req, p1, pl__fs_done_cb);
        default:
            return uv_fs_realpath(uv, req, p1, pl__fs_done_cb);
        }
    case PL_FS_STATTEST:
        if (pl_fs_arg_path(a[0], &p1, &self->path_obj) < 0 || pl_fs_arg_int(a[2], &i1) < 0)
            return -2;
        if (i1 < PL_FS_TEST_EXISTS || i1 > PL_FS_TEST_ISLINK) {
            PyErr_SetString(PyExc_ValueError, "unknown stat test");
            return -2;
        }
        self->test = (char)i1;
        /* islink asks about the link itself; the others follow it. */
        if (i1 == PL_FS_TEST_ISLINK)
            return uv_fs_lstat(uv, req, p1, pl__fs_done_cb);
        return uv_fs_stat(uv, req, p1, pl__fs_done_cb);
    case PL_FS_FSTAT:
    case PL_FS_FSYNC:
    case PL_FS_FDATASYNC:
        if (pl_fs_arg_int(a[0], &fd) < 0)
            return -2;
        if (self->op == PL_FS_FSTAT)
            return uv_fs_fstat(uv, req, fd, pl__fs_done_cb);
        if (self->op == PL_FS_FSYNC)
            return uv_fs_fsync(uv, req, fd, pl__fs_done_cb);
        return uv_fs_fdatasync(uv, req, fd, pl__fs_done_cb);
    case PL_FS_RENAME:
    case PL_FS_LINK:
    case PL_FS_SYMLINK:
    case PL_FS_COPYFILE:
        if (pl_fs_arg_path(a[0], &p1, &self->path_obj) < 0 || pl_fs_arg_path(a[1], &p2, &self->path_obj2) < 0)
            return -2;
        if ((self->op == PL_FS_SYMLINK || self->op == PL_FS_COPYFILE) &&
            pl_fs_arg_int(a[4], &i1) < 0)
            return -2;
        self->filename = Py_NewRef(a[2]);
        self->filename2 = Py_NewRef(a[3]);
        if (self->op == PL_FS_RENAME)
            return uv_fs_rename(uv, req, p1, p2, pl__fs_done_cb);
        if (self->op == PL_FS_LINK)
            return uv_fs_link(uv, req, p1, p2, pl__fs_done_cb);
        if (self->op == PL_FS_SYMLINK)
            return uv_fs_symlink(uv, req, p1, p2, i1, pl__fs_done_cb);
        return uv_fs_copyfile(uv, req, p1, p2, i1, pl__fs_done_cb);
    case PL_FS_MKDIR:
    case PL_FS_CHMOD:
    case PL_FS_ACCESS:
        if (pl_fs_arg_path(a[0], &p1, &self->path_obj) < 0 || pl_fs_arg_int(a[2], &i1) < 0)
            return -2;
        self->filename = Py_NewRef(a[1]);
        if (self->op == PL_FS_MKDIR)
            return uv_fs_mkdir(uv, req, p1, i1, pl__fs_done_cb);
        if (self->op == PL_FS_CHMOD)
            return uv_fs_chmod(uv, req, p1, i1, pl__fs_done_cb);
        return uv_fs_access(uv, req, p1, i1, pl__fs_done_cb);
    case PL_FS_FCHMOD:
    case PL_FS_FTRUNCATE:
        if (pl_fs_arg_int(a[0], &fd) < 0 || pl_fs_arg_i64(a[1], &n64) < 0)
            return -2;
        if (self->op == PL_FS_FCHMOD)
            return uv_fs_fchmod(uv, req, fd, (int)n64, pl__fs_done_cb);
        return uv_fs_ftruncate(uv, req, fd, n64, pl__fs_done_cb);
    case PL_FS_UTIME:
    case PL_FS_LUTIME:
        if (pl_fs_arg_path(a[0], &p1, &self->path_obj) < 0 || pl_fs_arg_double(a[2], &d1) < 0 ||
            pl_fs_arg_double(a[3], &d2) < 0)
            return -2;
        self->filename = Py_NewRef(a[1]);
        if (self->op == PL_FS_UTIME)
            return uv_fs_utime(uv, req, p1, d1, d2, pl__fs_done_cb);
        return uv_fs_lutime(uv, req, p1, d1, d2, pl__fs_done_cb);
    case PL_FS_FUTIME:
        if (pl_fs_arg_int(a[0], &fd) < 0 || pl_fs_arg_double(a[1], &d1) < 0 ||
            pl_fs_arg_double(a[2], &d2) < 0)
            return -2;
        return uv_fs_futime(uv, req, fd, d1, d2, pl__fs_done_cb);
    case PL_FS_SENDFILE: {
        int in_fd;
        if (pl_fs_arg_int(a[0], &fd) < 0 || pl_fs_arg_int(a[1], &in_fd) < 0 ||
            pl_fs_arg_i64(a[2], &off) < 0 || pl_fs_arg_i64(a[3], &n64) < 0)
            return -2;
        return uv_fs_sendfile(uv, req, fd, in_fd, off, (size_t)n64, pl__fs_done_cb);
    }
    case PL_FS_OPENSTAT:
    case PL_FS_READFILE:
    case PL_FS_WRITEFILE:
        if (pl_fs_arg_path(a[0], &p1, &self->path_obj) < 0)
            return -2;
        if (self->op == PL_FS_OPENSTAT) {
            if (pl_fs_arg_int(a[2], &self->w_flags) < 0 || pl_fs_arg_int(a[3], &self->w_mode) < 0)
                return -2;
        }
        else if (self->op == PL_FS_READFILE) {
            self->w_flags = O_RDONLY;
        }
        else {
            if (PyObject_GetBuffer(a[2], &self->view, PyBUF_SIMPLE) < 0)
                return -2;
            self->has_view = 1;
            self->w_flags = O_WRONLY | O_CREAT | O_TRUNC;
            self->w_mode = 0666;
        }
        self->path = p1; /* read in place by the worker: path_obj holds it */
        self->filename = Py_NewRef(a[1]);
        return uv_queue_work(uv, &self->work, pl__fs_work_cb, pl__fs_work_done_cb);
    default:
        PyErr_SetString(PyExc_SystemError, "unknown fs operation");
        return -2;
    }
}

/* fs_<verb>(loop, *args) -> request object; `request.future` resolves with
 * the result. With `direct` (fs_<verb>_f): the Future itself, no request
 * object for the caller to keep, no coroutine around the await. */
static PyObject *
pl_fs_submit(pl_fs_op op, PyObject *const *args, Py_ssize_t nargs, int direct)
{
    PLFsReq *self = NULL;
    PyObject *result = NULL;
    PLLoop *loop;
    PLFsInline in = {0};
    int err, is_read = op == PL_FS_READ || op == PL_FS_READINTO;

    if (nargs != pl_fs_nargs[op] + 1) {
        PyErr_Format(PyExc_TypeError, "expected %zd arguments, got %zd", pl_fs_nargs[op] + 1,
                     nargs);
        goto cleanup;
    }
    if (!PyObject_TypeCheck(args[0], &PLLoop_Type)) {
        PyErr_SetString(PyExc_TypeError, "the first argument must be a pyloop loop");
        goto cleanup;
    }
    loop = (PLLoop *)args[0];
    if (pl_loop_check_closed(loop) < 0 || pl_loop_check_uv_thread(loop) < 0)
        goto cleanup;
    if (is_read && !direct) {
        /* The last argument asks for the page cache first (the file object
         * stops asking once the file system refused). */
        int nowait = PyObject_IsTrue(args[4]);
        if (nowait < 0)
            goto cleanup;
        if (nowait && pl_fs_read_inline(op, args + 1, &in, &result) != 0)
            goto cleanup; /* answered (result), or an error */
    }
    self = PyObject_New(PLFsReq, PLFsReq_Type);
    if (self == NULL)
        goto cleanup;
    memset((char *)self + offsetof(PLFsReq, req), 0, sizeof(*self) - offsetof(PLFsReq, req));
    self->op = op;
    /* What the inline attempt made is the request's from here. */
    self->result_buf = in.bytes;
    in.bytes = NULL;
    if (in.has_view) {
        self->view = in.view;
        self->has_view = 1;
        in.has_view = 0;
    }
    self->head = in.head;
    self->nowait_refused = in.refused;
    self->loop = (PLLoop *)Py_NewRef((PyObject *)loop);
    {
        PyObject *stack[1] = {(PyObject *)loop};
        self->future = PyObject_Vectorcall(pl_state.future_type, stack, 0,
                                           pl_state.kwnames_loop);
    }
    if (self->future == NULL)
        goto cleanup;
    err = pl_fs_start(self, args + 1);
    if (err == -2)
        goto cleanup;
    if (err < 0) {
        /* libuv refused it synchronously (it checks arguments only). */
        pl_error_set_uv(err);
        goto cleanup;
    }
    /* libuv accepted the request: from here it owns a reference to us. */
    self->pending = 1;
    Py_INCREF(self);
    pl_counters.requests_created++;
    if (is_read)
        PL_FS_RS_COUNT(PL_FS_RS_POOL);
    self->next = pl_fs_pending;
    if (pl_fs_pending != NULL)
        pl_fs_pending->prev = self;
    pl_fs_pending = self;
    if (direct) {
        /* Registered after libuv took the request: a failure here leaves a
         * pending request whose completion settles the Future as usual
         * (nobody awaits it), and the caller gets the error. */
        PyObject *r = PyObject_CallMethodOneArg(self->future, pl_fs_str_add_done_callback,
                                                (PyObject *)self);
        if (r == NULL)
            goto cleanup;
        Py_DECREF(r);
        self->direct = 1;
        result = Py_NewRef(self->future);
    }
    else {
        result = Py_NewRef((PyObject *)self);
    }
cleanup:
    pl_fs_inline_clear(&in);
    if (result == NULL && self != NULL && !self->pending)
        pl_fs_req_release(self);
    Py_XDECREF(self);
    return result;
}

/* libuv's request behind ours: the fs request, or the compound job. */
static uv_req_t *
pl_fs_uv_req(PLFsReq *self)
{
    if (PL_FS_IS_WORK(self->op))
        return (uv_req_t *)&self->work;
    return (uv_req_t *)&self->req;
}

void
pl_fs_cancel_all(PLLoop *loop)
{
    /* A queued close is left to run: taken back, its descriptor would leak
     * (the file object already counts it as closed). */
    for (PLFsReq *r = pl_fs_pending; r != NULL; r = r->next) {
        if (r->loop == loop && r->op != PL_FS_CLOSE)
            uv_cancel(pl_fs_uv_req(r));
    }
}

/* ---- the request type ------------------------------------------------------- */

static PyObject *
PLFsReq_cancel(PLFsReq *self, PyObject *Py_UNUSED(ignored))
{
    /* A request still queued is taken out of the pool (its callback then
     * reports UV_ECANCELED); one a worker already runs finishes and its
     * result is dropped by pl_fs_settle, the Future being done. */
    if (self->pending && uv_cancel(pl_fs_uv_req(self)) == 0)
        Py_RETURN_TRUE;
    Py_RETURN_FALSE;
}

/* A Future that resolves once libuv has finished with the request (also
 * after a cancellation the worker did not see in time): a file waits for
 * these before closing its descriptor, whose number a new open could reuse
 * while a worker is still about to read it. None when already finished. */
static PyObject *
PLFsReq_finished(PLFsReq *self, PyObject *Py_UNUSED(ignored))
{
    if (!self->pending)
        Py_RETURN_NONE;
    if (self->finished == NULL) {
        PyObject *stack[1] = {(PyObject *)self->loop};
        self->finished = PyObject_Vectorcall(pl_state.future_type, stack, 0,
                                             pl_state.kwnames_loop);
        if (self->finished == NULL)
            return NULL;
    }
    return Py_NewRef(self->finished);
}

/* The done callback of a direct request's Future: called (through the
 * loop's call_soon) only when the Future was cancelled, since a completion
 * removes it before setting the result. */
static PyObject *
PLFsReq_call(PLFsReq *self, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwargs))
{
    if (self->pending)
        (void)uv_cancel(pl_fs_uv_req(self)); /* a running worker finishes: fine */
    Py_RETURN_NONE;
}

static PyObject *
PLFsReq_get_pending(PLFsReq *self, void *Py_UNUSED(c))
{
    return PyBool_FromLong(self->pending);
}

static PyObject *
PLFsReq_get_refused(PLFsReq *self, void *Py_UNUSED(c))
{
    return PyBool_FromLong(self->nowait_refused);
}

static void
PLFsReq_dealloc(PLFsReq *self)
{
    /* Only reached when not pending: libuv's reference keeps it alive. */
    PyTypeObject *tp = Py_TYPE(self);
    pl_fs_req_release(self);
    PyObject_Free(self);
    Py_DECREF(tp); /* instances of a heap type own a reference to it */
}

static PyObject *
PLFsReq_get_future(PLFsReq *self, void *Py_UNUSED(c))
{
    if (self->future == NULL)
        Py_RETURN_NONE;
    return Py_NewRef(self->future);
}

static PyMethodDef PLFsReq_methods[] = {
    {"cancel", PL_METH(PLFsReq_cancel), METH_NOARGS,
     "cancel($self)\n--\n\nCancel the request if libuv has not started it yet."},
    {"finished", PL_METH(PLFsReq_finished), METH_NOARGS,
     "finished($self)\n--\n\nA Future done when libuv released the request, or None."},
    {NULL}
};

static PyGetSetDef PLFsReq_getset[] = {
    {"future", (getter)PLFsReq_get_future, NULL, NULL, NULL},
    {"pending", (getter)PLFsReq_get_pending, NULL, NULL, NULL},
    {"refused", (getter)PLFsReq_get_refused, NULL, NULL, NULL},
    {NULL}
};

static PyType_Slot PLFsReq_slots[] = {
    {Py_tp_dealloc, PLFsReq_dealloc},
    {Py_tp_call, PLFsReq_call},
    {Py_tp_methods, PLFsReq_methods},
    {Py_tp_getset, PLFsReq_getset},
    {Py_tp_doc, "A pending libuv fs request (made by pyloop._core.fs_* only)."},
    {0, NULL}
};

static PyType_Spec PLFsReq_spec = {
    .name = "pyloop._core.FsRequest",
    .basicsize = sizeof(PLFsReq),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = PLFsReq_slots,
};

int
pl_fs_init_types(PyObject *module)
{
    PyObject *os = PyImport_ImportModule("os");
    if (os == NULL)
        return -1;
    pl_fs_stat_result = PyObject_GetAttrString(os, "stat_result");
    Py_DECREF(os);
    if (pl_fs_stat_result == NULL)
        return -1;
    {
        /* n_fields counts the hidden fields too: 19 on Linux (3.11-3.15). */
        PyObject *n = PyObject_GetAttrString(pl_fs_stat_result, "n_fields");
        if (n == NULL)
            return -1;
        pl_fs_stat_direct = PyLong_AsLong(n) == 19;
        Py_DECREF(n);
        if (PyErr_Occurred())
            return -1;
    }
    pl_fs_str_done = PyUnicode_InternFromString("done");
    pl_fs_str_set_result = PyUnicode_InternFromString("set_result");
    pl_fs_str_set_exception = PyUnicode_InternFromString("set_exception");
    pl_fs_str_add_done_callback = PyUnicode_InternFromString("add_done_callback");
    pl_fs_str_remove_done_callback = PyUnicode_InternFromString("remove_done_callback");
    if (!pl_fs_str_done || !pl_fs_str_set_result || !pl_fs_str_set_exception ||
        !pl_fs_str_add_done_callback || !pl_fs_str_remove_done_callback)
        return -1;
    PLFsReq_Type = (PyTypeObject *)PyType_FromSpec(&PLFsReq_spec);
    if (PLFsReq_Type == NULL)
        return -1;
    if (PyModule_AddObjectRef(module, "FsRequest", (PyObject *)PLFsReq_Type) < 0)
        return -1;
    return 0;
}

/* ---- module functions ------------------------------------------------------- */

/* Each verb has two entries: fs_<verb> gives the request (a file object
 * keeps it, to wait for a cancelled one before closing), fs_<verb>_f gives
 * the Future (the module functions: one C call, nothing to keep). */
#define PL_FS_ENTRY(verb, OP)                                                       \
    static PyObject *pl_fs_##verb(PyObject *Py_UNUSED(m), PyObject *const *args,   \
                                  Py_ssize_t nargs)                               \
    {                                                                             \
        return pl_fs_submit(OP, args, nargs, 0);                                  \
    }                                                                             \
    static PyObject *pl_fs_##verb##_f(PyObject *Py_UNUSED(m), PyObject *const *args, \
                                      Py_ssize_t nargs)                           \
    {                                                                             \
        return pl_fs_submit(OP, args, nargs, 1);                                  \
    }

PL_FS_ENTRY(open, PL_FS_OPEN)
PL_FS_ENTRY(close, PL_FS_CLOSE)
PL_FS_ENTRY(read, PL_FS_READ)
PL_FS_ENTRY(readinto, PL_FS_READINTO)
PL_FS_ENTRY(write, PL_FS_WRITE)
PL_FS_ENTRY(stat, PL_FS_STAT)
PL_FS_ENTRY(lstat, PL_FS_LSTAT)
PL_FS_ENTRY(fstat, PL_FS_FSTAT)
PL_FS_ENTRY(rename, PL_FS_RENAME)
PL_FS_ENTRY(unlink, PL_FS_UNLINK)
PL_FS_ENTRY(rmdir, PL_FS_RMDIR)
PL_FS_ENTRY(mkdir, PL_FS_MKDIR)
PL_FS_ENTRY(scandir, PL_FS_SCANDIR)
PL_FS_ENTRY(readlink, PL_FS_READLINK)
PL_FS_ENTRY(realpath, PL_FS_REALPATH)
PL_FS_ENTRY(symlink, PL_FS_SYMLINK)
PL_FS_ENTRY(link, PL_FS_LINK)
PL_FS_ENTRY(chmod, PL_FS_CHMOD)
PL_FS_ENTRY(fchmod, PL_FS_FCHMOD)
PL_FS_ENTRY(utime, PL_FS_UTIME)
PL_FS_ENTRY(lutime, PL_FS_LUTIME)
PL_FS_ENTRY(futime, PL_FS_FUTIME)
PL_FS_ENTRY(access, PL_FS_ACCESS)
PL_FS_ENTRY(copyfile, PL_FS_COPYFILE)
PL_FS_ENTRY(sendfile, PL_FS_SENDFILE)
PL_FS_ENTRY(fsync, PL_FS_FSYNC)
PL_FS_ENTRY(fdatasync, PL_FS_FDATASYNC)
PL_FS_ENTRY(ftruncate, PL_FS_FTRUNCATE)
PL_FS_ENTRY(openstat, PL_FS_OPENSTAT)
PL_FS_ENTRY(readfile, PL_FS_READFILE)
PL_FS_ENTRY(writefile, PL_FS_WRITEFILE)
PL_FS_ENTRY(stattest, PL_FS_STATTEST)

#define PL_FS_DEF(verb)                                             \
    {"fs_" #verb, PL_METH(pl_fs_##verb), METH_FASTCALL, NULL},      \
    {"fs_" #verb "_f", PL_METH(pl_fs_##verb##_f), METH_FASTCALL, NULL}

PyMethodDef pl_fs_methods[] = {
    PL_FS_DEF(open), PL_FS_DEF(close), PL_FS_DEF(read), PL_FS_DEF(readinto),
    PL_FS_DEF(write), PL_FS_DEF(stat), PL_FS_DEF(lstat), PL_FS_DEF(fstat),
    PL_FS_DEF(rename), PL_FS_DEF(unlink), PL_FS_DEF(rmdir), PL_FS_DEF(mkdir),
    PL_FS_DEF(scandir), PL_FS_DEF(readlink), PL_FS_DEF(realpath), PL_FS_DEF(symlink),
    PL_FS_DEF(link), PL_FS_DEF(chmod), PL_FS_DEF(fchmod), PL_FS_DEF(utime),
    PL_FS_DEF(lutime), PL_FS_DEF(futime), PL_FS_DEF(access), PL_FS_DEF(copyfile),
    PL_FS_DEF(sendfile), PL_FS_DEF(fsync), PL_FS_DEF(fdatasync), PL_FS_DEF(ftruncate),
    PL_FS_DEF(openstat), PL_FS_DEF(readfile), PL_FS_DEF(writefile), PL_FS_DEF(stattest),
    {"fs_read_stats", PL_METH(pl_fs_read_stats_py), METH_NOARGS,
     "fs_read_stats()\n--\n\nHow reads were answered: counters since the module loaded."},
    {NULL}
};
