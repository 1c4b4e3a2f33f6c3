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
#include "accept.h"
#include "errors.h"
#include "module.h"
#include "server.h"

#include <errno.h>
#include <structmember.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#define PL_UVH(s) ((PLUVHandle *)(s))

PyObject *pl_stream_tcp_type;

static int pl_stream_close_handle(PLStream *self);
static int pl_stream_server_track(PyObject *server, PLStream *t, int delta);
static void pl_stream_server_forget(PLStream *t);
static const pl_uvh_ops pl_stream_ops;
static int pl_stream_flush_held(PLStream *self, int fin);

/* ---- error routing: the base's policies (uvhandle.h) ------------------------ */

#define pl_stream_fatal_error(self, message) pl_uvh_fatal(PL_UVH(self), (message))
#define pl_stream_handle_callback_error(self, message) \
    pl_uvh_callback_error(PL_UVH(self), (message))

static void
pl_stream_op_stop_reading(PLUVHandle *h)
{
    PLStream *self = (PLStream *)h;
    if (self->in_alloc) {
        /* Not now: libuv calls the read callback next whatever happens. */
        if (self->reading)
            self->stop_deferred = 1;
        return;
    }
    if (self->reading && self->uvh != NULL && self->state == PL_UVH_OPEN) {
        uv_read_stop(self->uvh);
        self->reading = 0;
    }
}

#define pl_stream_call_soon(self, name, arg) pl_uvh_call_soon(PL_UVH(self), (name), (arg))

static int
pl_stream_force_close(PLStream *self, PyObject *exc)
{
    if (self->conn_lost)
        return 0;
    if (!self->closing)
        self->closing = 1;
    pl_stream_op_stop_reading(PL_UVH(self));
    self->conn_lost++;
    /* connection_lost runs on the next loop pass, as in the stdlib. */
    return pl_stream_call_soon(self, "_call_connection_lost", exc ? exc : Py_None);
}

static int
pl_stream_op_force_close(PLUVHandle *h, PyObject *exc)
{
    return pl_stream_force_close((PLStream *)h, exc);
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
    /* An fd accepted in C whose socket object was never made (lazy_fd set)
     * reached Python code only as the private `_sock_fd` number, so the
     * fcntl() is skipped (one system call per close() on the churn path)
     * where a stale fd cannot make libuv call epoll_ctl() on it, which it
     * answers with abort(): nothing queued to write (no POLLOUT pending) and
     * reading not paused (only resuming starts a watcher; stopping one and
     * uv_close() ignore a closed fd). */
    int no_stale_risk = self->lazy_fd >= 0 && self->write_size == 0 && !self->paused;
    if (no_stale_risk || self->conn_lost || self->state != PL_UVH_OPEN || self->uvh == NULL ||
        uv_fileno((uv_handle_t *)self->uvh, &fd) < 0 || pl_error_check_fd(fd) == 0)
        return 0;
    pl_stream_fatal_error(self, "Fatal error on transport");
    /* Closed now, not on the next pass: a watcher change libuv queued for
     * the fd (a write waiting for POLLOUT) would reach epoll_ctl, whose
     * EBADF libuv answers with abort(). uv_close drops it from the queue. */
    pl_stream_close_handle(self);
    return -1;
}

static int
pl_stream_op_check_fd(PLUVHandle *h)
{
    return pl_stream_check_fd((PLStream *)h) < 0;
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
    if (self->protocol == NULL || self->conn_lost || self->state != PL_UVH_OPEN)
        return; /* libuv reports UV_ENOBUFS; the read callback ignores it */
    if (self->buffered && self->raw_in == NULL) {
        /* BufferedProtocol: read straight into the protocol's memory. */
        Py_INCREF(self); /* protocol code may drop the last other reference */
        int entered = pl_uvh_enter(PL_UVH(self));
        self->in_alloc = 1;
        int rc = pl_stream_get_buffer(self);
        self->in_alloc = 0;
        pl_uvh_exit(PL_UVH(self), entered);
        if (rc < 0) {
            Py_XSETREF(self->alloc_error, pl_err_fetch());
        }
        else if (self->conn_lost || self->state != PL_UVH_OPEN) {
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
    pl_stream_op_stop_reading(PL_UVH(self));
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
    pl_stream_op_stop_reading(PL_UVH(self));
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
        self->state != PL_UVH_OPEN)
        Py_RETURN_NONE;
    Py_INCREF(self);
    pl_stream_on_eof(self);
    Py_DECREF(self);
    return PyErr_Occurred() ? NULL : Py_NewRef(Py_None);
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
        pl_stream_op_stop_reading(PL_UVH(self));
    }
}

static void
pl__stream_read_cb(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    pl_loop_gil_ensure(stream->loop);
    PLStream *self = (PLStream *)stream->data;
    PyObject *r;
    Py_INCREF(self); /* protocol code may drop the last other reference */
    int entered = pl_uvh_enter(PL_UVH(self));
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
        if (self->raw_in != NULL) {
            /* Raw bytes (TLS records) from the loop's buffer (cache-hot,
             * shared by every connection) to the protocol's C hook */
            if (self->raw_in(self->protocol, buf->base, nread) < 0)
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
            self->in_recv = 1;
            r = pl_stream_call_protocol(self, self->data_received_meth, "data_received", data);
            self->in_recv = 0;
            /* What it wrote last leaves now (before its error, if it raised,
             * is reported: the stdlib's had left at write()), and before the
             * bytes go back: an echo holds `data` itself, which the loop
             * reuses only once nothing else refers to it. */
            if (self->held != NULL) {
                PyObject *err = r == NULL ? pl_err_fetch() : NULL;
                if (pl_stream_flush_held(self, 0) < 0)
                    pl_stream_handle_callback_error(self, "Fatal write error on socket transport");
                if (err != NULL)
                    pl_err_restore(err);
            }
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
    pl_uvh_exit(PL_UVH(self), entered);
    Py_DECREF(self);
}

static int
pl_stream_op_start_reading(PLUVHandle *h)
{
    PLStream *self = (PLStream *)h;
    if (self->paused || self->closing || self->state != PL_UVH_OPEN)
        return 0;
    if (self->reading) {
        self->stop_deferred = 0; /* get_buffer() paused and resumed */
        return 0;
    }
    return pl_uvh_reading_started(
        PL_UVH(self), uv_read_start(self->uvh, pl__stream_alloc_cb, pl__stream_read_cb));
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
        if (pl_stream_force_close(self, NULL) < 0)
            PyErr_WriteUnraisable((PyObject *)self);
    }
    else if (self->eof_sent && !self->closing && self->state == PL_UVH_OPEN) {
        if (pl_stream_shutdown(self) < 0)
            pl_stream_fatal_error(self, "Fatal error on transport");
    }
}

static void
pl__stream_write_cb(uv_write_t *ureq, int status)
{
    pl_loop_gil_ensure(ureq->handle->loop);
    size_t len;
    PLStream *self = (PLStream *)pl_uvh_write_finish(ureq, status, &len);
    int entered = pl_uvh_enter(PL_UVH(self));
    self->write_size -= len;
    self->reqs--;
    if (status < 0 && status != UV_ECANCELED) {
        if (!self->conn_lost) {
            self->write_size = 0;
            pl_stream_fatal_uv(self, status, "Fatal write error on socket transport");
        }
    }
    else if (status == 0) {
        if (pl_uvh_maybe_resume(PL_UVH(self), (Py_ssize_t)self->write_size) < 0)
            pl_loop_stash_exception(self->loop);
        if (self->write_size == 0) {
            pl_stream_settle_empty_waiter(self, NULL);
            pl_stream_on_drained(self);
        }
    }
    pl_uvh_exit(PL_UVH(self), entered);
    Py_DECREF(self);
}

/* Queue `len` bytes at `base`, which lives inside `owner`. */
static int
pl_stream_queue_write(PLStream *self, PyObject *owner, char *base, size_t len)
{
    if (pl_uvh_write_start(PL_UVH(self), owner, base, len, pl__stream_write_cb) < 0)
        return -1;
    self->reqs++;
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
    if (self->conn_lost || self->state != PL_UVH_OPEN) {
        *drop = 1;
        return pl_uvh_lost_write(PL_UVH(self), "socket.send() raised exception.");
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
    return pl_uvh_maybe_pause(PL_UVH(self), (Py_ssize_t)self->write_size);
}

/* ---- the last answer and the FIN in one segment -----------------------------
 *
 * A server that answers a request and closes (HTTP's `Connection: close`,
 * HTTP/1.0) calls write() then close() in data_received(). The stdlib's
 * transport sends the answer at write() and the FIN an iteration later, when
 * it closes the socket after connection_lost: two segments, each a pass
 * through the peer's TCP receive path and a wake-up of the peer, which on
 * loopback all runs on the server's CPU (about a fifth of its time per
 * connection in the churn profile). So inside this transport's
 * data_received(), write() keeps the bytes (an exact bytes object, nothing
 * queued before it) and sends them when data_received() returns, or first
 * thing when anything else is asked of the transport: the Python code cannot
 * tell (get_write_buffer_size() is 0, as after a complete send); the peer
 * gets the data when the callback returns rather than in its middle. If
 * close() comes first, they go with MSG_MORE (held in the kernel, as under
 * TCP_CORK) and shutdown(SHUT_WR) then puts the FIN on that segment and sends
 * it: one segment and one wake-up of the peer fewer for one shutdown() more.
 * The peer sees the FIN before connection_lost runs instead of after it;
 * closing the fd later sends nothing more (or the RST that unread data
 * causes, as on the stdlib). Only for a TCP connection accepted in C whose
 * socket object was never made: shutdown() acts on the socket, close() only
 * on one fd, and with no socket object no other fd can share it. */

/* Larger answers take several segments anyway, and may not fit the socket's
 * buffer at once (then the rest is queued, as write() would). */
#define PL_STREAM_HOLD_MAX (64 * 1024)

static int
pl_stream_can_hold(PLStream *self, PyObject *data)
{
    return self->in_recv && self->held == NULL && self->write_size == 0 &&
           self->lazy_fd >= 0 &&
           (self->lazy_family == AF_INET || self->lazy_family == AF_INET6) &&
           PyBytes_CheckExact(data) && PyBytes_GET_SIZE(data) <= PL_STREAM_HOLD_MAX;
}

/* Send the held bytes, with the FIN when `fin` (close() follows at once),
 * else as write() would have. 0 (sent, queued, or the connection dropped on
 * an error, as write() drops it), or -1 with an exception to raise. */
static int
pl_stream_flush_held(PLStream *self, int fin)
{
    PyObject *data = self->held;
    self->held = NULL;
    if (data == NULL)
        return 0;
    int rc = 0;
    /* Closed meanwhile by a path that did not send it (the private
     * _call_connection_lost called from data_received): dropped, as a
     * write() after the loss is. */
    if (self->state != PL_UVH_OPEN || self->conn_lost)
        goto done;
    char *base = PyBytes_AS_STRING(data);
    size_t len = (size_t)PyBytes_GET_SIZE(data), sent = 0;
    if (fin && self->lazy_fd >= 0) {
        ssize_t n;
        do {
            n = send(self->lazy_fd, base, len, MSG_MORE | MSG_NOSIGNAL | MSG_DONTWAIT);
        } while (n < 0 && errno == EINTR);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            pl_error_set_errno();
            pl_stream_fatal_error(self, "Fatal write error on socket transport");
            goto done;
        }
        if (n > 0) {
            sent = (size_t)n;
            if (self->loop->monitor != NULL)
                self->loop->monitor->bytes_written += sent;
        }
        if (sent == len) {
            /* Fails only on a connection already reset or shut down, where
             * nothing waits to be sent. */
            (void)shutdown(self->lazy_fd, SHUT_WR);
            goto done;
        }
    }
    uv_buf_t b = uv_buf_init(base + sent, (unsigned int)(len - sent));
    rc = pl_stream_send(self, &b, 1, len - sent, data);
done:
    Py_DECREF(data);
    return rc;
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
    /* What an earlier write() of this call held goes first: only the last
     * one may meet the FIN. */
    if (self->held != NULL && pl_stream_flush_held(self, 0) < 0)
        return NULL;
    int drop;
    if (pl_stream_check_write(self, &drop) < 0)
        return NULL;
    if (!drop && pl_stream_can_hold(self, data) && PyBytes_GET_SIZE(data) > 0) {
        self->held = Py_NewRef(data);
        Py_RETURN_NONE;
    }
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
    if (self->held != NULL && pl_stream_flush_held(self, 0) < 0)
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
        (self->conn_lost || self->state != PL_UVH_OPEN)) {
        int drop;
        if (pl_stream_check_write(self, &drop) == 0)
            ret = Py_NewRef(Py_None);
        goto done;
    }
    if (n > PL_WRITEV_MAX || self->write_size > 0 || self->eof_sent ||
        self->empty_waiter != NULL || self->conn_lost || self->state != PL_UVH_OPEN) {
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
    if (self->held != NULL && pl_stream_flush_held(self, 0) < 0)
        return NULL;
    if (self->closing || self->eof_sent)
        Py_RETURN_NONE;
    self->eof_sent = 1;
    if (self->write_size == 0 && self->state == PL_UVH_OPEN && !self->conn_lost) {
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

/* close(): held bytes leave with the FIN when close() is about to go ahead
 * (open, not closing: a transport holding bytes is in data_received, so
 * nothing but the thread check can stop it). */
static PyObject *
Stream_close(PLStream *self, PyObject *Py_UNUSED(ignored))
{
    if (self->held != NULL) {
        if (pl_loop_check_uv_thread(self->loop) < 0)
            return NULL;
        if (pl_stream_flush_held(self, !self->closing) < 0)
            return NULL;
    }
    return pl_uvh_close_meth((PyObject *)self, NULL);
}

/* abort() and _force_close(): what write() took had left on the stdlib's
 * transport; only what was queued is dropped. */
static PyObject *
Stream_abort(PLStream *self, PyObject *Py_UNUSED(ignored))
{
    if (self->held != NULL &&
        (pl_loop_check_uv_thread(self->loop) < 0 || pl_stream_flush_held(self, 0) < 0))
        return NULL;
    return pl_uvh_abort((PyObject *)self, NULL);
}

static PyObject *
Stream__force_close(PLStream *self, PyObject *exc)
{
    if (self->held != NULL &&
        (pl_loop_check_uv_thread(self->loop) < 0 || pl_stream_flush_held(self, 0) < 0))
        return NULL;
    return pl_uvh_force_close_meth((PyObject *)self, exc);
}

/* ---- open streams by fd -------------------------------------------------------- */

/* Every open stream transport by its fd, for loop._transports (pyloop/loop.py):
 * the stdlib registers each transport in a WeakValueDictionary, a Python
 * weak reference with its callback per connection; here it is a slot in an
 * array. Process-wide, as fds are: an entry answers only its own loop.
 * Borrowed: the entry goes before the transport's handle closes. */
static PLStream **pl_stream_fds;
static int pl_stream_fds_cap;

/* Room for fd in the table, made before libuv takes the fd, so that
 * registering an open transport cannot fail. 0, or -1 with MemoryError. */
static int
pl_stream_fds_reserve(int fd)
{
    if (fd < pl_stream_fds_cap)
        return 0;
    int cap = pl_stream_fds_cap > 0 ? pl_stream_fds_cap : 1024;
    while (cap <= fd)
        cap *= 2;
    PLStream **grown = PyMem_Realloc(pl_stream_fds, (size_t)cap * sizeof(*grown));
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memset(grown + pl_stream_fds_cap, 0, (size_t)(cap - pl_stream_fds_cap) * sizeof(*grown));
    pl_stream_fds = grown;
    pl_stream_fds_cap = cap;
    return 0;
}

/* fd < pl_stream_fds_cap (reserved). */
static void
pl_stream_fd_register(PLStream *t, int fd)
{
    pl_stream_fds[fd] = t;
    t->fd_slot = fd;
}

static void
pl_stream_fd_unregister(PLStream *t)
{
    /* Another transport may hold the number now (the fd was closed behind
     * libuv's back and reused): only its own entry is cleared. */
    if (t->fd_slot >= 0 && pl_stream_fds[t->fd_slot] == t)
        pl_stream_fds[t->fd_slot] = NULL;
    t->fd_slot = -1;
}

PyObject *
Loop__fd_transport(PLLoop *self, PyObject *fdobj)
{
    if (!PyLong_Check(fdobj))
        Py_RETURN_NONE;
    long fd = PyLong_AsLong(fdobj);
    if (fd == -1 && PyErr_Occurred()) {
        PyErr_Clear(); /* too large for an fd: none */
        Py_RETURN_NONE;
    }
    if (fd < 0 || fd >= pl_stream_fds_cap || pl_stream_fds[fd] == NULL ||
        pl_stream_fds[fd]->loop != self)
        Py_RETURN_NONE;
    return Py_NewRef((PyObject *)pl_stream_fds[fd]);
}

/* loop._set_fd_transport(fd, transport or None): the stdlib's sendfile takes
 * a transport out of loop._transports while sock_sendfile uses its fd, and
 * puts it back after. True when fd was a stream's of this loop (None) or the
 * transport is this loop's stream (a closed one is not kept: it uses no fd). */
PyObject *
Loop__set_fd_transport(PLLoop *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_set_fd_transport(fd, transport)");
        return NULL;
    }
    long fd = PyLong_Check(args[0]) ? PyLong_AsLong(args[0]) : -1;
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    PyObject *t = args[1];
    if (t == Py_None) {
        if (fd < 0 || fd >= pl_stream_fds_cap || pl_stream_fds[fd] == NULL ||
            pl_stream_fds[fd]->loop != self)
            Py_RETURN_FALSE;
        pl_stream_fd_unregister(pl_stream_fds[fd]);
        Py_RETURN_TRUE;
    }
    /* Not an fd a stream can have (the table doubles up to it): no. */
    if (fd < 0 || fd > INT_MAX / 4 || Py_TYPE(t) != (PyTypeObject *)pl_stream_tcp_type ||
        ((PLStream *)t)->loop != self)
        Py_RETURN_FALSE;
    if (((PLStream *)t)->state == PL_UVH_OPEN) {
        if (pl_stream_fds_reserve((int)fd) < 0)
            return NULL;
        pl_stream_fd_unregister((PLStream *)t);
        pl_stream_fd_register((PLStream *)t, (int)fd);
    }
    Py_RETURN_TRUE;
}

PyObject *
Loop__open_streams(PLLoop *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *list = PyList_New(0);
    for (PLUVHandle *h = self->uvh_open; list != NULL && h != NULL; h = h->open_next) {
        if (h->ops == &pl_stream_ops && ((PLStream *)h)->fd_slot >= 0 &&
            PyList_Append(list, (PyObject *)h) < 0)
            Py_CLEAR(list);
    }
    return list;
}

static int
pl_stream_close_handle(PLStream *self)
{
    if (self->state != PL_UVH_OPEN)
        return 0;
    if (self->in_alloc) {
        self->close_deferred = 1; /* the read callback closes it */
        return 0;
    }
    pl_stream_release_rbuf(self);
    pl_stream_fd_unregister(self);
    pl_uvh_close(PL_UVH(self));
    return 0;
}

void
pl_stream_discard(PLStream *t)
{
    pl_stream_server_forget(t);
    pl_stream_close_handle(t);
}

/* pl_uvh_ops: the references libuv holds besides the open handle's. */
static size_t
pl_stream_op_pending_refs(PLUVHandle *h)
{
    return ((PLStream *)h)->reqs;
}

/* What get_write_buffer_size() reports. */
static Py_ssize_t
pl_stream_op_write_size(PLUVHandle *h)
{
    return (Py_ssize_t)((PLStream *)h)->write_size;
}

static void
pl_stream_op_close_for_loop(PLUVHandle *h)
{
    PLStream *self = (PLStream *)h;
    /* The loop is closing under an open transport: no protocol callbacks
     * any more, just release the handle and the transport's self-reference. */
    self->closing = 1;
    self->reading = 0;
    if (!self->conn_lost)
        self->conn_lost = 1;
    pl_stream_server_forget(self);
    pl_stream_close_handle(self);
}

static PyObject *
Stream__call_connection_lost(PLStream *self, PyObject *exc)
{
    if (pl_loop_check_uv_thread(self->loop) < 0)
        return NULL;
    /* What connection_lost raised, held while the rest of the teardown runs
     * (it calls into Python too) and raised last. */
    PyObject *err = pl_uvh_call_lost(PL_UVH(self), exc);
    pl_stream_close_handle(self);
    /* as the stdlib's transport, once detached */
    PyObject *server = self->server;
    self->server = NULL;
    /* The protocol's bound methods too: the transport lives on until libuv's
     * close callback, which may be a loop run away (after run_until_complete
     * returned), and must not keep the protocol (an SSLProtocol with its
     * SSLContext) alive until then; the stdlib's transport drops it here. */
    Py_CLEAR(self->protocol);
    Py_CLEAR(self->data_received_meth);
    Py_CLEAR(self->get_buffer_meth);
    Py_CLEAR(self->buffer_updated_meth);
    pl_stream_fail_empty_waiter(self);
    PyObject *hr = Py_NewRef(Py_None);
    if (self->lost_hook != NULL) {
        /* Whatever connection_lost did, the server learns the client left. */
        PyObject *hook = self->lost_hook;
        self->lost_hook = NULL;
        Py_SETREF(hr, self->lost_hook_self ? PyObject_CallOneArg(hook, (PyObject *)self)
                                           : PyObject_CallNoArgs(hook));
        Py_DECREF(hook);
    }
    else if (self->server_counted && server != NULL) {
        self->server_counted = 0;
        int tracked = pl_stream_server_track(server, self, -1);
        if (tracked == 0) {
            /* what the server's own _detach says of it (its assertion) */
            PyObject *name = pl_uvh_name("_detach");
#if PY_VERSION_HEX >= 0x030D0000
            Py_SETREF(hr, name ? PyObject_CallMethodOneArg(server, name, (PyObject *)self) : NULL);
#else
            Py_SETREF(hr, name ? PyObject_CallMethodNoArgs(server, name) : NULL);
#endif
            Py_XDECREF(name);
        }
        else if (tracked < 0)
            Py_CLEAR(hr);
    }
    Py_XDECREF(server);
    return pl_uvh_lost_finish(PL_UVH(self), hr, err);
}

static PyObject *
Stream__make_empty_waiter(PLStream *self, PyObject *Py_UNUSED(ignored))
{
    if (self->empty_waiter != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Empty waiter is already set");
        return NULL;
    }
    if (self->held != NULL && pl_stream_flush_held(self, 0) < 0)
        return NULL;
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

static PyObject *
Stream_get_sock_fd(PLStream *self, void *Py_UNUSED(closure))
{
    uv_os_fd_t fd;
    if (self->uvh == NULL || self->state != PL_UVH_OPEN ||
        uv_fileno((uv_handle_t *)self->uvh, &fd) < 0)
        return PyLong_FromLong(-1);
    return PyLong_FromLong((long)fd);
}

static PyObject *
Stream__set_lost_hook(PLStream *self, PyObject *hook)
{
    if (hook != Py_None && !PyCallable_Check(hook)) {
        PyErr_SetString(PyExc_TypeError, "hook must be callable or None");
        return NULL;
    }
    Py_XSETREF(self->lost_hook, hook == Py_None ? NULL : Py_NewRef(hook));
    self->lost_hook_self = 0;
    Py_RETURN_NONE;
}

/* asyncio.base_events.Server keeps its connections: 3.11 and 3.12 count
 * them in `_active_count`, 3.13+ hold them in `_clients` (close_clients/
 * abort_clients reach them there). _attach adds one, _detach takes it off and
 * wakes wait_closed() once the last one left a closed server. Done here
 * without two Python calls per connection when the server is of that class
 * itself (a subclass may override the methods): on 3.11/3.12 on the count
 * attribute, on 3.13+ when `_clients` is pyloop's set (server.c, put there by
 * loop._start_serving), whose count of C-attached transports this moves;
 * those transports are found again by walking the loop's open handles, so a
 * connection costs no weak reference and no set slot. 1 when done, 0 when
 * the Python method must run (another class or set, or a state the method's
 * assertion refuses: it then raises as before), -1 with the error set. */
static int
pl_stream_server_track(PyObject *server, PLStream *t, int delta)
{
    static PyObject *server_type;
    (void)t;
    if (server_type == NULL) {
        PyObject *mod = PyImport_ImportModule("asyncio.base_events");
        server_type = mod ? PyObject_GetAttrString(mod, "Server") : NULL;
        Py_XDECREF(mod);
        if (server_type == NULL)
            return -1;
    }
    if (Py_TYPE(server) != (PyTypeObject *)server_type)
        return 0;
    PyObject *name = pl_uvh_name("_sockets");
    PyObject *sockets = name ? PyObject_GetAttr(server, name) : NULL;
    Py_XDECREF(name);
    if (sockets == NULL)
        return -1;
    PyObject *held = NULL; /* _active_count, or _clients */
    Py_ssize_t left = 0;
    int rc = 0;
    if (delta > 0 && sockets == Py_None)
        goto done;
#if PY_VERSION_HEX < 0x030D0000
    PyObject *count_name = pl_uvh_name("_active_count");
    held = count_name ? PyObject_GetAttr(server, count_name) : NULL;
    long n = held == NULL ? -1 : PyLong_CheckExact(held) ? PyLong_AsLong(held) : -2;
    if (n == -1 && (held == NULL || PyErr_Occurred()))
        rc = -1;
    else if (n >= 0 && !(delta < 0 && n == 0)) {
        PyObject *value = PyLong_FromLong(n + delta);
        rc = value == NULL || PyObject_SetAttr(server, count_name, value) < 0 ? -1 : 1;
        Py_XDECREF(value);
        left = n + delta;
    }
    Py_XDECREF(count_name);
#else
    name = pl_uvh_name("_clients");
    held = name ? PyObject_GetAttr(server, name) : NULL;
    Py_XDECREF(name);
    if (held == NULL)
        rc = -1;
    else if (pl_server_clients_count(held, delta) == 0) {
        left = pl_server_clients_len(held);
        rc = left < 0 ? -1 : 1;
    }
#endif
    if (rc == 1 && delta < 0 && left == 0 && sockets == Py_None) {
        name = pl_uvh_name("_wakeup");
        PyObject *r = name ? PyObject_CallMethodNoArgs(server, name) : NULL;
        Py_XDECREF(name);
        rc = r == NULL ? -1 : 1;
        Py_XDECREF(r);
    }
done:
    Py_XDECREF(held);
    Py_DECREF(sockets);
    return rc;
}

/* The server's `_clients` when it is pyloop's set (3.13+), else NULL; never
 * an error (it runs on teardown paths and in membership tests). */
static PyObject *
pl_stream_server_clients(PLStream *t)
{
#if PY_VERSION_HEX >= 0x030D0000
    if (!t->server_counted || t->server == NULL)
        return NULL;
    PyObject *exc = PyErr_GetRaisedException();
    PyObject *name = pl_uvh_name("_clients");
    PyObject *clients = name ? PyObject_GetAttr(t->server, name) : NULL;
    Py_XDECREF(name);
    if (clients != NULL && !pl_server_clients_check(clients))
        Py_CLEAR(clients);
    PyErr_Clear();
    PyErr_SetRaisedException(exc);
    return clients;
#else
    (void)t;
    return NULL;
#endif
}

/* A transport attached in C that will never reach connection_lost (the loop
 * closed under it, or its set-up failed) leaves its server's set now, as it
 * leaves the stdlib's WeakSet once it is freed; no wake-up, as there. */
static void
pl_stream_server_forget(PLStream *t)
{
    PyObject *clients = pl_stream_server_clients(t);
    if (clients == NULL)
        return;
    t->server_counted = 0;
    (void)pl_server_clients_count(clients, -1);
    Py_DECREF(clients);
}

int
pl_stream_server_member(PyObject *o, PyObject *clients)
{
    if (Py_TYPE(o) != (PyTypeObject *)pl_stream_tcp_type)
        return 0;
    PyObject *own = pl_stream_server_clients((PLStream *)o);
    Py_XDECREF(own);
    return own == clients;
}

PyObject *
pl_stream_server_members(PLLoop *loop, PyObject *clients, PyObject *into)
{
    /* Every transport attached in C sits in the loop's list of open handles
     * from before its attach until after its detach (libuv's close callback
     * unlinks it, a pass after connection_lost). */
    for (PLUVHandle *h = loop->uvh_open; h != NULL; h = h->open_next) {
        if (h->ops != &pl_stream_ops || !pl_stream_server_member((PyObject *)h, clients))
            continue;
        if ((PyList_Check(into) ? PyList_Append(into, (PyObject *)h) : PySet_Add(into, (PyObject *)h)) < 0)
            return NULL;
    }
    return into;
}

int
pl_stream_server_unlist(PyObject *o)
{
    /* The set's discard() on a transport attached in C: it leaves the set
     * now, and the server's own _detach runs after connection_lost, as the
     * stdlib's transport calls it whatever the set holds. */
    PLStream *t = (PLStream *)o;
    PyObject *clients = pl_stream_server_clients(t);
    if (clients == NULL)
        return 0;
    PyObject *detach = PyObject_GetAttrString(t->server, "_detach");
    if (detach != NULL) {
        t->server_counted = 0;
        (void)pl_server_clients_count(clients, -1);
        Py_XSETREF(t->lost_hook, detach);
        t->lost_hook_self = 1;
    }
    Py_DECREF(clients);
    return detach == NULL ? -1 : 1;
}

int
pl_stream_attach_server(PLStream *t, PyObject *server)
{
    int tracked = pl_stream_server_track(server, t, 1);
    if (tracked < 0)
        return -1;
    if (tracked) {
        Py_XSETREF(t->server, Py_NewRef(server));
        Py_CLEAR(t->lost_hook);
        t->server_counted = 1;
        return 0;
    }
    PyObject *detach = PyObject_GetAttrString(server, "_detach");
    if (detach == NULL)
        return -1;
#if PY_VERSION_HEX >= 0x030D0000
    /* 3.13+: the server keeps its clients (close_clients/abort_clients). */
    PyObject *r = PyObject_CallMethod(server, "_attach", "O", (PyObject *)t);
#else
    PyObject *r = PyObject_CallMethod(server, "_attach", NULL);
#endif
    if (r == NULL) {
        Py_DECREF(detach);
        return -1;
    }
    Py_DECREF(r);
    Py_XSETREF(t->server, Py_NewRef(server));
    Py_XSETREF(t->lost_hook, detach);
    t->lost_hook_self = PY_VERSION_HEX >= 0x030D0000;
    t->server_counted = 0;
    return 0;
}

/* transport._attach_server(server): the Python layer's way to the above. */
static PyObject *
Stream__attach_server(PLStream *self, PyObject *server)
{
    if (pl_stream_attach_server(self, server) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ---- the socket object, made on first use ------------------------------------ */

/* Give a transport accepted in C its socket object (and the TransportSocket
 * in `extra`), as the stdlib's transport has from the start. While open: a
 * socket object on the fd libuv owns, detached when the handle closes. Once
 * closed, libuv closed the fd (its number may be another file's by now): a
 * closed socket object of the same kind, as the stdlib's transport keeps. */
static int
pl_stream_make_sock(PLStream *self)
{
    static PyObject *trsock_type; /* asyncio.trsock.TransportSocket */
    static PyObject *key;         /* "socket" */
    if (self->lazy_fd < 0)
        return 0;
    /* Whoever asks may use the socket: what write() took goes first. */
    if (self->held != NULL && pl_stream_flush_held(self, 0) < 0)
        return -1;
    if (key == NULL && (key = PyUnicode_InternFromString("socket")) == NULL)
        return -1;
    PyObject *socket_type = pl_accept_socket_class();
    if (socket_type == NULL)
        return -1;
    if (trsock_type == NULL) {
        PyObject *mod = PyImport_ImportModule("asyncio.trsock");
        trsock_type = mod ? PyObject_GetAttrString(mod, "TransportSocket") : NULL;
        Py_XDECREF(mod);
        if (trsock_type == NULL)
            return -1;
    }
    int open = self->state == PL_UVH_OPEN;
    PyObject *sock = open ? PyObject_CallFunction(socket_type, "iiii", self->lazy_family,
                                                  self->lazy_type, self->lazy_proto,
                                                  self->lazy_fd)
                          : PyObject_CallFunction(socket_type, "iii", self->lazy_family,
                                                  self->lazy_type, self->lazy_proto);
    if (sock == NULL)
        return -1;
    /* The object's own flag too: its timeout reads 0.0 as the stdlib's. */
    PyObject *r = open ? PyObject_CallMethod(sock, "setblocking", "O", Py_False)
                       : PyObject_CallMethod(sock, "close", NULL);
    PyObject *wrapped = r ? PyObject_CallOneArg(trsock_type, sock) : NULL;
    Py_XDECREF(r);
    if (wrapped == NULL || (PyDict_Check(self->extra) &&
                            PyDict_SetDefault(self->extra, key, wrapped) == NULL)) {
        Py_XDECREF(wrapped);
        if (open) {
            /* libuv owns the fd: the failed object must not close it. */
            PyObject *d = PyObject_CallMethod(sock, "detach", NULL);
            Py_XDECREF(d);
        }
        Py_DECREF(sock);
        return -1;
    }
    Py_DECREF(wrapped);
    self->lazy_fd = -1;
    Py_XSETREF(self->sock, sock);
    return 0;
}

static PyObject *
Stream_get_sock(PLStream *self, void *closure)
{
    if (pl_stream_make_sock(self) < 0)
        return NULL;
    return pl_uvh_get_sock((PyObject *)self, closure);
}

/* `_extra`, the slot asyncio.BaseTransport declares: complete when read. */
static PyObject *
Stream_get_extra(PLStream *self, void *Py_UNUSED(closure))
{
    if (pl_stream_make_sock(self) < 0)
        return NULL;
    return Py_NewRef(self->extra);
}

static int
Stream_set_extra(PLStream *self, PyObject *value, void *Py_UNUSED(closure))
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete _extra");
        return -1;
    }
    if (pl_stream_make_sock(self) < 0)
        return -1;
    Py_SETREF(self->extra, Py_NewRef(value));
    return 0;
}

static PyObject *
Stream_get_extra_info(PLStream *self, PyObject *args, PyObject *kwds)
{
    if (self->lazy_fd >= 0) {
        PyObject *name = PyTuple_GET_SIZE(args) > 0 ? PyTuple_GET_ITEM(args, 0)
                         : kwds != NULL              ? PyDict_GetItemString(kwds, "name")
                                                     : NULL;
        if (name != NULL && PyUnicode_Check(name) &&
            PyUnicode_CompareWithASCIIString(name, "socket") == 0 && pl_stream_make_sock(self) < 0)
            return NULL;
    }
    return pl_uvh_get_extra_info((PyObject *)self, args, kwds);
}

/* ---- reading control, protocol, limits, extra ------------------------------ */

/* pl_uvh_ops reading control: see pl_uvh_pause_reading/resume_reading. */
#define pl_stream_op_pause pl_stream_op_stop_reading

static int
pl_stream_op_resume(PLUVHandle *h)
{
    PLStream *self = (PLStream *)h;
    if (self->eof_pending) {
        /* The EOF already read waits for us: hand it over, not a read. */
        return pl_stream_call_soon(self, "_deliver_eof", NULL);
    }
    return pl_stream_op_start_reading(h);
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
    self->raw_in = pl_uvh_raw_in_for(protocol);
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

/* ---- type ------------------------------------------------------------------- */

/* The stream's own references, which the base traverses and clears. */
static const Py_ssize_t pl_stream_fields[] = {
    offsetof(PLStream, data_received_meth), offsetof(PLStream, get_buffer_meth),
    offsetof(PLStream, buffer_updated_meth), offsetof(PLStream, lost_hook),
    offsetof(PLStream, empty_waiter), offsetof(PLStream, alloc_error), offsetof(PLStream, held),
    -1};

static void
pl_stream_op_release(PLUVHandle *h)
{
    pl_stream_release_rbuf((PLStream *)h);
    pl_stream_fd_unregister((PLStream *)h);
}

static PyMethodDef Stream_methods[] = {
    /* Before the base's: the first of a name is the one the type keeps. */
    {"get_extra_info", (PyCFunction)(void (*)(void))Stream_get_extra_info,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"close", (PyCFunction)Stream_close, METH_NOARGS, NULL},
    {"abort", (PyCFunction)Stream_abort, METH_NOARGS, NULL},
    {"_force_close", (PyCFunction)Stream__force_close, METH_O, NULL},
    PL_UVH_METHODS,
    {"write", (PyCFunction)Stream_write, METH_O, NULL},
    {"writelines", (PyCFunction)Stream_writelines, METH_O, NULL},
    {"write_eof", (PyCFunction)Stream_write_eof, METH_NOARGS, NULL},
    {"can_write_eof", (PyCFunction)Stream_can_write_eof, METH_NOARGS, NULL},
    {"set_protocol", (PyCFunction)Stream_set_protocol, METH_O, NULL},
    {"_call_connection_lost", (PyCFunction)Stream__call_connection_lost, METH_O, NULL},
    {"_set_lost_hook", (PyCFunction)Stream__set_lost_hook, METH_O, NULL},
    {"_attach_server", (PyCFunction)Stream__attach_server, METH_O, NULL},
    {"_deliver_eof", (PyCFunction)Stream__deliver_eof, METH_NOARGS, NULL},
    {"_make_empty_waiter", (PyCFunction)Stream__make_empty_waiter, METH_NOARGS, NULL},
    {"_reset_empty_waiter", (PyCFunction)Stream__reset_empty_waiter, METH_NOARGS, NULL},
    {NULL}
};

static PyGetSetDef Stream_getset[] = {
    {"_sock", (getter)Stream_get_sock, NULL, NULL, NULL},
    {"_extra", (getter)Stream_get_extra, (setter)Stream_set_extra, NULL, NULL},
    {"_sock_fd", (getter)Stream_get_sock_fd, NULL, NULL, NULL},
    {NULL}
};

static PyMemberDef Stream_members[] = {
    PL_UVH_MEMBERS,
    {NULL}
};

PL_UVH_TYPE_SPEC(Stream_tcp_spec, "pyloop._core.TCPTransport", PLStream, Stream_methods,
                 Stream_members, Stream_getset);

static const pl_uvh_ops pl_stream_ops = PL_UVH_OPS(stream);

int
pl_stream_init_types(PyObject *module)
{
    static const char *const bases[] = {"Transport", NULL};
    pl_stream_tcp_type = pl_uvh_make_type(module, &Stream_tcp_spec, bases, "TCPTransport");
    return pl_stream_tcp_type == NULL ? -1 : 0;
}

/* ---- creation ---------------------------------------------------------------- */

/* The transport on an open connected fd of `domain`: libuv's handle made,
 * the fd given to it, the transport open. NULL with the error set, the fd
 * then still the caller's. */
/* An accepted fd is non-blocking already (accept4 SOCK_NONBLOCK), and
 * uv_tcp_open() would still ask the kernel to make it so (ioctl FIONBIO, one
 * system call per connection). With the bundled libuv, whose internals are
 * pinned, the fd goes to what uv_tcp_open() calls after that ioctl; a system
 * libuv does not export it, and another pin falls back to uv_tcp_open() until
 * the two names below are checked against its src/unix/internal.h and
 * src/uv-common.h. */
#if defined(PL_LIBUV_BUNDLED) && UV_VERSION_HEX == 0x013200
#define PL_STREAM_OPEN_DIRECT 1
int uv__stream_open(uv_stream_t *stream, int fd, int flags);
int uv__fd_exists(uv_loop_t *loop, int fd);
#define PL_UV_HANDLE_READABLE_WRITABLE (0x00004000 | 0x00008000)
#else
#define PL_STREAM_OPEN_DIRECT 0
#endif

static int
pl_stream_tcp_open(uv_tcp_t *tcp, int fd, int nonblocking)
{
#if PL_STREAM_OPEN_DIRECT
    if (nonblocking) {
        /* uv_tcp_open's own check first (libuv's, called, not redone here):
         * libuv already watches this fd. */
        if (uv__fd_exists(tcp->loop, fd))
            return UV_EEXIST;
        return uv__stream_open((uv_stream_t *)tcp, fd, PL_UV_HANDLE_READABLE_WRITABLE);
    }
#else
    (void)nonblocking;
#endif
    return uv_tcp_open(tcp, (uv_os_sock_t)fd);
}

/* A transport on `fd`; `nonblocking`: the fd is known to be non-blocking. */
static PLStream *
pl_stream_open(PLLoop *loop, int fd, int domain, int nonblocking, PyObject *protocol,
               PyObject *extra, PyObject *context)
{
    union pl_stream_uvh {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } *uvh = NULL;
    PLStream *t = (PLStream *)pl_uvh_new((PyTypeObject *)pl_stream_tcp_type, loop,
                                         &pl_stream_ops, extra, context);
    if (t == NULL)
        return NULL;
    t->lazy_fd = t->fd_slot = -1; /* 0 is a descriptor */
    if (pl_stream_set_protocol(t, protocol) < 0)
        goto error;
    if (domain == AF_INET || domain == AF_INET6) {
        /* TCP_NODELAY, as the stdlib's _set_nodelay sets it on every stream
         * transport's socket (a non-TCP stream protocol refuses it: kept). */
        int one = 1;
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    if (pl_stream_fds_reserve(fd) < 0)
        goto error;
    uvh = PyMem_Malloc(sizeof(*uvh));
    if (uvh == NULL) {
        PyErr_NoMemory();
        goto error;
    }
    /* AF_UNIX sockets become libuv pipes, everything else TCP handles. */
    int err = domain == AF_UNIX ? uv_pipe_init(&loop->uv, &uvh->pipe, 0)
                                : uv_tcp_init(&loop->uv, &uvh->tcp);
    if (err < 0) {
        PyMem_Free(uvh);
        pl_error_set_uv(err);
        goto error;
    }
    pl_counters.handles_created++;
    pl_counters.transports_created[pl_counters_stream_kind(uvh)]++;
    err = domain == AF_UNIX ? uv_pipe_open(&uvh->pipe, (uv_file)fd)
                            : pl_stream_tcp_open(&uvh->tcp, fd, nonblocking);
    if (err < 0) {
        /* libuv did not take the fd: it stays with the caller. */
        pl_uvh_discard((uv_handle_t *)uvh);
        pl_error_set_uv(err);
        goto error;
    }
    pl_uvh_attach(PL_UVH(t), (uv_handle_t *)uvh);
    pl_stream_fd_register(t, fd);
    return t;

error:
    Py_DECREF(t);
    return NULL;
}

/* loop._new_stream_transport(sock, protocol, extra[, context]): wrap a
 * connected stream socket whose protocol callbacks run in `context` (None:
 * a copy of the current one). The Python layer schedules connection_made,
 * reading and the waiter, in the stdlib's order. libuv takes over the
 * socket's fd; the socket object is detached when the handle closes. */
PyObject *
Loop__new_stream_transport(PLLoop *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 3 && nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "_new_stream_transport(sock, protocol, extra, context=None)");
        return NULL;
    }
    PyObject *sock = args[0], *protocol = args[1], *extra = args[2];
    PyObject *context = nargs == 4 ? args[3] : NULL;
    if (pl_loop_check_closed(self) < 0 || pl_loop_check_uv_thread(self) < 0)
        return NULL;
    if (extra != Py_None && !PyDict_Check(extra)) {
        PyErr_SetString(PyExc_TypeError, "extra must be a dict or None");
        return NULL;
    }
    int fd = pl_uvh_sock_fd(sock);
    if (fd < 0)
        return NULL;
    int domain = AF_INET;
    socklen_t dlen = sizeof(domain);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &dlen) < 0) {
        pl_error_set_errno();
        return NULL;
    }
    PLStream *t = pl_stream_open(self, fd, domain, 0, protocol, extra, context);
    if (t != NULL)
        t->sock = Py_NewRef(sock);
    return (PyObject *)t;
}

PLStream *
pl_stream_new_fd(PLLoop *loop, int fd, int family, int type, int proto, PyObject *protocol,
                 PyObject *extra, PyObject *context)
{
    PLStream *t = pl_stream_open(loop, fd, family, 1, protocol, extra, context);
    if (t == NULL)
        return NULL;
    t->lazy_fd = fd;
    t->lazy_family = family;
    t->lazy_type = type;
    t->lazy_proto = proto;
    return t;
}
