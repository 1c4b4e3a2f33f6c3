/* Pipe transports: the write side in C on the transport base, and the read
 * path of the read side (pyloop/loop.py's _ReadPipeTransport, the stdlib's
 * _UnixReadPipeTransport otherwise).
 *
 * The stdlib reads a pipe with os.read(fd, 256 KiB): every read allocates
 * 256 KiB, which glibc serves with mmap, and shrinks it to what arrived
 * (mremap), and the next data_received frees it (munmap); a pipe holds at
 * most 64 KiB by default, so that is three system calls and fresh zeroed
 * pages for every read. strace of the pipe_cat benchmark counted one
 * mmap, mremap and munmap per read. Reading into the loop's own buffer and
 * copying out what arrived costs one small allocation instead. */
#include "pipe.h"
#include "errors.h"
#include "module.h"
#include "poll.h"

#include <errno.h>
#include <fcntl.h>
#include <structmember.h>
#include <sys/stat.h>
#include <unistd.h>

PyObject *
Loop__pipe_read(PLLoop *self, PyObject *fdobj)
{
    int fd = PyObject_AsFileDescriptor(fdobj);
    if (fd < 0)
        return NULL;
    char *buf = pl_loop_read_buf(self);
    if (buf == NULL)
        return PyErr_NoMemory();
    ssize_t n;
    /* Without the GIL released: the fd is non-blocking, so read() returns at
     * once, and the buffer is the loop's, used by one caller at a time. */
    do {
        n = read(fd, buf, PL_LOOP_READ_BUF_SIZE);
    } while (n < 0 && errno == EINTR && PyErr_CheckSignals() == 0);
    if (n < 0)
        return PyErr_Occurred() ? NULL : pl_error_set_errno();
    return PyBytes_FromStringAndSize(buf, n);
}

/* ---- the write pipe transport ------------------------------------------------
 *
 * What the stdlib's _UnixWritePipeTransport does, on a libuv pipe handle:
 * a write goes to the pipe at once when nothing is queued, the rest is
 * queued as libuv write requests holding the data (an exact bytes object is
 * referenced, not copied). close() is write_eof(): connection_lost once the
 * queue drained. The reader going away is seen as the stdlib sees it, as
 * readability of the write end, on the loop's own poller (a write-only pipe
 * cannot be read through libuv: uv_read_start refuses it).
 *
 * The handle owns a duplicate of the caller's fd: libuv closes its fd in
 * uv_close, and the caller's pipe object (a file or socket object that
 * cannot always be detached) is closed by _call_connection_lost, as the
 * stdlib closes it. */

#define PL_WPIPE(h) ((PLWritePipe *)(h))

PyObject *pl_pipe_write_type;

/* Schedule _call_connection_lost(exc) once (the stdlib's _close and
 * write_eof), with the reader no longer watched. */
static int
pl_pipe_schedule_lost(PLWritePipe *self, PyObject *exc)
{
    if (self->lost_scheduled)
        return 0;
    self->lost_scheduled = 1;
    self->closing = 1;
    self->ops->stop_reading((PLUVHandle *)self);
    return pl_uvh_call_soon((PLUVHandle *)self, "_call_connection_lost", exc ? exc : Py_None);
}

/* The stdlib's _close(exc): what is queued is dropped (uv_close cancels the
 * requests), connection_lost(exc) on the next pass. */
static int
pl_pipe_op_force_close(PLUVHandle *h, PyObject *exc)
{
    PLWritePipe *self = PL_WPIPE(h);
    if (self->lost_scheduled)
        return 0;
    pl_uvh_close(h);
    return pl_pipe_schedule_lost(self, exc);
}

static Py_ssize_t
pl_pipe_op_write_size(PLUVHandle *h)
{
    /* Requests cancelled by a close are still being counted down. */
    return h->state == PL_UVH_OPEN ? (Py_ssize_t)PL_WPIPE(h)->write_size : 0;
}

static size_t
pl_pipe_op_pending_refs(PLUVHandle *h)
{
    return PL_WPIPE(h)->reqs;
}

/* The handle's fd is the transport's own duplicate: it cannot be closed
 * behind the transport's back. */
static int
pl_pipe_op_check_fd(PLUVHandle *Py_UNUSED(h))
{
    return 0;
}

/* Watch the caller's fd for readability (the reader went away), as the
 * stdlib's add_reader(fileno, _read_ready); for FIFOs and sockets only. */
static int
pl_pipe_op_start_reading(PLUVHandle *h)
{
    PLWritePipe *self = PL_WPIPE(h);
    if (!self->watch_reader || self->watching || self->closing || h->state != PL_UVH_OPEN)
        return 0;
    PyObject *cb = PyObject_GetAttrString((PyObject *)self, "_read_ready");
    if (cb == NULL)
        return -1;
    int rc = pl_poll_add(self->loop, self->fileno, 0, cb);
    Py_DECREF(cb);
    if (rc == 0)
        self->watching = 1;
    return rc;
}

static void
pl_pipe_op_stop_reading(PLUVHandle *h)
{
    PLWritePipe *self = PL_WPIPE(h);
    if (!self->watching)
        return;
    self->watching = 0;
    if (pl_poll_remove(self->loop, self->fileno, 0) < 0)
        PyErr_WriteUnraisable((PyObject *)self);
}

static void
pl_pipe_op_pause(PLUVHandle *Py_UNUSED(h))
{
}

static int
pl_pipe_op_resume(PLUVHandle *Py_UNUSED(h))
{
    return 0;
}

/* loop.close() under an open transport: the handle goes, the caller's pipe
 * stays the caller's (the stdlib's loop.close() leaves it open too). */
static void
pl_pipe_op_close_for_loop(PLUVHandle *h)
{
    pl_pipe_op_stop_reading(h);
    pl_uvh_close(h);
}

static const Py_ssize_t pl_pipe_fields[] = {offsetof(PLWritePipe, pipe), -1};

static int
pl_pipe_op_counter_kind(PLUVHandle *Py_UNUSED(h))
{
    return PL_TRANSPORT_PIPE;
}

static const pl_uvh_ops pl_pipe_ops = {
    .fields = pl_pipe_fields,
    .close_for_loop = pl_pipe_op_close_for_loop,
    .pending_refs = pl_pipe_op_pending_refs,
    .force_close = pl_pipe_op_force_close,
    .write_size = pl_pipe_op_write_size,
    .check_fd = pl_pipe_op_check_fd,
    .start_reading = pl_pipe_op_start_reading,
    .stop_reading = pl_pipe_op_stop_reading,
    .pause = pl_pipe_op_pause,
    .resume = pl_pipe_op_resume,
    .counter_kind = pl_pipe_op_counter_kind,
};

/* ---- writing ------------------------------------------------------------------ */

static void
pl_pipe_fatal_uv(PLWritePipe *self, int err)
{
    self->conn_lost++; /* as the stdlib's, before _fatal_error */
    pl_error_set_uv(err);
    pl_uvh_fatal((PLUVHandle *)self, "Fatal write error on pipe transport");
}

/* Everything queued was written: resume_writing(), and a close() or
 * write_eof() waiting for it ends the transport now, as the stdlib's
 * _write_ready does. */
static void
pl_pipe_on_drained(PLWritePipe *self)
{
    if (pl_uvh_maybe_resume((PLUVHandle *)self, 0) < 0) {
        pl_loop_stash_exception(self->loop);
        return;
    }
    if (!self->closing || self->lost_scheduled)
        return;
    self->lost_scheduled = 1;
    self->ops->stop_reading((PLUVHandle *)self);
    PyObject *r = PyObject_CallMethod((PyObject *)self, "_call_connection_lost", "O", Py_None);
    if (r == NULL)
        pl_uvh_callback_error((PLUVHandle *)self, "Fatal error on pipe transport");
    Py_XDECREF(r);
}

static void
pl__pipe_write_cb(uv_write_t *ureq, int status)
{
    pl_loop_gil_ensure(ureq->handle->loop);
    size_t len;
    PLWritePipe *self = PL_WPIPE(pl_uvh_write_finish(ureq, status, &len));
    int entered = pl_uvh_enter((PLUVHandle *)self);
    self->write_size -= len;
    self->reqs--;
    if (status < 0 && status != UV_ECANCELED) {
        if (!self->lost_scheduled)
            pl_pipe_fatal_uv(self, status);
    }
    else if (status == 0 && self->write_size == 0 && self->state == PL_UVH_OPEN) {
        pl_pipe_on_drained(self);
    }
    pl_uvh_exit((PLUVHandle *)self, entered);
    Py_DECREF(self);
}

static PyObject *
WritePipe_write(PLWritePipe *self, PyObject *data)
{
    if (pl_loop_check_uv_thread(self->loop) < 0)
        return NULL;
    if (!PyBytes_Check(data) && !PyByteArray_Check(data) && !PyMemoryView_Check(data)) {
        PyErr_Format(PyExc_TypeError, PL_STREAM_WRITE_TYPE_MSG, Py_TYPE(data)->tp_name);
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *ret = NULL;
    if (view.len == 0) {
        ret = Py_NewRef(Py_None);
        goto done;
    }
    if (self->conn_lost || self->closing || self->state != PL_UVH_OPEN) {
        /* Dropped, and logged once it keeps happening, in the stdlib's words. */
        if (pl_uvh_lost_write((PLUVHandle *)self, "pipe closed by peer or os.write(pipe, data) "
                                                  "raised exception.") == 0)
            ret = Py_NewRef(Py_None);
        goto done;
    }
    size_t len = (size_t)view.len, sent = 0;
    if (self->write_size == 0) {
        uv_buf_t b = uv_buf_init(view.buf, (unsigned int)(len > UINT_MAX ? UINT_MAX : len));
        int n = uv_try_write(self->uvh, &b, 1);
        if (n >= 0) {
            sent = (size_t)n;
            if (self->loop->monitor != NULL)
                self->loop->monitor->bytes_written += sent;
        }
        else if (n != UV_EAGAIN) {
            pl_pipe_fatal_uv(self, n);
            ret = Py_NewRef(Py_None);
            goto done;
        }
        if (sent == len) {
            ret = Py_NewRef(Py_None);
            goto done;
        }
    }
    /* The rest waits in a request: an exact bytes object is immutable and
     * referenced; anything else the caller may change, so it is copied. */
    PyObject *owner;
    char *base;
    if (PyBytes_CheckExact(data)) {
        owner = Py_NewRef(data);
        base = (char *)view.buf + sent;
    }
    else {
        owner = PyBytes_FromStringAndSize((char *)view.buf + sent, (Py_ssize_t)(len - sent));
        if (owner == NULL)
            goto done;
        base = PyBytes_AS_STRING(owner);
    }
    int rc = pl_uvh_write_start((PLUVHandle *)self, owner, base, len - sent, pl__pipe_write_cb);
    Py_DECREF(owner);
    if (rc == 0) {
        self->reqs++;
        self->write_size += len - sent;
    }
    else {
        pl_uvh_fatal((PLUVHandle *)self, "Fatal write error on pipe transport");
        ret = Py_NewRef(Py_None);
        goto done;
    }
    if (pl_uvh_maybe_pause((PLUVHandle *)self, (Py_ssize_t)self->write_size) == 0)
        ret = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&view);
    return ret;
}

static PyObject *
WritePipe_write_eof(PLWritePipe *self, PyObject *Py_UNUSED(ignored))
{
    if (pl_loop_check_uv_thread(self->loop) < 0)
        return NULL;
    if (self->closing)
        Py_RETURN_NONE;
    self->closing = 1;
    if (pl_pipe_op_write_size((PLUVHandle *)self) == 0 && pl_pipe_schedule_lost(self, NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
WritePipe_can_write_eof(PyObject *Py_UNUSED(self), PyObject *Py_UNUSED(ignored))
{
    Py_RETURN_TRUE;
}

/* close() is write_eof(), as the stdlib's: all a write pipe needs. */
static PyObject *
WritePipe_close(PLWritePipe *self, PyObject *ignored)
{
    if (self->pipe == NULL || self->closing)
        Py_RETURN_NONE;
    return WritePipe_write_eof(self, ignored);
}

/* The caller's fd became readable: its reader went away. */
static PyObject *
WritePipe__read_ready(PLWritePipe *self, PyObject *Py_UNUSED(ignored))
{
    if (self->loop->debug) {
        PyObject *r = PyObject_CallMethod(pl_state.logger, "info", "sO", "%r was closed by peer",
                                          (PyObject *)self);
        if (r == NULL)
            return NULL;
        Py_DECREF(r);
    }
    PyObject *exc = NULL;
    if (pl_pipe_op_write_size((PLUVHandle *)self) > 0) {
        exc = PyObject_CallNoArgs(PyExc_BrokenPipeError);
        if (exc == NULL)
            return NULL;
    }
    int rc = pl_pipe_op_force_close((PLUVHandle *)self, exc);
    Py_XDECREF(exc);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* connection_lost(exc), then the handle and the caller's pipe closed. */
static PyObject *
WritePipe__call_connection_lost(PLWritePipe *self, PyObject *exc)
{
    if (pl_loop_check_uv_thread(self->loop) < 0)
        return NULL;
    PyObject *err = pl_uvh_call_lost((PLUVHandle *)self, exc);
    self->closing = 1;
    self->ops->stop_reading((PLUVHandle *)self);
    pl_uvh_close((PLUVHandle *)self);
    PyObject *pipe = self->pipe;
    self->pipe = NULL;
    Py_CLEAR(self->protocol);
    PyObject *r = Py_NewRef(Py_None);
    if (pipe != NULL) {
        Py_SETREF(r, PyObject_CallMethod(pipe, "close", NULL));
        Py_DECREF(pipe);
    }
    return pl_uvh_lost_finish((PLUVHandle *)self, r, err);
}

static PyObject *
WritePipe_set_protocol(PLWritePipe *self, PyObject *protocol)
{
    Py_XSETREF(self->protocol, Py_NewRef(protocol));
    Py_RETURN_NONE;
}

static PyObject *
WritePipe__fatal_error(PLWritePipe *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2 || !PyExceptionInstance_Check(args[0]) ||
        (nargs == 2 && !PyUnicode_Check(args[1]))) {
        PyErr_SetString(PyExc_TypeError, "_fatal_error(exc, message='Fatal error on pipe transport')");
        return NULL;
    }
    const char *message = nargs == 2 ? PyUnicode_AsUTF8(args[1]) : "Fatal error on pipe transport";
    if (message == NULL)
        return NULL;
    pl_err_restore(Py_NewRef(args[0]));
    pl_uvh_fatal((PLUVHandle *)self, message);
    Py_RETURN_NONE;
}

static PyMethodDef WritePipe_methods[] = {
    {"get_extra_info", PL_METH(pl_uvh_get_extra_info), METH_VARARGS | METH_KEYWORDS, NULL},
    {"get_protocol", pl_uvh_get_protocol, METH_NOARGS, NULL},
    {"set_protocol", (PyCFunction)WritePipe_set_protocol, METH_O, NULL},
    {"is_closing", pl_uvh_is_closing, METH_NOARGS, NULL},
    {"abort", pl_uvh_abort, METH_NOARGS, NULL},
    {"close", (PyCFunction)WritePipe_close, METH_NOARGS, NULL},
    {"write", (PyCFunction)WritePipe_write, METH_O, NULL},
    {"write_eof", (PyCFunction)WritePipe_write_eof, METH_NOARGS, NULL},
    {"can_write_eof", WritePipe_can_write_eof, METH_NOARGS, NULL},
    {"get_write_buffer_size", pl_uvh_get_write_buffer_size, METH_NOARGS, NULL},
    {"get_write_buffer_limits", pl_uvh_get_write_buffer_limits, METH_NOARGS, NULL},
    {"set_write_buffer_limits", PL_METH(pl_uvh_set_write_buffer_limits),
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"_start_reading", pl_uvh_start_reading_meth, METH_NOARGS, NULL},
    {"_read_ready", (PyCFunction)WritePipe__read_ready, METH_NOARGS, NULL},
    {"_call_connection_lost", (PyCFunction)WritePipe__call_connection_lost, METH_O, NULL},
    {"_force_close", pl_uvh_force_close_meth, METH_O, NULL},
    {"_fatal_error", PL_METH(WritePipe__fatal_error), METH_FASTCALL, NULL},
    {NULL}
};

static PyMemberDef WritePipe_members[] = {
    PL_UVH_MEMBERS,
    {"_fileno", T_INT, offsetof(PLWritePipe, fileno), READONLY, NULL},
    {NULL}
};

static PyObject *
WritePipe_get_pipe(PLWritePipe *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->pipe ? self->pipe : Py_None);
}

/* `_pipe = None` is how code (CPython's tests among it) tells a stdlib
 * transport its pipe is dealt with: nothing is closed after that. */
static int
WritePipe_set_pipe(PLWritePipe *self, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete _pipe");
        return -1;
    }
    Py_XSETREF(self->pipe, value == Py_None ? NULL : Py_NewRef(value));
    return 0;
}

static PyGetSetDef WritePipe_getset[] = {
    {"_pipe", (getter)WritePipe_get_pipe, (setter)WritePipe_set_pipe, NULL, NULL},
    {NULL}
};

/* As the stdlib's (its loops without a selector): closed or closing, the
 * fd, and "open" while the pipe is, with what is queued. */
static PyObject *
WritePipe_repr(PLWritePipe *self)
{
    const char *state = self->pipe == NULL ? " closed" : self->closing ? " closing" : "";
    if (self->pipe == NULL)
        return PyUnicode_FromFormat("<%s%s fd=%d closed>", Py_TYPE(self)->tp_name, state,
                                    self->fileno);
    return PyUnicode_FromFormat("<%s%s fd=%d open bufsize=%zd>", Py_TYPE(self)->tp_name, state,
                                self->fileno, pl_pipe_op_write_size((PLUVHandle *)self));
}

PL_UVH_TYPE_SPEC(WritePipe_spec, "pyloop._core.WritePipeTransport", PLWritePipe,
                 WritePipe_methods, WritePipe_members, WritePipe_getset);

int
pl_pipe_init_types(PyObject *module)
{
    static const char *const bases[] = {"WriteTransport", NULL};
    for (PyType_Slot *slot = WritePipe_spec_slots; slot->slot != 0; slot++) {
        if (slot->slot == Py_tp_repr)
            slot->pfunc = (void *)WritePipe_repr; /* in place of the base's */
    }
    pl_pipe_write_type = pl_uvh_make_type(module, &WritePipe_spec, bases, "WritePipeTransport");
    return pl_pipe_write_type == NULL ? -1 : 0;
}

/* ---- creation ---------------------------------------------------------------- */

PyObject *
Loop__new_write_pipe_transport(PLLoop *self, PyObject *const *args, Py_ssize_t nargs)
{
    PLWritePipe *t = NULL;
    uv_pipe_t *uvh = NULL;
    int dupfd = -1;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "_new_write_pipe_transport(pipe, protocol, extra)");
        return NULL;
    }
    PyObject *pipe = args[0], *protocol = args[1], *extra = args[2];
    if (pl_loop_check_closed(self) < 0 || pl_loop_check_uv_thread(self) < 0)
        return NULL;
    if (extra != Py_None && !PyDict_Check(extra)) {
        PyErr_SetString(PyExc_TypeError, "extra must be a dict or None");
        return NULL;
    }
    int fd = pl_uvh_sock_fd(pipe);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return pl_error_set_errno();
    if (!S_ISCHR(st.st_mode) && !S_ISFIFO(st.st_mode) && !S_ISSOCK(st.st_mode)) {
        PyErr_SetString(PyExc_ValueError,
                        "Pipe transport is only for pipes, sockets and character devices");
        return NULL;
    }
    t = (PLWritePipe *)pl_uvh_new((PyTypeObject *)pl_pipe_write_type, self, &pl_pipe_ops,
                                  extra, NULL);
    if (t == NULL)
        return NULL;
    if (PyDict_SetItemString(t->extra, "pipe", pipe) < 0)
        goto error;
    t->pipe = Py_NewRef(pipe);
    t->fileno = fd;
    t->protocol = Py_NewRef(protocol);
    t->protocol_connected = 1;
    t->watch_reader = S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode);
    /* The caller's fd in non-blocking mode, as the stdlib sets it (libuv
     * does it through the duplicate, which shares the file's flags). */
    dupfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dupfd < 0) {
        pl_error_set_errno();
        goto error;
    }
    uvh = PyMem_Malloc(sizeof(*uvh));
    if (uvh == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    int reserved = self->uv.emfile_fd;
    int err = uv_pipe_init(&self->uv, uvh, 0);
    if (err < 0) {
        PyMem_Free(uvh);
        pl_error_set_uv(err);
        goto error;
    }
    pl_counters.handles_created++;
    if (reserved == -1 && self->uv.emfile_fd != -1) {
        /* A loop's first libuv stream opens a spare fd for good (/dev/null,
         * which uv_listen's servers close to accept past EMFILE). pyloop's
         * servers accept on their own (accept.c), and the stdlib's write pipe
         * opens no fd: given back, a loop's fds stay what they were. */
        close(self->uv.emfile_fd);
        self->uv.emfile_fd = -1;
    }
    err = uv_pipe_open(uvh, dupfd);
    if (err < 0) {
        /* Discarded, the handle counts as freed by its type's kind. */
        pl_counters.transports_created[pl_counters_stream_kind(uvh)]++;
        pl_uvh_discard((uv_handle_t *)uvh);
        pl_error_set_uv(err);
        goto error;
    }
    pl_counters.transports_created[PL_TRANSPORT_PIPE]++;
    pl_uvh_attach((PLUVHandle *)t, (uv_handle_t *)uvh);
    return (PyObject *)t;

error:
    if (dupfd >= 0)
        close(dupfd);
    Py_XDECREF(t);
    return NULL;
}
