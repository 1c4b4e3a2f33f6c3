/* Pipe transports: both sides in C on the transport base, and the read
 * path of the stdlib's read pipe transport that pyloop keeps for character
 * devices (pyloop/loop.py's _ReadPipeTransport).
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
#define PL_PIPE(h) ((PLPipe *)(h))

PyObject *pl_pipe_write_type;
PyObject *pl_pipe_read_type;

static void pl_rpipe_op_release(PLUVHandle *h);

/* Schedule _call_connection_lost(exc) once (the stdlib's _close and
 * write_eof), with the reader no longer watched. */
static int
pl_pipe_schedule_lost(PLPipe *self, PyObject *exc)
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
    return pl_pipe_schedule_lost(PL_PIPE(self), exc);
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
    h->ops->stop_reading(h); /* each side's own */
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
    if (pl_pipe_op_write_size((PLUVHandle *)self) == 0 &&
        pl_pipe_schedule_lost(PL_PIPE(self), NULL) < 0)
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
Pipe__call_connection_lost(PLPipe *self, PyObject *exc)
{
    if (pl_loop_check_uv_thread(self->loop) < 0)
        return NULL;
    PyObject *err = pl_uvh_call_lost((PLUVHandle *)self, exc);
    if ((PyObject *)Py_TYPE(self) == pl_pipe_read_type)
        pl_rpipe_op_release((PLUVHandle *)self); /* nothing more is read */
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

static void pl_rpipe_fatal(PLPipe *self, const char *message);

/* _fatal_error(exc, message): each side's rule for which errors are only
 * logged (pl_uvh_fatal's for the write side, pl_rpipe_fatal's for the read
 * side), then the connection dropped with exc. */
static PyObject *
Pipe__fatal_error(PLPipe *self, PyObject *const *args, Py_ssize_t nargs)
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
    if ((PyObject *)Py_TYPE(self) == pl_pipe_read_type)
        pl_rpipe_fatal(self, message);
    else
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
    {"_call_connection_lost", (PyCFunction)Pipe__call_connection_lost, METH_O, NULL},
    {"_force_close", pl_uvh_force_close_meth, METH_O, NULL},
    {"_fatal_error", PL_METH(Pipe__fatal_error), METH_FASTCALL, NULL},
    {NULL}
};

static PyMemberDef Pipe_members[] = {
    PL_UVH_MEMBERS,
    {"_fileno", T_INT, offsetof(PLPipe, fileno), READONLY, NULL},
    {NULL}
};

static PyObject *
Pipe_get_pipe(PLPipe *self, void *Py_UNUSED(closure))
{
    return Py_NewRef(self->pipe ? self->pipe : Py_None);
}

/* `_pipe = None` is how code (CPython's tests among it) tells a stdlib
 * transport its pipe is dealt with: nothing is closed after that. */
static int
Pipe_set_pipe(PLPipe *self, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete _pipe");
        return -1;
    }
    Py_XSETREF(self->pipe, value == Py_None ? NULL : Py_NewRef(value));
    return 0;
}

static PyGetSetDef Pipe_getset[] = {
    {"_pipe", (getter)Pipe_get_pipe, (setter)Pipe_set_pipe, NULL, NULL},
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
                 WritePipe_methods, Pipe_members, Pipe_getset);

/* ---- the read pipe transport ------------------------------------------------
 *
 * What the stdlib's _UnixReadPipeTransport does, on a libuv pipe handle
 * reading into the loop's buffer: data_received with what arrived (a
 * BufferedProtocol gets it copied into get_buffer()'s memory), and at end of
 * file eof_received() then connection_lost(None) on the next passes, with
 * the transport closing (a read pipe has no write side to keep open, so
 * eof_received's answer is not asked). close() is the stdlib's _close(None):
 * reading stops, connection_lost on the next pass, then the caller's pipe is
 * closed. Errors follow the stdlib's rules: what data_received raises is
 * reported and the transport stays open (the stdlib runs it inside a loop
 * callback); a read error is fatal, and only EIO (a pty whose other side
 * went away) is no more than logged in debug mode. */

#define PL_RPIPE(h) ((PLReadPipe *)(h))

static int
pl_rpipe_op_force_close(PLUVHandle *h, PyObject *exc)
{
    return pl_pipe_schedule_lost(PL_PIPE(h), exc);
}

static Py_ssize_t
pl_rpipe_op_write_size(PLUVHandle *Py_UNUSED(h))
{
    return 0;
}

static size_t
pl_rpipe_op_pending_refs(PLUVHandle *Py_UNUSED(h))
{
    return 0; /* reads hold no reference: the open handle's is enough */
}

static void pl__rpipe_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf);
static void pl__rpipe_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

static int
pl_rpipe_op_start_reading(PLUVHandle *h)
{
    if (h->reading || h->paused || h->closing || h->state != PL_UVH_OPEN)
        return 0;
    PL_RPIPE(h)->yield = 0; /* a pass ended by a stop needs no other */
    return pl_uvh_reading_started(h, uv_read_start(h->uvh, pl__rpipe_alloc_cb, pl__rpipe_read_cb));
}

static void
pl_rpipe_op_stop_reading(PLUVHandle *h)
{
    /* libuv's read loop checks the flag uv_read_stop clears before each
     * read: stopping inside the read callback is safe. */
    if (h->reading && h->state == PL_UVH_OPEN)
        uv_read_stop(h->uvh);
    h->reading = 0;
}

static void
pl_rpipe_op_pause(PLUVHandle *h)
{
    pl_rpipe_op_stop_reading(h);
}

static int
pl_rpipe_op_resume(PLUVHandle *h)
{
    return pl_rpipe_op_start_reading(h);
}

/* rbytes is no field the collector visits: no one else may ever see it (it
 * is written again once the protocol let go of it), and bytes make no cycles. */
static void
pl_rpipe_op_release(PLUVHandle *h)
{
    Py_CLEAR(PL_RPIPE(h)->rbytes);
}

static const pl_uvh_ops pl_rpipe_ops = {
    .fields = NULL,
    .release = pl_rpipe_op_release,
    .close_for_loop = pl_pipe_op_close_for_loop,
    .pending_refs = pl_rpipe_op_pending_refs,
    .force_close = pl_rpipe_op_force_close,
    .write_size = pl_rpipe_op_write_size,
    .check_fd = pl_pipe_op_check_fd,
    .start_reading = pl_rpipe_op_start_reading,
    .stop_reading = pl_rpipe_op_stop_reading,
    .pause = pl_rpipe_op_pause,
    .resume = pl_rpipe_op_resume,
    .counter_kind = pl_pipe_op_counter_kind,
};

/* The current exception ends the transport, as the stdlib read pipe's
 * _fatal_error: EIO is logged in debug mode only, anything else goes to the
 * exception handler (OSErrors too, unlike a socket's); connection_lost(exc)
 * follows on the next pass. */
static void
pl_rpipe_fatal(PLPipe *self, const char *message)
{
    if (!PyErr_ExceptionMatches(PyExc_OSError)) {
        pl_uvh_callback_error((PLUVHandle *)self, message);
        return;
    }
    PyObject *exc = pl_err_fetch();
    PyObject *eno = PyObject_GetAttrString(exc, "errno");
    int eio = eno != NULL && PyLong_Check(eno) && PyLong_AsLong(eno) == EIO;
    Py_XDECREF(eno);
    PyErr_Clear();
    pl_err_restore(Py_NewRef(exc));
    if (eio) {
        pl_uvh_fatal((PLUVHandle *)self, message); /* an OSError: logged in debug mode */
    }
    else {
        pl_uvh_report((PLUVHandle *)self, message);
        if (self->ops->force_close((PLUVHandle *)self, exc) < 0)
            PyErr_WriteUnraisable((PyObject *)self);
    }
    Py_DECREF(exc);
}

static void
pl__rpipe_alloc_cb(uv_handle_t *handle, size_t Py_UNUSED(suggested), uv_buf_t *buf)
{
    pl_loop_gil_ensure(handle->loop);
    PLReadPipe *self = (PLReadPipe *)handle->data;
    if (self->yield) {
        /* The last read filled rcap: no more this pass (libuv answers an
         * empty buffer with UV_ENOBUFS and returns; the pipe, still
         * readable, is read on the next pass, after the ready queue). */
        self->yield = 0;
        self->yielding = 1;
        buf->base = NULL;
        buf->len = 0;
        return;
    }
    if (self->streaming && !self->buffered) {
        if (self->rbytes == NULL) {
            self->rbytes = PyBytes_FromStringAndSize(NULL, self->rcap);
            if (self->rbytes == NULL)
                PyErr_Clear(); /* the loop's buffer does */
        }
        else {
            /* Ours alone (the protocol let go of it): its full size again,
             * within the memory it was made with. */
            Py_SET_SIZE(self->rbytes, self->rcap);
        }
        if (self->rbytes != NULL) {
            buf->base = PyBytes_AS_STRING(self->rbytes);
            buf->len = (size_t)self->rcap;
            return;
        }
    }
    buf->base = pl_loop_read_buf(self->loop);
    buf->len = buf->base == NULL ? 0 /* UV_ENOBUFS */
               : self->rcap > 0 ? (size_t)self->rcap : PL_LOOP_READ_BUF_SIZE;
}

/* `n` bytes read into rbytes, as data_received's argument: rbytes itself,
 * cut to n (a bulk read), or a copy of a short read, after which the pipe
 * is read through the loop's buffer again and rbytes let go. A new
 * reference, NULL with the error set. */
static PyObject *
pl_rpipe_take_rbytes(PLReadPipe *self, Py_ssize_t n)
{
    if (2 * n < self->rcap) {
        PyObject *data = PyBytes_FromStringAndSize(PyBytes_AS_STRING(self->rbytes), n);
        self->streaming = 0;
        Py_CLEAR(self->rbytes);
        return data;
    }
    PyObject *data = self->rbytes;
    self->rbytes = NULL;
    Py_SET_SIZE(data, n);
    PyBytes_AS_STRING(data)[n] = '\0';
    pl_bytes_reset_hash(data);
    return data;
}

/* `n` bytes for a BufferedProtocol: copied into get_buffer(n)'s memory and
 * announced with buffer_updated(), as often as it takes. The transport may
 * close or change protocol in between: the rest goes where it says then. */
static int
pl_rpipe_fill(PLReadPipe *self, const char *base, Py_ssize_t n)
{
    while (n > 0 && self->buffered && !self->closing && self->protocol != NULL) {
        PyObject *protocol = Py_NewRef(self->protocol);
        PyObject *mem = PyObject_CallMethod(protocol, "get_buffer", "n", n);
        Py_buffer view;
        int rc = mem == NULL ? -1 : PyObject_GetBuffer(mem, &view, PyBUF_WRITABLE);
        Py_XDECREF(mem);
        if (rc == 0 && view.len == 0) {
            PyBuffer_Release(&view);
            PyErr_SetString(PyExc_RuntimeError, "get_buffer() returned an empty buffer");
            rc = -1;
        }
        if (rc < 0) {
            Py_DECREF(protocol);
            return -1;
        }
        Py_ssize_t take = view.len < n ? view.len : n;
        memcpy(view.buf, base, (size_t)take);
        PyBuffer_Release(&view);
        PyObject *r = PyObject_CallMethod(protocol, "buffer_updated", "n", take);
        Py_DECREF(protocol);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
        base += take;
        n -= take;
    }
    if (n > 0 && !self->buffered && !self->closing && self->protocol != NULL) {
        /* set_protocol() swapped in a plain protocol meanwhile. */
        PyObject *data = PyBytes_FromStringAndSize(base, n);
        PyObject *r = data ? PyObject_CallMethod(self->protocol, "data_received", "O", data) : NULL;
        Py_XDECREF(data);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    return 0;
}

/* What arrived, to the protocol. -1 with what it raised set. */
static int
pl_rpipe_deliver(PLReadPipe *self, const char *base, Py_ssize_t n)
{
    if (self->buffered)
        return pl_rpipe_fill(self, base, n);
    static PyObject *name; /* interned once, as every read looks it up */
    if (name == NULL && (name = PyUnicode_InternFromString("data_received")) == NULL)
        return -1;
    int own = self->rbytes != NULL && base == PyBytes_AS_STRING(self->rbytes);
    PyObject *data = own ? pl_rpipe_take_rbytes(self, n) : pl_loop_bytes_take(self->loop, base, n);
    if (data == NULL)
        return -1;
    if (!own && self->rcap > 0 && 2 * n >= self->rcap)
        self->streaming = 1; /* a bulk read: the next ones go into rbytes */
    PyObject *protocol = Py_NewRef(self->protocol);
    PyObject *r = PyObject_CallMethodOneArg(protocol, name, data);
    Py_DECREF(protocol);
    if (!own)
        pl_loop_bytes_give_back(self->loop, data);
    else if (self->streaming && self->rbytes == NULL && Py_REFCNT(data) == 1)
        self->rbytes = data; /* let go of: the next read's */
    else
        Py_DECREF(data);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* End of file: eof_received() and connection_lost(None) on the next passes,
 * in that order, as the stdlib schedules them. */
static void
pl_rpipe_on_eof(PLReadPipe *self)
{
    if (self->loop->debug) {
        PyObject *r = PyObject_CallMethod(pl_state.logger, "info", "sO", "%r was closed by peer",
                                          (PyObject *)self);
        if (r == NULL)
            pl_uvh_report((PLUVHandle *)self, "Fatal error on pipe transport");
        Py_XDECREF(r);
    }
    self->closing = 1;
    pl_rpipe_op_stop_reading((PLUVHandle *)self);
    PyObject *meth = PyObject_GetAttrString(self->protocol, "eof_received");
    PyObject *args = meth ? PyTuple_New(0) : NULL;
    int rc = args ? pl_loop_call_soon_c(self->loop, meth, args, NULL) : -1;
    Py_XDECREF(args);
    Py_XDECREF(meth);
    if (rc < 0 || pl_pipe_schedule_lost(PL_PIPE(self), NULL) < 0)
        pl_uvh_report((PLUVHandle *)self, "Fatal error on pipe transport");
}

static void
pl__rpipe_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    pl_loop_gil_ensure(stream->loop);
    PLReadPipe *self = (PLReadPipe *)stream->data;
    if (nread == 0)
        return; /* EAGAIN: nothing read */
    if (nread == UV_ENOBUFS && self->yielding) {
        self->yielding = 0; /* a pass ended after a full read: not an error */
        return;
    }
    if (nread > 0 && nread == self->rcap)
        self->yield = 1; /* a bigger pipe may hold more: read it next pass */
    Py_INCREF(self); /* protocol code may drop the last other reference */
    int entered = pl_uvh_enter((PLUVHandle *)self);
    if (self->closing || self->protocol == NULL || self->state != PL_UVH_OPEN)
        goto done;
    if (nread > 0) {
        if (self->loop->monitor != NULL)
            self->loop->monitor->bytes_read += (uint64_t)nread;
        if (pl_rpipe_deliver(self, buf->base, nread) < 0)
            pl_uvh_report((PLUVHandle *)self, "protocol.data_received() call failed.");
    }
    else if (nread == UV_EOF) {
        pl_rpipe_on_eof(self);
    }
    else {
        if (nread == UV_ENOBUFS)
            PyErr_NoMemory(); /* the loop's read buffer could not be had */
        else
            pl_error_set_uv((int)nread);
        pl_rpipe_fatal(PL_PIPE(self), "Fatal read error on pipe transport");
    }
done:
    pl_uvh_exit((PLUVHandle *)self, entered);
    Py_DECREF(self);
}

static int
pl_rpipe_set_protocol(PLReadPipe *self, PyObject *protocol)
{
    int buffered = PyObject_IsInstance(protocol, pl_state.buffered_protocol_type);
    if (buffered < 0)
        return -1;
    Py_XSETREF(self->protocol, Py_NewRef(protocol));
    self->buffered = (char)buffered;
    return 0;
}

static PyObject *
ReadPipe_set_protocol(PLReadPipe *self, PyObject *protocol)
{
    if (pl_rpipe_set_protocol(self, protocol) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* The stdlib's close(): _close(None) unless closing already. */
static PyObject *
ReadPipe_close(PLReadPipe *self, PyObject *Py_UNUSED(ignored))
{
    if (pl_loop_check_uv_thread(self->loop) < 0)
        return NULL;
    if (self->closing)
        Py_RETURN_NONE;
    self->closing = 1;
    pl_rpipe_op_stop_reading((PLUVHandle *)self);
    if (pl_pipe_schedule_lost(PL_PIPE(self), NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef ReadPipe_methods[] = {
    {"get_extra_info", PL_METH(pl_uvh_get_extra_info), METH_VARARGS | METH_KEYWORDS, NULL},
    {"get_protocol", pl_uvh_get_protocol, METH_NOARGS, NULL},
    {"set_protocol", (PyCFunction)ReadPipe_set_protocol, METH_O, NULL},
    {"is_closing", pl_uvh_is_closing, METH_NOARGS, NULL},
    {"close", (PyCFunction)ReadPipe_close, METH_NOARGS, NULL},
    {"is_reading", pl_uvh_is_reading, METH_NOARGS, NULL},
    {"pause_reading", pl_uvh_pause_reading, METH_NOARGS, NULL},
    {"resume_reading", pl_uvh_resume_reading, METH_NOARGS, NULL},
    {"_start_reading", pl_uvh_start_reading_meth, METH_NOARGS, NULL},
    {"_call_connection_lost", (PyCFunction)Pipe__call_connection_lost, METH_O, NULL},
    {"_close", pl_uvh_force_close_meth, METH_O, NULL},
    {"_fatal_error", PL_METH(Pipe__fatal_error), METH_FASTCALL, NULL},
    {NULL}
};

/* As the stdlib's on a loop without a selector: closed or closing, the fd,
 * and whether the pipe is open. */
static PyObject *
ReadPipe_repr(PLReadPipe *self)
{
    const char *state = self->pipe == NULL ? " closed" : self->closing ? " closing" : "";
    return PyUnicode_FromFormat("<%s%s fd=%d %s>", Py_TYPE(self)->tp_name, state, self->fileno,
                                self->pipe == NULL ? "closed" : "open");
}

PL_UVH_TYPE_SPEC(ReadPipe_spec, "pyloop._core.ReadPipeTransport", PLReadPipe, ReadPipe_methods,
                 Pipe_members, Pipe_getset);

/* The kind's repr in place of the base's in a type spec's slots. */
static void
pl_pipe_set_repr(PyType_Slot *slots, reprfunc repr)
{
    for (PyType_Slot *slot = slots; slot->slot != 0; slot++) {
        if (slot->slot == Py_tp_repr)
            slot->pfunc = (void *)repr;
    }
}

int
pl_pipe_init_types(PyObject *module)
{
    static const char *const write_bases[] = {"WriteTransport", NULL};
    static const char *const read_bases[] = {"ReadTransport", NULL};
    pl_pipe_set_repr(WritePipe_spec_slots, (reprfunc)WritePipe_repr);
    pl_pipe_set_repr(ReadPipe_spec_slots, (reprfunc)ReadPipe_repr);
    pl_pipe_write_type = pl_uvh_make_type(module, &WritePipe_spec, write_bases,
                                          "WritePipeTransport");
    if (pl_pipe_write_type == NULL)
        return -1;
    pl_pipe_read_type = pl_uvh_make_type(module, &ReadPipe_spec, read_bases, "ReadPipeTransport");
    return pl_pipe_read_type == NULL ? -1 : 0;
}

/* ---- creation ---------------------------------------------------------------- */

/* The caller's fd of `pipe` and its type (st_mode), after the checks both
 * sides make: -1 with the error set. */
static int
pl_pipe_fd(PLLoop *loop, PyObject *const *args, Py_ssize_t nargs, const char *usage,
           mode_t *mode)
{
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, usage);
        return -1;
    }
    if (pl_loop_check_closed(loop) < 0 || pl_loop_check_uv_thread(loop) < 0)
        return -1;
    if (args[2] != Py_None && !PyDict_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "extra must be a dict or None");
        return -1;
    }
    int fd = pl_uvh_sock_fd(args[0]);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        pl_error_set_errno();
        return -1;
    }
    *mode = st.st_mode;
    return fd;
}

/* A transport of `type` on a libuv pipe handle over a duplicate of `fd`
 * (args: pipe, protocol, extra), open and on the loop's list. NULL with the
 * error set. */
static PLPipe *
pl_pipe_new(PLLoop *self, PyObject *type, const pl_uvh_ops *ops, PyObject *const *args, int fd)
{
    PLPipe *t = NULL;
    uv_pipe_t *uvh = NULL;
    int dupfd = -1;
    PyObject *pipe = args[0], *protocol = args[1], *extra = args[2];
    t = (PLPipe *)pl_uvh_new((PyTypeObject *)type, self, ops, extra, NULL);
    if (t == NULL)
        return NULL;
    if (PyDict_SetItemString(t->extra, "pipe", pipe) < 0)
        goto error;
    t->pipe = Py_NewRef(pipe);
    t->fileno = fd;
    t->protocol = Py_NewRef(protocol);
    t->protocol_connected = 1;
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
         * servers accept on their own (accept.c), and the stdlib's pipe
         * transports open no fd: given back, a loop's fds stay what they
         * were. */
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
    return t;

error:
    if (dupfd >= 0)
        close(dupfd);
    Py_XDECREF(t);
    return NULL;
}

PyObject *
Loop__new_write_pipe_transport(PLLoop *self, PyObject *const *args, Py_ssize_t nargs)
{
    mode_t mode;
    int fd = pl_pipe_fd(self, args, nargs, "_new_write_pipe_transport(pipe, protocol, extra)",
                        &mode);
    if (fd < 0)
        return NULL;
    if (!S_ISCHR(mode) && !S_ISFIFO(mode) && !S_ISSOCK(mode)) {
        PyErr_SetString(PyExc_ValueError,
                        "Pipe transport is only for pipes, sockets and character devices");
        return NULL;
    }
    PLWritePipe *t = (PLWritePipe *)pl_pipe_new(self, pl_pipe_write_type, &pl_pipe_ops, args, fd);
    if (t != NULL)
        t->watch_reader = S_ISFIFO(mode) || S_ISSOCK(mode);
    return (PyObject *)t;
}

PyObject *
Loop__new_read_pipe_transport(PLLoop *self, PyObject *const *args, Py_ssize_t nargs)
{
    mode_t mode;
    int fd = pl_pipe_fd(self, args, nargs, "_new_read_pipe_transport(pipe, protocol, extra)",
                        &mode);
    if (fd < 0)
        return NULL;
    /* A character device may be one epoll refuses (/dev/null: EPERM, which
     * libuv answers with abort()): the stdlib's transport reads those. */
    if (S_ISCHR(mode))
        Py_RETURN_NONE;
    if (!S_ISFIFO(mode) && !S_ISSOCK(mode)) {
        PyErr_SetString(PyExc_ValueError, "Pipe transport is for pipes/sockets only.");
        return NULL;
    }
    PLReadPipe *t = (PLReadPipe *)pl_pipe_new(self, pl_pipe_read_type, &pl_rpipe_ops, args, fd);
    if (t != NULL && pl_rpipe_set_protocol(t, args[1]) < 0) {
        pl_uvh_close((PLUVHandle *)t);
        Py_CLEAR(t);
    }
#ifdef F_GETPIPE_SZ
    /* A pipe's capacity bounds a read: a pipe of up to PL_PIPE_READ_MAX is
     * read into capacity + 1 bytes, so a read never fills them and libuv
     * stops after one; a bigger one PL_PIPE_READ_MAX at a time, one read
     * per pass (pl__rpipe_read_cb). A socket has no capacity: it is read
     * through the loop's buffer. */
    int cap = t != NULL && S_ISFIFO(mode) ? fcntl(fd, F_GETPIPE_SZ) : -1;
    if (cap > PL_PIPE_READ_MAX)
        t->rcap = PL_PIPE_READ_MAX;
    else if (cap > 0)
        t->rcap = (Py_ssize_t)cap + 1;
#endif
    return (PyObject *)t;
}
