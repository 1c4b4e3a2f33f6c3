/* Stream transports: asyncio.Transport implemented in C over uv_stream_t.
 *
 * Lifetime: the transport owns a PyMem-allocated libuv handle and holds a
 * reference to itself from the moment the handle is open until libuv's close
 * callback ran, so libuv never points at freed memory. Every pending write
 * request owns references to its data and to the transport. No exception
 * leaves a libuv callback: ordinary ones go to the loop's exception handler
 * (through _fatal_error), KeyboardInterrupt/SystemExit are stashed on the loop
 * and re-raised by run_forever. */
#include "stream.h"
#include "tls.h"
#include "errors.h"
#include "module.h"

#include <errno.h>
#include <math.h>
#include <structmember.h>
#include <sys/socket.h>

#define PL_LOG_THRESHOLD_FOR_CONNLOST_WRITES 5

PyObject *pl_stream_tcp_type;

typedef struct {
    uv_write_t req;
    PLStream *stream;  /* strong */
    PyObject *owner;   /* strong: the bytes object the buffer points into */
    size_t len;
} pl_write_req;

static int pl_stream_close_handle(PLStream *self);

/* ---- error routing --------------------------------------------------------- */

/* The current exception came out of protocol code called from a libuv
 * callback. KeyboardInterrupt/SystemExit stop the loop (re-raised by
 * run_forever); anything else is reported and the connection is dropped. */
static void pl_stream_fatal_error(PLStream *self, const char *message);

static void
pl_stream_handle_callback_error(PLStream *self, const char *message)
{
    if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) ||
        PyErr_ExceptionMatches(PyExc_SystemExit)) {
        pl_loop_stash_exception(self->loop);
        return;
    }
    pl_stream_fatal_error(self, message);
}

static void
pl_stream_stop_reading(PLStream *self)
{
    if (self->in_alloc) {
        /* Not now: libuv calls the read callback next whatever happens. */
        if (self->reading)
            self->stop_deferred = 1;
        return;
    }
    if (self->reading && self->uvh != NULL && self->state == PL_STREAM_OPEN) {
        uv_read_stop(self->uvh);
        self->reading = 0;
    }
}

/* loop.call_soon(self.<name>[, arg]): what the transport does on the next
 * loop pass, as the stdlib's transports do. -1 with the error set. */
static int
pl_stream_call_soon(PLStream *self, const char *name, PyObject *arg)
{
    PyObject *meth = PyObject_GetAttrString((PyObject *)self, name);
    if (meth == NULL)
        return -1;
    PyObject *h = arg ? PyObject_CallMethod((PyObject *)self->loop, "call_soon", "OO", meth, arg)
                      : PyObject_CallMethod((PyObject *)self->loop, "call_soon", "O", meth);
    Py_DECREF(meth);
    if (h == NULL)
        return -1;
    Py_DECREF(h);
    return 0;
}

static void
pl_stream_force_close(PLStream *self, PyObject *exc)
{
    if (self->conn_lost)
        return;
    if (!self->closing)
        self->closing = 1;
    pl_stream_stop_reading(self);
    self->conn_lost++;
    /* connection_lost runs on the next loop pass, as in the stdlib. */
    if (pl_stream_call_soon(self, "_call_connection_lost", exc ? exc : Py_None) < 0)
        PyErr_WriteUnraisable((PyObject *)self);
}

/* Report the current exception (not an OSError: those are the peer's doing
 * and only logged in debug mode, as the stdlib does) and drop the
 * connection with it. */
static void
pl_stream_fatal_error(PLStream *self, const char *message)
{
    PyObject *exc = pl_err_fetch();
    if (exc == NULL)
        return;
    if (!PyObject_TypeCheck(exc, (PyTypeObject *)PyExc_OSError)) {
        PyObject *ctx = Py_BuildValue("{sssOsOsO}", "message", message, "exception", exc,
                                      "transport", (PyObject *)self, "protocol",
                                      self->protocol ? self->protocol : Py_None);
        PyObject *r = ctx ? PyObject_CallMethod((PyObject *)self->loop,
                                                "call_exception_handler", "O", ctx)
                          : NULL;
        Py_XDECREF(ctx);
        if (r == NULL) {
            if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) ||
                PyErr_ExceptionMatches(PyExc_SystemExit))
                pl_loop_stash_exception(self->loop);
            else
                PyErr_WriteUnraisable((PyObject *)self);
        }
        else {
            Py_DECREF(r);
        }
    }
    pl_stream_force_close(self, exc);
    Py_DECREF(exc);
}

static void
pl_stream_fatal_uv(PLStream *self, int err, const char *message)
{
    pl_error_set_uv(err);
    pl_stream_fatal_error(self, message);
}

/* 0 while the transport's fd is open (or the handle is gone already). Once
 * it was closed behind the transport's back, the connection is dropped with
 * OSError(EBADF), as the stdlib's socket calls report it, and -1. */
static int
pl_stream_check_fd(PLStream *self)
{
    uv_os_fd_t fd;
    if (self->conn_lost || self->state != PL_STREAM_OPEN || self->uvh == NULL ||
        uv_fileno((uv_handle_t *)self->uvh, &fd) < 0 || pl_error_check_fd(fd) == 0)
        return 0;
    pl_stream_fatal_error(self, "Fatal error on transport");
    /* Closed now, not on the next pass: a watcher change libuv queued for
     * the fd (a write waiting for POLLOUT) would reach epoll_ctl, whose
     * EBADF libuv answers with abort(). uv_close drops it from the queue. */
    pl_stream_close_handle(self);
    return -1;
}

/* ---- empty waiter (loop.sendfile) ------------------------------------------- */

/* Settle the empty waiter, if any and still pending: with None once the write
 * queue is empty, or with `exc` when the connection is gone. */
static void
pl_stream_settle_empty_waiter(PLStream *self, PyObject *exc)
{
    if (self->empty_waiter == NULL)
        return;
    PyObject *fut = Py_NewRef(self->empty_waiter);
    PyObject *done = PyObject_CallMethod(fut, "done", NULL);
    int is_done = done ? PyObject_IsTrue(done) : -1;
    Py_XDECREF(done);
    PyObject *r = NULL;
    if (is_done == 0) {
        r = exc ? PyObject_CallMethod(fut, "set_exception", "O", exc)
                : PyObject_CallMethod(fut, "set_result", "O", Py_None);
    }
    if (is_done < 0 || (is_done == 0 && r == NULL))
        PyErr_WriteUnraisable((PyObject *)self);
    Py_XDECREF(r);
    Py_DECREF(fut);
}

static void
pl_stream_fail_empty_waiter(PLStream *self)
{
    if (self->empty_waiter == NULL)
        return;
    PyObject *exc = PyObject_CallFunction(PyExc_ConnectionError, "s",
                                          "Connection is closed by peer");
    if (exc == NULL) {
        PyErr_WriteUnraisable((PyObject *)self);
        return;
    }
    pl_stream_settle_empty_waiter(self, exc);
    Py_DECREF(exc);
}

/* ---- flow control -------------------------------------------------------- */

static void
pl_stream_protocol_hook(PLStream *self, const char *meth, const char *message)
{
    if (self->protocol == NULL)
        return;
    PyObject *r = PyObject_CallMethod(self->protocol, meth, NULL);
    if (r != NULL) {
        Py_DECREF(r);
        return;
    }
    if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) ||
        PyErr_ExceptionMatches(PyExc_SystemExit)) {
        pl_loop_stash_exception(self->loop);
        return;
    }
    PyObject *exc = pl_err_fetch();
    PyObject *ctx = Py_BuildValue("{sssOsOsO}", "message", message, "exception", exc,
                                  "transport", (PyObject *)self, "protocol", self->protocol);
    PyObject *res =
        ctx ? PyObject_CallMethod((PyObject *)self->loop, "call_exception_handler", "O", ctx)
            : NULL;
    if (res == NULL)
        PyErr_WriteUnraisable((PyObject *)self);
    Py_XDECREF(res);
    Py_XDECREF(ctx);
    Py_XDECREF(exc);
}

static void
pl_stream_maybe_pause(PLStream *self)
{
    if (self->write_size <= self->high_water || self->protocol_paused)
        return;
    self->protocol_paused = 1;
    pl_stream_protocol_hook(self, "pause_writing", "protocol.pause_writing() failed");
}

static void
pl_stream_maybe_resume(PLStream *self)
{
    if (!self->protocol_paused || self->write_size > self->low_water)
        return;
    self->protocol_paused = 0;
    pl_stream_protocol_hook(self, "resume_writing", "protocol.resume_writing() failed");
}

/* ---- reading --------------------------------------------------------------- */

/* protocol.<name>(arg) through the method bound by set_protocol, or looked
 * up now when the protocol had none then (the stdlib accepts any object,
 * None included, and fails only when data arrives). */
static PyObject *
pl_stream_call_protocol(PLStream *self, PyObject *bound, const char *name, PyObject *arg)
{
    if (bound != NULL)
        return PyObject_CallOneArg(bound, arg);
    return PyObject_CallMethod(self->protocol, name, "O", arg);
}

static void
pl_stream_release_rbuf(PLStream *self)
{
    if (self->rbuf_held) {
        self->rbuf_held = 0;
        PyBuffer_Release(&self->rbuf);
    }
}

/* get_buffer() for one read: 0 with the protocol's writable memory in
 * self->rbuf, -1 with the exception set. */
static int
pl_stream_get_buffer(PLStream *self)
{
    PyObject *hint = PyLong_FromLong(-1); /* a cached small int */
    if (hint == NULL)
        return -1;
    PyObject *mem = pl_stream_call_protocol(self, self->get_buffer_meth, "get_buffer", hint);
    Py_DECREF(hint);
    if (mem == NULL)
        return -1;
    int rc = PyObject_GetBuffer(mem, &self->rbuf, PyBUF_WRITABLE);
    Py_DECREF(mem);
    if (rc < 0)
        return -1;
    if (self->rbuf.len == 0) {
        PyBuffer_Release(&self->rbuf);
        PyErr_SetString(PyExc_RuntimeError, "get_buffer() returned an empty buffer");
        return -1;
    }
    self->rbuf_held = 1;
    return 0;
}

/* Runs inside libuv's read loop, which calls the read callback straight
 * after it with whatever buffer this returns: nothing here may stop reading
 * or close the handle (see in_alloc). A failure returns no buffer, which
 * libuv reports to the read callback as UV_ENOBUFS, and the read callback
 * routes the exception kept in alloc_error. */
static void
pl__stream_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    pl_loop_gil_ensure(handle->loop);
    PLStream *self = (PLStream *)handle->data;
    buf->base = NULL;
    buf->len = 0;
    if (self->protocol == NULL || self->conn_lost || self->state != PL_STREAM_OPEN)
        return; /* libuv reports UV_ENOBUFS; the read callback ignores it */
    if (self->buffered && !self->tls) {
        /* BufferedProtocol: read straight into the protocol's memory. */
        Py_INCREF(self); /* protocol code may drop the last other reference */
        self->in_alloc = 1;
        int rc = pl_stream_get_buffer(self);
        self->in_alloc = 0;
        if (rc < 0) {
            Py_XSETREF(self->alloc_error, pl_err_fetch());
        }
        else if (self->conn_lost || self->state != PL_STREAM_OPEN) {
            /* get_buffer() closed the transport: nothing more to read. */
            pl_stream_release_rbuf(self);
        }
        else {
            buf->base = self->rbuf.buf;
            buf->len = (size_t)self->rbuf.len;
        }
        Py_DECREF(self);
        return;
    }
    (void)suggested;
    buf->base = pl_loop_read_buf(self->loop);
    if (buf->base == NULL)
        return; /* libuv reports UV_ENOBUFS */
    buf->len = PL_LOOP_READ_BUF_SIZE;
}

static void
pl_stream_on_eof(PLStream *self)
{
    pl_stream_stop_reading(self);
    PyObject *r = PyObject_CallMethod(self->protocol, "eof_received", NULL);
    if (r == NULL) {
        pl_stream_handle_callback_error(self, "Fatal error: protocol.eof_received() call failed.");
        return;
    }
    int keep_open = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (keep_open < 0) {
        pl_stream_handle_callback_error(self, "Fatal error: protocol.eof_received() call failed.");
        return;
    }
    if (!keep_open) {
        r = PyObject_CallMethod((PyObject *)self, "close", NULL);
        if (r == NULL)
            pl_stream_handle_callback_error(self, "Fatal error on transport");
        Py_XDECREF(r);
    }
}

/* libuv reports EOF in the same dispatch as the last data when the peer had
 * already hung up; the stdlib's transports see it one iteration later (the
 * next recv() returning b""). Deliver it then, as they do, so that what the
 * data's callbacks scheduled runs before eof_received() and connection_lost. */
static void
pl_stream_defer_eof(PLStream *self)
{
    pl_stream_stop_reading(self);
    self->eof_pending = 1;
    if (pl_stream_call_soon(self, "_deliver_eof", NULL) < 0)
        pl_stream_handle_callback_error(self, "Fatal read error on socket transport");
}

static PyObject *
Stream__deliver_eof(PLStream *self, PyObject *Py_UNUSED(ignored))
{
    /* Paused meanwhile: resume_reading() delivers it. */
    if (!self->eof_pending || self->paused)
        Py_RETURN_NONE;
    self->eof_pending = 0;
    if (self->conn_lost || self->closing || self->protocol == NULL ||
        self->state != PL_STREAM_OPEN)
        Py_RETURN_NONE;
    Py_INCREF(self);
    pl_stream_on_eof(self);
    Py_DECREF(self);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}


/* What the stdlib's next recv() would report after libuv's EOF: an errno,
 * or 0 for a true EOF. libuv reports EOF without reading again when the
 * peer hung up in the same wakeup as its last data (POLLHUP after a partial
 * read), so a reset that came with the data (ECONNRESET) is still pending on
 * the socket. A peeking read raises it as the kernel orders it: EOF first
 * once a FIN came, the error otherwise. */
static int
pl_stream_error_at_eof(PLStream *self)
{
    uv_os_fd_t fd;
    char c;
    ssize_t n;
    if (uv_fileno((uv_handle_t *)self->uvh, &fd) < 0)
        return 0;
    do {
        n = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
        return errno;
    return 0;
}

/* What get_buffer() asked for while libuv could not take it (in_alloc). */
static void
pl_stream_apply_deferred(PLStream *self)
{
    if (self->close_deferred) {
        self->close_deferred = 0;
        self->stop_deferred = 0;
        pl_stream_close_handle(self);
    }
    else if (self->stop_deferred) {
        self->stop_deferred = 0;
        pl_stream_stop_reading(self);
    }
}

static void
pl__stream_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    pl_loop_gil_ensure(stream->loop);
    PLStream *self = (PLStream *)stream->data;
    PyObject *r;
    Py_INCREF(self); /* protocol code may drop the last other reference */
    if (self->alloc_error != NULL) {
        /* get_buffer() failed (nread is UV_ENOBUFS): report it as the
         * stdlib does; KeyboardInterrupt/SystemExit stop the loop and leave
         * the connection and its unread data alone. */
        PyObject *exc = self->alloc_error;
        self->alloc_error = NULL;
        pl_stream_release_rbuf(self);
        pl_err_restore(exc);
        pl_stream_handle_callback_error(self, "Fatal error: protocol.get_buffer() call failed.");
        goto done;
    }
    if (nread == 0 || self->conn_lost || self->close_deferred || self->protocol == NULL) {
        pl_stream_release_rbuf(self);
        goto done;
    }
    if (nread > 0) {
        self->read_iteration = self->loop->iteration;
        if (self->loop->monitor != NULL)
            self->loop->monitor->bytes_read += (uint64_t)nread;
        if (self->tls) {
            /* TLS records from the loop's buffer (cache-hot, shared by every
             * connection) into the protocol's incoming BIO */
            if (pl_tls_data_in(self->protocol, buf->base, nread) < 0)
                pl_stream_handle_callback_error(
                    self, "Fatal error: protocol.buffer_updated() call failed.");
        }
        else if (self->buffered) {
            pl_stream_release_rbuf(self);
            PyObject *n = PyLong_FromSsize_t(nread);
            r = n ? pl_stream_call_protocol(self, self->buffer_updated_meth, "buffer_updated", n)
                  : NULL;
            Py_XDECREF(n);
            if (r == NULL)
                pl_stream_handle_callback_error(
                    self, "Fatal error: protocol.buffer_updated() call failed.");
            Py_XDECREF(r);
        }
        else {
            PyObject *data = pl_loop_bytes_take(self->loop, buf->base, nread);
            /* get_buffer() may have swapped in a plain protocol: its buffer,
             * copied now, is free to resize again. */
            pl_stream_release_rbuf(self);
            if (data == NULL) {
                pl_stream_handle_callback_error(self, "Fatal read error on socket transport");
                goto done;
            }
            r = pl_stream_call_protocol(self, self->data_received_meth, "data_received", data);
            pl_loop_bytes_give_back(self->loop, data);
            if (r == NULL)
                pl_stream_handle_callback_error(
                    self, "Fatal error: protocol.data_received() call failed.");
            Py_XDECREF(r);
        }
        goto done;
    }
    pl_stream_release_rbuf(self);
    if (nread == UV_EOF) {
        int soerr = pl_stream_error_at_eof(self);
        if (soerr != 0)
            pl_stream_fatal_uv(self, -soerr, "Fatal read error on socket transport");
        else if (self->read_iteration == self->loop->iteration)
            pl_stream_defer_eof(self);
        else
            pl_stream_on_eof(self);
    }
    else if (nread == UV_ENOBUFS) {
        /* No read buffer could be had (the loop's, on memory pressure). */
        if (!self->conn_lost) {
            PyErr_NoMemory();
            pl_stream_fatal_error(self, "Fatal read error on socket transport");
        }
    }
    else {
        pl_stream_fatal_uv(self, (int)nread, "Fatal read error on socket transport");
    }
done:
    pl_stream_apply_deferred(self);
    Py_DECREF(self);
}

static int
pl_stream_start_reading(PLStream *self)
{
    if (self->paused || self->closing || self->state != PL_STREAM_OPEN)
        return 0;
    if (self->reading) {
        self->stop_deferred = 0; /* get_buffer() paused and resumed */
        return 0;
    }
    int err = uv_read_start(self->uvh, pl__stream_alloc_cb, pl__stream_read_cb);
    if (err < 0) {
        pl_error_set_uv(err);
        return -1;
    }
    self->reading = 1;
    return 0;
}

/* ---- writing --------------------------------------------------------------- */

static void
pl__stream_shutdown_cb(uv_shutdown_t *req, int status)
{
    pl_loop_gil_ensure(req->handle->loop);
    PLStream *self = (PLStream *)req->data;
    (void)status; /* an error here surfaces on the read side */
    PyMem_Free(req);
    pl_counters.requests_freed++;
    self->reqs--;
    Py_DECREF(self);
}

static int
pl_stream_shutdown(PLStream *self)
{
    uv_shutdown_t *req = PyMem_Malloc(sizeof(*req));
    if (req == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    req->data = self;
    int err = uv_shutdown(req, self->uvh, pl__stream_shutdown_cb);
    if (err < 0) {
        PyMem_Free(req);
        pl_error_set_uv(err);
        return -1;
    }
    pl_counters.requests_created++;
    self->reqs++;
    Py_INCREF(self);
    return 0;
}

/* Everything queued has been written (or dropped): finish a pending close()
 * or write_eof(). */
static void
pl_stream_on_drained(PLStream *self)
{
    if (self->closing && !self->conn_lost) {
        pl_stream_force_close(self, NULL);
    }
    else if (self->eof_sent && !self->closing && self->state == PL_STREAM_OPEN) {
        if (pl_stream_shutdown(self) < 0)
            pl_stream_fatal_error(self, "Fatal error on transport");
    }
}

static void
pl__stream_write_cb(uv_write_t *ureq, int status)
{
    pl_loop_gil_ensure(ureq->handle->loop);
    pl_write_req *req = (pl_write_req *)ureq;
    PLStream *self = req->stream;
    self->write_size -= req->len;
    self->reqs--;
    if (status == 0 && self->loop->monitor != NULL)
        self->loop->monitor->bytes_written += req->len;
    Py_DECREF(req->owner);
    PyMem_Free(req);
    pl_counters.requests_freed++;
    if (status < 0 && status != UV_ECANCELED) {
        if (!self->conn_lost) {
            self->write_size = 0;
            pl_stream_fatal_uv(self, status, "Fatal write error on socket transport");
        }
    }
    else if (status == 0) {
        pl_stream_maybe_resume(self);
        if (self->write_size == 0) {
            pl_stream_settle_empty_waiter(self, NULL);
            pl_stream_on_drained(self);
        }
    }
    Py_DECREF(self);
}

/* Queue `len` bytes at `base`, which lives inside `owner`. */
static int
pl_stream_queue_write(PLStream *self, PyObject *owner, char *base, size_t len)
{
    pl_write_req *req = PyMem_Malloc(sizeof(*req));
    if (req == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    uv_buf_t b = uv_buf_init(base, (unsigned int)len);
    int err = uv_write(&req->req, self->uvh, &b, 1, pl__stream_write_cb);
    if (err < 0) {
        PyMem_Free(req);
        pl_error_set_uv(err);
        return -1;
    }
    /* libuv accepted the request: only now take the references it needs. */
    pl_counters.requests_created++;
    req->stream = (PLStream *)Py_NewRef((PyObject *)self);
    self->reqs++;
    req->owner = Py_NewRef(owner);
    req->len = len;
    self->write_size += len;
    return 0;
}

static int
pl_stream_check_write(PLStream *self, int *drop)
{
    *drop = 0;
    if (self->eof_sent) {
        PyErr_SetString(PyExc_RuntimeError, "Cannot call write() after write_eof()");
        return -1;
    }
    if (self->empty_waiter != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "unable to write; sendfile is in progress");
        return -1;
    }
    if (self->conn_lost || self->state != PL_STREAM_OPEN) {
        /* As the stdlib: writing to a lost connection is not an error, but
         * it is logged once it keeps happening. */
        if (self->conn_lost >= PL_LOG_THRESHOLD_FOR_CONNLOST_WRITES) {
            PyObject *r = PyObject_CallMethod(pl_state.logger, "warning", "s",
                                              "socket.send() raised exception.");
            if (r == NULL)
                return -1;
            Py_DECREF(r);
        }
        self->conn_lost++;
        *drop = 1;
    }
    return 0;
}

/* Send `total` bytes in `nbufs` buffers: to the socket at once when nothing
 * is queued, the rest queued with a reference to what holds it. `keep` is an
 * exact bytes object holding the only buffer, referenced (it is immutable);
 * anything else is copied, since the caller may reuse its buffers. 0 when
 * sent, queued or the connection dropped on an error; -1 with an exception
 * for the caller to raise. */
static int
pl_stream_send(PLStream *self, const uv_buf_t *bufs, unsigned int nbufs, size_t total,
               PyObject *keep)
{
    size_t sent = 0;
    if (self->write_size == 0) {
        int n = uv_try_write(self->uvh, bufs, nbufs);
        if (n >= 0) {
            sent = (size_t)n;
            if (self->loop->monitor != NULL)
                self->loop->monitor->bytes_written += sent;
        }
        else if (n != UV_EAGAIN && n != UV_ENOSYS) {
            pl_error_set_uv(n);
            pl_stream_fatal_error(self, "Fatal write error on socket transport");
            return 0;
        }
        if (sent == total)
            return 0;
    }
    else if (pl_stream_check_fd(self) < 0) {
        return 0; /* nothing tried the socket: it would wait forever */
    }
    PyObject *owner;
    char *base;
    if (keep != NULL) {
        owner = Py_NewRef(keep);
        base = bufs[0].base + sent;
    }
    else {
        owner = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(total - sent));
        if (owner == NULL)
            return -1;
        base = PyBytes_AS_STRING(owner);
        if (nbufs == 1) {
            memcpy(base, bufs[0].base + sent, total - sent);
        }
        else {
            char *dst = base;
            size_t skip = sent;
            for (unsigned int i = 0; i < nbufs; i++) {
                size_t blen = bufs[i].len;
                if (skip >= blen) {
                    skip -= blen;
                    continue;
                }
                memcpy(dst, bufs[i].base + skip, blen - skip);
                dst += blen - skip;
                skip = 0;
            }
        }
    }
    if (pl_stream_queue_write(self, owner, base, total - sent) < 0) {
        Py_DECREF(owner);
        pl_stream_fatal_error(self, "Fatal write error on socket transport");
        return 0;
    }
    Py_DECREF(owner);
    pl_stream_maybe_pause(self);
    return PyErr_Occurred() ? -1 : 0;
}

static PyObject *
Stream_write(PLStream *self, PyObject *data)
{
    if (pl_loop_check_uv_thread(self->loop) < 0)
        return NULL;
    if (!PyBytes_Check(data) && !PyByteArray_Check(data) && !PyMemoryView_Check(data)) {
        PyErr_Format(PyExc_TypeError, PL_STREAM_WRITE_TYPE_MSG, Py_TYPE(data)->tp_name);
        return NULL;
    }
    int drop;
    if (pl_stream_check_write(self, &drop) < 0)
        return NULL;
    Py_buffer view;
    if (PyBytes_CheckExact(data)) {
        /* The common case, without the buffer protocol's round trip: the
         * caller's reference keeps the bytes alive for this call, and
         * PyBuffer_Release ignores a view with no object. */
        view.obj = NULL;
        view.buf = PyBytes_AS_STRING(data);
        view.len = PyBytes_GET_SIZE(data);
    }
    else if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *ret = NULL;
    if (view.len == 0 || drop) {
        ret = Py_NewRef(Py_None);
        goto done;
    }
    size_t len = (size_t)view.len;
    uv_buf_t b = uv_buf_init(view.buf, (unsigned int)(len > UINT_MAX ? UINT_MAX : len));
    if (pl_stream_send(self, &b, 1, len, PyBytes_CheckExact(data) ? data : NULL) == 0)
        ret = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&view);
    return ret;
}

/* writelines() by joining, which also raises the stdlib's TypeError for an
 * item that is not bytes-like. */
static PyObject *
pl_stream_writelines_joined(PLStream *self, PyObject *lines)
{
    PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
    if (empty == NULL)
        return NULL;
    PyObject *joined = PyObject_CallMethod(empty, "join", "O", lines);
    Py_DECREF(empty);
    if (joined == NULL)
        return NULL;
    PyObject *r = Stream_write(self, joined);
    Py_DECREF(joined);
    return r;
}

#define PL_WRITEV_MAX 64

/* writelines(): when nothing is queued, one writev of every chunk as it is
 * (no join copy); whatever the socket did not take is copied into one
 * buffer and queued. */
static PyObject *
Stream_writelines(PLStream *self, PyObject *lines)
{
    if (pl_loop_check_uv_thread(self->loop) < 0)
        return NULL;
    PyObject *seq = PySequence_Fast(lines, "writelines() argument must be an iterable");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    Py_buffer views[PL_WRITEV_MAX];
    uv_buf_t bufs[PL_WRITEV_MAX];
    Py_ssize_t nviews = 0;
    PyObject *ret = NULL;
    if (PL_WRITELINES_DROP_FIRST && n > 0 && !self->eof_sent && self->empty_waiter == NULL &&
        (self->conn_lost || self->state != PL_STREAM_OPEN)) {
        int drop;
        if (pl_stream_check_write(self, &drop) == 0)
            ret = Py_NewRef(Py_None);
        goto done;
    }
    if (n > PL_WRITEV_MAX || self->write_size > 0 || self->eof_sent ||
        self->empty_waiter != NULL || self->conn_lost || self->state != PL_STREAM_OPEN) {
        ret = pl_stream_writelines_joined(self, seq);
        goto done;
    }
    size_t total = 0;
    for (; nviews < n; nviews++) {
        PyObject *it = items[nviews];
        if (!PyBytes_Check(it) && !PyByteArray_Check(it) && !PyMemoryView_Check(it))
            break;
        if (PyObject_GetBuffer(it, &views[nviews], PyBUF_SIMPLE) < 0)
            break;
        if ((size_t)views[nviews].len > UINT_MAX) {
            PyBuffer_Release(&views[nviews]);
            break;
        }
        bufs[nviews] = uv_buf_init(views[nviews].buf, (unsigned int)views[nviews].len);
        total += (size_t)views[nviews].len;
    }
    if (nviews < n) {
        /* Not every item is a plain buffer: the join path raises or copes. */
        PyErr_Clear();
        ret = pl_stream_writelines_joined(self, seq);
        goto done;
    }
    if (total == 0) {
        ret = Py_NewRef(Py_None);
        goto done;
    }
    if (pl_stream_send(self, bufs, (unsigned int)nviews, total, NULL) == 0)
        ret = Py_NewRef(Py_None);
done:
    for (Py_ssize_t i = 0; i < nviews && i < n; i++)
        PyBuffer_Release(&views[i]);
    Py_DECREF(seq);
    return ret;
}

static PyObject *
Stream_write_eof(PLStream *self, PyObject *Py_UNUSED(ignored))
{
    if (pl_loop_check_uv_thread(self->loop) < 0)
        return NULL;
    if (self->closing || self->eof_sent)
        Py_RETURN_NONE;
    self->eof_sent = 1;
    if (self->write_size == 0 && self->state == PL_STREAM_OPEN && !self->conn_lost) {
        if (pl_stream_shutdown(self) < 0)
            return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Stream_can_write_eof(PLStream *Py_UNUSED(self), PyObject *Py_UNUSED(ignored))
{
    Py_RETURN_TRUE;
}

/* ---- close ------------------------------------------------------------------- */

static void
pl__stream_close_cb(uv_handle_t *handle)
{
    pl_loop_gil_ensure(handle->loop);
    PLStream *self = (PLStream *)handle->data;
    pl_counters.transports_freed[pl_counters_stream_kind(handle)]++; /* before the free */
    PyMem_Free(handle);
    pl_counters.handles_freed++;
    if (self != NULL) {
        self->uvh = NULL;
        self->state = PL_STREAM_CLOSED;
        Py_DECREF(self); /* the reference held while the handle was open */
    }
}

static int
pl_stream_close_handle(PLStream *self)
{
    if (self->state != PL_STREAM_OPEN)
        return 0;
    if (self->in_alloc) {
        self->close_deferred = 1; /* the read callback closes it */
        return 0;
    }
    self->state = PL_STREAM_CLOSING;
    pl_stream_release_rbuf(self);
    /* libuv closes the fd: the Python socket object must not close it again. */
    if (self->sock != NULL) {
        PyObject *r = PyObject_CallMethod(self->sock, "detach", NULL);
        if (r == NULL)
            PyErr_Clear();
        Py_XDECREF(r);
    }
    uv_close((uv_handle_t *)self->uvh, pl__stream_close_cb);
    return 0;
}

/* Those references are invisible to the collector otherwise: a loop dropped
 * without close() would keep every open transport (and through it the loop,
 * its sockets and queued data) alive for good. Visited from the loop that
 * owns the handle, they make the lot one cycle, freed once unreachable (the
 * loop's finalizer closes the handles), as the stdlib's transports are. */
int
pl_stream_traverse_uv(uv_handle_t *handle, visitproc visit, void *arg)
{
    PLStream *self = (PLStream *)handle->data;
    if (self == NULL)
        return 0; /* never attached: only memory, freed by the close callback */
    Py_VISIT(self); /* the open handle's reference, until its close callback */
    for (size_t i = 0; i < self->reqs; i++)
        Py_VISIT(self);
    return 0;
}

void
pl_stream_close_for_loop(uv_handle_t *handle)
{
    PLStream *self = (PLStream *)handle->data;
    if (self == NULL || uv_is_closing(handle))
        return;
    /* The loop is closing under an open transport: no protocol callbacks
     * any more, just release the handle and the transport's self-reference. */
    self->closing = 1;
    self->reading = 0;
    if (!self->conn_lost)
        self->conn_lost = 1;
    pl_stream_close_handle(self);
}

static PyObject *
Stream__call_connection_lost(PLStream *self, PyObject *exc)
{
    if (pl_loop_check_uv_thread(self->loop) < 0)
        return NULL;
    /* What connection_lost raised, held while the rest of the teardown runs
     * (it calls into Python too) and raised last. */
    PyObject *err = NULL;
    if (self->protocol_connected && self->protocol != NULL) {
        PyObject *r = PyObject_CallMethod(self->protocol, "connection_lost", "O", exc);
        if (r == NULL)
            err = pl_err_fetch();
        Py_XDECREF(r);
    }
    pl_stream_close_handle(self);
    /* The protocol's bound methods too: the transport lives on until libuv's
     * close callback, which may be a loop run away (after run_until_complete
     * returned), and must not keep the protocol (an SSLProtocol with its
     * SSLContext) alive until then; the stdlib's transport drops it here. */
    Py_CLEAR(self->protocol);
    Py_CLEAR(self->data_received_meth);
    Py_CLEAR(self->get_buffer_meth);
    Py_CLEAR(self->buffer_updated_meth);
    pl_stream_fail_empty_waiter(self);
    if (self->lost_hook != NULL) {
        /* Whatever connection_lost did, the server learns the client left. */
        PyObject *hook = self->lost_hook;
        self->lost_hook = NULL;
        PyObject *hr = PyObject_CallNoArgs(hook);
        Py_DECREF(hook);
        if (hr == NULL) {
            if (err == NULL)
                return NULL;
            PyErr_WriteUnraisable((PyObject *)self);
        }
        Py_XDECREF(hr);
    }
    if (err != NULL) {
        pl_err_restore(err);
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Stream__make_empty_waiter(PLStream *self, PyObject *Py_UNUSED(ignored))
{
    if (self->empty_waiter != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Empty waiter is already set");
        return NULL;
    }
    PyObject *fut = PyObject_CallMethod((PyObject *)self->loop, "create_future", NULL);
    if (fut == NULL)
        return NULL;
    self->empty_waiter = fut;
    if (self->write_size == 0) {
        PyObject *r = PyObject_CallMethod(fut, "set_result", "O", Py_None);
        if (r == NULL) {
            Py_CLEAR(self->empty_waiter);
            return NULL;
        }
        Py_DECREF(r);
    }
    return Py_NewRef(fut);
}

static PyObject *
Stream__reset_empty_waiter(PLStream *self, PyObject *Py_UNUSED(ignored))
{
    Py_CLEAR(self->empty_waiter);
    Py_RETURN_NONE;
}

/* The socket object whose fd the handle uses (for loop.sendfile, which hands
 * it to sock_sendfile while the transport's own reads and writes are held). */
static PyObject *
Stream_get_sock(PLStream *self, void *Py_UNUSED(closure))
{
    if (self->sock == NULL || self->state != PL_STREAM_OPEN)
        Py_RETURN_NONE;
    return Py_NewRef(self->sock);
}

static PyObject *
Stream_get_sock_fd(PLStream *self, void *Py_UNUSED(closure))
{
    uv_os_fd_t fd;
    if (self->uvh == NULL || self->state != PL_STREAM_OPEN ||
        uv_fileno((uv_handle_t *)self->uvh, &fd) < 0)
        return PyLong_FromLong(-1);
    return PyLong_FromLong((long)fd);
}

static PyObject *
Stream_get_loop(PLStream *self, void *Py_UNUSED(closure))
{
    return Py_NewRef((PyObject *)self->loop);
}

static PyObject *
Stream_get_protocol_paused(PLStream *self, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(self->protocol_paused);
}

static PyObject *
Stream__set_lost_hook(PLStream *self, PyObject *hook)
{
    if (hook != Py_None && !PyCallable_Check(hook)) {
        PyErr_SetString(PyExc_TypeError, "hook must be callable or None");
        return NULL;
    }
    Py_XSETREF(self->lost_hook, hook == Py_None ? NULL : Py_NewRef(hook));
    Py_RETURN_NONE;
}

static PyObject *
Stream_close(PLStream *self, PyObject *Py_UNUSED(ignored))
{
    if (pl_loop_check_uv_thread(self->loop) < 0)
        return NULL;
    if (self->closing || self->state != PL_STREAM_OPEN)
        Py_RETURN_NONE;
    if (pl_stream_check_fd(self) < 0)
        Py_RETURN_NONE;
    self->closing = 1;
    pl_stream_stop_reading(self);
    if (self->write_size == 0)
        pl_stream_force_close(self, NULL);
    Py_RETURN_NONE;
}

/* _force_close(exc): what asyncio's own transports offer to sslproto, which
 * drops the connection through it on TLS errors and timeouts. */
static PyObject *
Stream__force_close(PLStream *self, PyObject *exc)
{
    pl_stream_force_close(self, exc == Py_None ? NULL : exc);
    Py_RETURN_NONE;
}

static PyObject *
Stream_abort(PLStream *self, PyObject *Py_UNUSED(ignored))
{
    if (pl_loop_check_uv_thread(self->loop) < 0)
        return NULL;
    pl_stream_force_close(self, NULL);
    Py_RETURN_NONE;
}

static PyObject *
Stream_is_closing(PLStream *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->closing || self->state != PL_STREAM_OPEN);
}

/* ---- reading control, protocol, limits, extra ------------------------------ */

static PyObject *
Stream_is_reading(PLStream *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(!self->closing && self->state == PL_STREAM_OPEN && !self->paused);
}

static PyObject *
Stream_pause_reading(PLStream *self, PyObject *Py_UNUSED(ignored))
{
    if (pl_loop_check_uv_thread(self->loop) < 0)
        return NULL;
    if (self->closing || self->paused || self->state != PL_STREAM_OPEN)
        Py_RETURN_NONE;
    if (pl_stream_check_fd(self) < 0)
        Py_RETURN_NONE;
    self->paused = 1;
    pl_stream_stop_reading(self);
    Py_RETURN_NONE;
}

static PyObject *
Stream_resume_reading(PLStream *self, PyObject *Py_UNUSED(ignored))
{
    if (pl_loop_check_uv_thread(self->loop) < 0)
        return NULL;
    if (self->closing || !self->paused || self->state != PL_STREAM_OPEN)
        Py_RETURN_NONE;
    if (pl_stream_check_fd(self) < 0)
        Py_RETURN_NONE;
    self->paused = 0;
    if (self->eof_pending) {
        /* The EOF already read waits for us: hand it over, not a read. */
        if (pl_stream_call_soon(self, "_deliver_eof", NULL) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    if (pl_stream_start_reading(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Stream__start_reading(PLStream *self, PyObject *Py_UNUSED(ignored))
{
    if (pl_loop_check_uv_thread(self->loop) < 0)
        return NULL;
    if (pl_stream_start_reading(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static int
pl_stream_set_protocol(PLStream *self, PyObject *protocol)
{
    PyObject *buffered_type = pl_state.buffered_protocol_type;
    int is_buffered = PyObject_IsInstance(protocol, buffered_type);
    if (is_buffered < 0)
        return -1;
    /* Bound once here, as uvloop does, instead of an attribute lookup (and
     * a method object) per read. */
    PyObject *dr = NULL, *gb = NULL, *bu = NULL;
    if (!is_buffered) {
        if (pl_getattr_optional(protocol, "data_received", &dr) < 0)
            return -1;
    }
    else if (pl_getattr_optional(protocol, "get_buffer", &gb) < 0 ||
             pl_getattr_optional(protocol, "buffer_updated", &bu) < 0) {
        Py_XDECREF(gb);
        return -1;
    }
    if (self->rbuf_held)
        pl_stream_release_rbuf(self);
    Py_XSETREF(self->protocol, Py_NewRef(protocol));
    Py_XSETREF(self->data_received_meth, dr);
    Py_XSETREF(self->get_buffer_meth, gb);
    Py_XSETREF(self->buffer_updated_meth, bu);
    self->buffered = (char)is_buffered;
    self->tls = (char)pl_tls_is_plain(protocol);
    self->protocol_connected = 1;
    return 0;
}

static PyObject *
Stream_set_protocol(PLStream *self, PyObject *protocol)
{
    if (pl_stream_set_protocol(self, protocol) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Stream_get_protocol(PLStream *self, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(self->protocol ? self->protocol : Py_None);
}

static PyObject *
Stream_get_write_buffer_size(PLStream *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSize_t(self->write_size);
}

static PyObject *
Stream_get_write_buffer_limits(PLStream *self, PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("(nn)", (Py_ssize_t)self->low_water, (Py_ssize_t)self->high_water);
}

/* A write-buffer limit as the stdlib takes it: any real number, compared
 * with the (whole) buffer size. A float is floored, which compares the same
 * way (size > 1.5 exactly when size > 1); what exceeds Py_ssize_t (10**30,
 * infinity) saturates, meaning "never"; NaN becomes -1, which the range
 * check refuses with ValueError as the stdlib's comparison does. */
static int
pl_stream_limit_from_py(PyObject *obj, Py_ssize_t *out)
{
    if (PyFloat_Check(obj)) {
        double d = PyFloat_AS_DOUBLE(obj);
        if (isnan(d))
            *out = -1;
        else if (d >= (double)PY_SSIZE_T_MAX)
            *out = PY_SSIZE_T_MAX;
        else if (d <= (double)PY_SSIZE_T_MIN)
            *out = PY_SSIZE_T_MIN;
        else
            *out = (Py_ssize_t)floor(d);
        return 0;
    }
    /* Ints (anything with __index__) saturate instead of overflowing. */
    *out = PyNumber_AsSsize_t(obj, NULL);
    return *out == -1 && PyErr_Occurred() ? -1 : 0;
}

static PyObject *
Stream_set_write_buffer_limits(PLStream *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"high", "low", NULL};
    PyObject *high_o = Py_None, *low_o = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO:set_write_buffer_limits", kwlist, &high_o,
                                     &low_o))
        return NULL;
    Py_ssize_t high, low;
    if (high_o == Py_None) {
        if (low_o == Py_None) {
            high = 64 * 1024;
        }
        else {
            if (pl_stream_limit_from_py(low_o, &low) < 0)
                return NULL;
            high = low > PY_SSIZE_T_MAX / 4   ? PY_SSIZE_T_MAX
                   : low < PY_SSIZE_T_MIN / 4 ? PY_SSIZE_T_MIN
                                              : 4 * low;
        }
    }
    else if (pl_stream_limit_from_py(high_o, &high) < 0) {
        return NULL;
    }
    if (low_o == Py_None)
        low = high / 4;
    else if (pl_stream_limit_from_py(low_o, &low) < 0)
        return NULL;
    if (!(high >= low && low >= 0)) {
        PyErr_Format(PyExc_ValueError, "high (%zd) must be >= low (%zd) must be >= 0", high, low);
        return NULL;
    }
    self->high_water = (size_t)high;
    self->low_water = (size_t)low;
    pl_stream_maybe_pause(self);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Stream_get_extra_info(PLStream *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"name", "default", NULL};
    PyObject *name, *dflt = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:get_extra_info", kwlist, &name, &dflt))
        return NULL;
    if (self->extra != NULL && PyDict_Check(self->extra)) {
        PyObject *v = PyDict_GetItemWithError(self->extra, name);
        if (v != NULL)
            return Py_NewRef(v);
        if (PyErr_Occurred())
            return NULL;
    }
    return Py_NewRef(dflt);
}

static PyObject *
Stream_repr(PLStream *self)
{
    const char *st = self->state == PL_STREAM_OPEN ? (self->closing ? "closing" : "open")
                                                   : "closed";
    return PyUnicode_FromFormat("<%s %s write_buffer=%zu>", Py_TYPE(self)->tp_name, st,
                                self->write_size);
}

/* ---- type ------------------------------------------------------------------- */

static int
Stream_traverse(PLStream *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->extra);
    Py_VISIT((PyObject *)self->loop);
    Py_VISIT(self->protocol);
    Py_VISIT(self->data_received_meth);
    Py_VISIT(self->get_buffer_meth);
    Py_VISIT(self->buffer_updated_meth);
    Py_VISIT(self->sock);
    Py_VISIT(self->lost_hook);
    Py_VISIT(self->empty_waiter);
    Py_VISIT(self->alloc_error);
    return 0;
}

static int
Stream_clear(PLStream *self)
{
    Py_CLEAR(self->extra);
    Py_CLEAR(self->protocol);
    Py_CLEAR(self->data_received_meth);
    Py_CLEAR(self->get_buffer_meth);
    Py_CLEAR(self->buffer_updated_meth);
    Py_CLEAR(self->lost_hook);
    Py_CLEAR(self->empty_waiter);
    Py_CLEAR(self->alloc_error);
    /* loop and sock stay until dealloc: an open handle still needs them. */
    return 0;
}

static void
Stream_finalize(PLStream *self)
{
    /* Only reachable once the handle is closed (an open handle keeps a
     * reference to its transport), or for a transport that never opened. */
    (void)self;
}

static void
Stream_dealloc(PLStream *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    pl_stream_release_rbuf(self);
    Stream_clear(self);
    if (self->sock != NULL) {
        /* Never opened (no handle took the fd): the socket closes itself. */
        Py_CLEAR(self->sock);
    }
    Py_CLEAR(self->loop);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
}

static PyObject *
Stream_new(PyTypeObject *type, PyObject *Py_UNUSED(a), PyObject *Py_UNUSED(k))
{
    PyErr_Format(PyExc_TypeError, "cannot create '%s' instances directly", type->tp_name);
    return NULL;
}

static PyMethodDef Stream_methods[] = {
    {"write", (PyCFunction)Stream_write, METH_O, NULL},
    {"writelines", (PyCFunction)Stream_writelines, METH_O, NULL},
    {"write_eof", (PyCFunction)Stream_write_eof, METH_NOARGS, NULL},
    {"can_write_eof", (PyCFunction)Stream_can_write_eof, METH_NOARGS, NULL},
    {"close", (PyCFunction)Stream_close, METH_NOARGS, NULL},
    {"abort", (PyCFunction)Stream_abort, METH_NOARGS, NULL},
    {"is_closing", (PyCFunction)Stream_is_closing, METH_NOARGS, NULL},
    {"is_reading", (PyCFunction)Stream_is_reading, METH_NOARGS, NULL},
    {"pause_reading", (PyCFunction)Stream_pause_reading, METH_NOARGS, NULL},
    {"resume_reading", (PyCFunction)Stream_resume_reading, METH_NOARGS, NULL},
    {"set_protocol", (PyCFunction)Stream_set_protocol, METH_O, NULL},
    {"get_protocol", (PyCFunction)Stream_get_protocol, METH_NOARGS, NULL},
    {"get_write_buffer_size", (PyCFunction)Stream_get_write_buffer_size, METH_NOARGS, NULL},
    {"get_write_buffer_limits", (PyCFunction)Stream_get_write_buffer_limits, METH_NOARGS, NULL},
    {"set_write_buffer_limits", PL_METH(Stream_set_write_buffer_limits),
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"get_extra_info", PL_METH(Stream_get_extra_info), METH_VARARGS | METH_KEYWORDS, NULL},
    {"_call_connection_lost", (PyCFunction)Stream__call_connection_lost, METH_O, NULL},
    {"_start_reading", (PyCFunction)Stream__start_reading, METH_NOARGS, NULL},
    {"_set_lost_hook", (PyCFunction)Stream__set_lost_hook, METH_O, NULL},
    {"_force_close", (PyCFunction)Stream__force_close, METH_O, NULL},
    {"_deliver_eof", (PyCFunction)Stream__deliver_eof, METH_NOARGS, NULL},
    {"_make_empty_waiter", (PyCFunction)Stream__make_empty_waiter, METH_NOARGS, NULL},
    {"_reset_empty_waiter", (PyCFunction)Stream__reset_empty_waiter, METH_NOARGS, NULL},
    {NULL}
};

static PyGetSetDef Stream_getset[] = {
    {"_sock", (getter)Stream_get_sock, NULL, NULL, NULL},
    {"_sock_fd", (getter)Stream_get_sock_fd, NULL, NULL, NULL},
    {"_loop", (getter)Stream_get_loop, NULL, NULL, NULL},
    {"_protocol_paused", (getter)Stream_get_protocol_paused, NULL, NULL, NULL},
    {NULL}
};

static PyMemberDef Stream_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(PLStream, weakreflist), READONLY, NULL},
    {NULL}
};

static PyType_Slot Stream_slots[] = {
    {Py_tp_new, Stream_new},
    {Py_tp_dealloc, Stream_dealloc},
    {Py_tp_finalize, Stream_finalize},
    {Py_tp_traverse, Stream_traverse},
    {Py_tp_clear, Stream_clear},
    {Py_tp_repr, Stream_repr},
    {Py_tp_methods, Stream_methods},
    {Py_tp_members, Stream_members},
    {Py_tp_getset, Stream_getset},
    {0, NULL}
};

static PyType_Spec Stream_tcp_spec = {
    .name = "pyloop._core.TCPTransport",
    .basicsize = sizeof(PLStream),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = Stream_slots,
};

int
pl_stream_init_types(PyObject *module)
{
    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL)
        return -1;
    PyObject *base = PyObject_GetAttrString(asyncio, "Transport");
    Py_DECREF(asyncio);
    if (base == NULL)
        return -1;
    /* Our `extra` must sit exactly where BaseTransport keeps `_extra`. */
    if (((PyTypeObject *)base)->tp_basicsize != (Py_ssize_t)offsetof(PLStream, loop)) {
        PyErr_SetString(PyExc_RuntimeError,
                        "asyncio.Transport layout is not the one pyloop was built for");
        Py_DECREF(base);
        return -1;
    }
    PyObject *bases = PyTuple_Pack(1, base);
    Py_DECREF(base);
    if (bases == NULL)
        return -1;
    pl_stream_tcp_type = PyType_FromSpecWithBases(&Stream_tcp_spec, bases);
    Py_DECREF(bases);
    if (pl_stream_tcp_type == NULL)
        return -1;
    return PyModule_AddObjectRef(module, "TCPTransport", pl_stream_tcp_type);
}

/* ---- creation ---------------------------------------------------------------- */

/* loop._new_stream_transport(sock, protocol, extra): wrap a connected stream
 * socket. The Python layer schedules connection_made, reading and the
 * waiter, in the stdlib's order. libuv takes over the socket's fd; the
 * socket object is detached when the handle closes. */
PyObject *
Loop__new_stream_transport(PLLoop *self, PyObject *const *args, Py_ssize_t nargs)
{
    PLStream *t = NULL;
    union pl_stream_uvh {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } *uvh = NULL;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "_new_stream_transport(sock, protocol, extra)");
        return NULL;
    }
    PyObject *sock = args[0], *protocol = args[1], *extra = args[2];
    if (pl_loop_check_closed(self) < 0 || pl_loop_check_uv_thread(self) < 0)
        return NULL;
    if (extra != Py_None && !PyDict_Check(extra)) {
        PyErr_SetString(PyExc_TypeError, "extra must be a dict or None");
        return NULL;
    }
    PyObject *fdobj = PyObject_CallMethod(sock, "fileno", NULL);
    if (fdobj == NULL)
        return NULL;
    long fd = PyLong_AsLong(fdobj);
    Py_DECREF(fdobj);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0 || fd > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "the socket is closed");
        return NULL;
    }

    PyTypeObject *tp = (PyTypeObject *)pl_stream_tcp_type;
    t = (PLStream *)tp->tp_alloc(tp, 0);
    if (t == NULL)
        return NULL;
    t->loop = (PLLoop *)Py_NewRef((PyObject *)self);
    t->high_water = 64 * 1024;
    t->low_water = 16 * 1024;
    t->extra = extra == Py_None ? PyDict_New() : Py_NewRef(extra);
    if (t->extra == NULL)
        goto error;
    if (pl_stream_set_protocol(t, protocol) < 0)
        goto error;

    /* AF_UNIX sockets become libuv pipes, everything else TCP handles. */
    int domain = AF_INET;
    socklen_t dlen = sizeof(domain);
    if (getsockopt((int)fd, SOL_SOCKET, SO_DOMAIN, &domain, &dlen) < 0) {
        pl_error_set_errno();
        goto error;
    }
    uvh = PyMem_Malloc(sizeof(*uvh));
    if (uvh == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    int err = domain == AF_UNIX ? uv_pipe_init(&self->uv, &uvh->pipe, 0)
                                : uv_tcp_init(&self->uv, &uvh->tcp);
    if (err < 0) {
        PyMem_Free(uvh);
        pl_error_set_uv(err);
        goto error;
    }
    pl_counters.handles_created++;
    pl_counters.transports_created[pl_counters_stream_kind(uvh)]++;
    uvh->tcp.data = NULL; /* the close callback then frees only the memory */
    err = domain == AF_UNIX ? uv_pipe_open(&uvh->pipe, (uv_file)fd)
                            : uv_tcp_open(&uvh->tcp, (uv_os_sock_t)fd);
    if (err < 0) {
        /* libuv did not take the fd: it stays with the caller's socket. */
        uv_close((uv_handle_t *)uvh, pl__stream_close_cb);
        pl_error_set_uv(err);
        goto error;
    }
    uvh->tcp.data = t;
    t->uvh = (uv_stream_t *)uvh;
    t->sock = Py_NewRef(sock);
    t->state = PL_STREAM_OPEN;
    Py_INCREF(t); /* held by the open handle until its close callback */
    return (PyObject *)t;

error:
    Py_XDECREF(t);
    return NULL;
}
