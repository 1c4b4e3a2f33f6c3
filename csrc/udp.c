/* Datagram transports: asyncio.DatagramTransport implemented in C.
 *
 * Two backends behind one Python-visible type, with the semantics of the
 * stdlib's selector_events._SelectorDatagramTransport:
 * - AF_INET/AF_INET6: a uv_udp_t opened on the socket's fd. sendto() tries
 *   uv_udp_try_send first and queues the rest with uv_udp_send; each pending
 *   request owns references to its data and to the transport. The transport
 *   holds a reference to itself from the moment the handle is open until
 *   libuv's close callback ran, so libuv never points at freed memory.
 * - AF_UNIX: libuv's uv_udp_t refuses these sockets, so the transport reads
 *   and writes with the socket object's own methods, woken by the loop's own
 *   poller (_add_reader/_add_writer, as add_reader does). Registered Handles
 *   keep the transport alive while it waits.
 * No exception leaves a libuv callback: ordinary ones reach the loop's
 * exception handler, KeyboardInterrupt/SystemExit are stashed on the loop and
 * re-raised by run_forever. Lifetime, error routing, flow control and the
 * shared methods are the transport base's (uvhandle.c). */
#include "udp.h"
#include "errors.h"
#include "module.h"
#include "poll.h"
#include "sockaddr.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <structmember.h>
#include <sys/socket.h>

#define PL_UDP_MAX_SIZE (256 * 1024) /* as _SelectorTransport.max_size */
#define PL_UDP_MMSG_BUF (16 * 64 * 1024)
#define PL_UVH(s) ((PLUVHandle *)(s))

/* 3.13 counts 8 bytes of header per queued datagram and sends empty ones. */
#if PY_VERSION_HEX >= 0x030D0000
#define PL_UDP_HEADER_SIZE 8
#define PL_UDP_SEND_EMPTY 1
#else
#define PL_UDP_HEADER_SIZE 0
#define PL_UDP_SEND_EMPTY 0
#endif

PyObject *pl_udp_type;

typedef struct {
    uv_udp_send_t req;
    PLUdp *udp;       /* strong */
    PyObject *owner;  /* strong: the bytes object the buffer points into */
    Py_ssize_t size;  /* what it added to buffer_size */
} pl_udp_send_req;

/* ---- error routing --------------------------------------------------------- */

#define pl_udp_route_error(self, message) pl_uvh_report(PL_UVH(self), (message))

/* obj.meth(current exception[, message]), clearing it: the stdlib's
 * _fatal_error (report it unless it is the peer's OSError, drop the
 * transport) or protocol.error_received. -1 with the callee's exception set
 * when the call raised. */
static int
pl_udp_pass_exception(PyObject *obj, const char *meth, const char *message)
{
    PyObject *exc = pl_err_fetch();
    if (exc == NULL || obj == NULL) {
        Py_XDECREF(exc);
        return 0;
    }
    PyObject *r = message ? PyObject_CallMethod(obj, meth, "Os", exc, message)
                          : PyObject_CallMethod(obj, meth, "O", exc);
    Py_DECREF(exc);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* The base's _fatal_error policy; 0 (kept as an int for the callers that
 * chain it with calls that can fail). */
static int
pl_udp_fatal(PLUdp *self, const char *message)
{
    pl_uvh_fatal(PL_UVH(self), message);
    return 0;
}

/* The current exception came from a socket call made by sendto() or a
 * send/read callback: sort it as the stdlib's handlers do. Returns -1 with an
 * exception set when the caller must propagate it. */
static int
pl_udp_sort_exception(PLUdp *self, const char *fatal_message)
{
    if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) ||
        PyErr_ExceptionMatches(PyExc_SystemExit))
        return -1;
    if (PyErr_ExceptionMatches(PyExc_OSError))
        return pl_udp_pass_exception(self->protocol, "error_received", NULL);
    return pl_udp_fatal(self, fatal_message);
}

#define pl_udp_maybe_pause(self) pl_uvh_maybe_pause(PL_UVH(self), (self)->buffer_size)
#define pl_udp_maybe_resume(self) pl_uvh_maybe_resume(PL_UVH(self), (self)->buffer_size)

/* ---- addresses ------------------------------------------------------------- */

static socklen_t
pl_udp_sa_len(const struct sockaddr *sa)
{
    return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
}

/* The Python address of a received datagram, from the cache when the peer is
 * the previous one. New reference. */
static PyObject *
pl_udp_rx_addr(PLUdp *self, const struct sockaddr *sa)
{
    socklen_t len = pl_udp_sa_len(sa);
    if (self->rx_addr != NULL && memcmp(&self->rx_sa, sa, len) == 0)
        return Py_NewRef(self->rx_addr);
    PyObject *a = pl_sockaddr_to_py(sa, len);
    if (a != NULL) {
        Py_XSETREF(self->rx_addr, Py_NewRef(a));
        memset(&self->rx_sa, 0, sizeof(self->rx_sa));
        memcpy(&self->rx_sa, sa, len);
    }
    return a;
}

/* A numeric (host, port[, flowinfo, scope_id]) tuple into `ss`. 1 when
 * done, 0 when `addr` is not of that shape (the caller resolves it), -1 on
 * error. */
static int
pl_udp_addr_numeric(int family, PyObject *addr, struct sockaddr_storage *ss)
{
    if (!PyTuple_Check(addr))
        return 0;
    Py_ssize_t n = PyTuple_GET_SIZE(addr);
    if (n < 2 || n > (family == AF_INET6 ? 4 : 2))
        return 0;
    PyObject *host = PyTuple_GET_ITEM(addr, 0), *port = PyTuple_GET_ITEM(addr, 1);
    if (!PyUnicode_Check(host) || !PyLong_Check(port))
        return 0;
    for (Py_ssize_t i = 2; i < n; i++)
        if (!PyLong_Check(PyTuple_GET_ITEM(addr, i)))
            return 0;
    const char *h = PyUnicode_AsUTF8(host);
    if (h == NULL)
        return -1;
    long p = PyLong_AsLong(port);
    if (p == -1 && PyErr_Occurred())
        return -1;
    if (p < 0 || p > 65535) {
        PyErr_SetString(PyExc_OverflowError, "sendto(): port must be 0-65535.");
        return -1;
    }
    memset(ss, 0, sizeof(*ss));
    if (family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        if (inet_pton(AF_INET6, h, &s6->sin6_addr) != 1)
            return 0;
        unsigned long flow = n > 2 ? PyLong_AsUnsignedLong(PyTuple_GET_ITEM(addr, 2)) : 0;
        if (flow == (unsigned long)-1 && PyErr_Occurred())
            return -1;
        unsigned long scope = n > 3 ? PyLong_AsUnsignedLong(PyTuple_GET_ITEM(addr, 3)) : 0;
        if (scope == (unsigned long)-1 && PyErr_Occurred())
            return -1;
        if (flow > 0xfffff) {
            PyErr_SetString(PyExc_OverflowError, "sendto(): flowinfo must be 0-1048575.");
            return -1;
        }
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons((uint16_t)p);
        s6->sin6_flowinfo = htonl((uint32_t)flow);
        s6->sin6_scope_id = (uint32_t)scope;
        return 1;
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    if (inet_pton(AF_INET, h, &s4->sin_addr) != 1)
        return 0;
    s4->sin_family = AF_INET;
    s4->sin_port = htons((uint16_t)p);
    return 1;
}

/* Any address sock.sendto() accepts: numeric ones here, the rest (host
 * names, '', '<broadcast>', wrong types) through loop._udp_address, which
 * resolves them or raises what the socket module raises. */
static int
pl_udp_addr_from_py(PLUdp *self, PyObject *addr, struct sockaddr_storage *ss)
{
    if (addr == self->tx_addr) {
        *ss = self->tx_sa;
        return 0;
    }
    int rc = pl_udp_addr_numeric(self->family, addr, ss);
    if (rc > 0 && PyTuple_CheckExact(addr)) {
        Py_XSETREF(self->tx_addr, Py_NewRef(addr));
        self->tx_sa = *ss;
    }
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    PyObject *resolved = PyObject_CallMethod((PyObject *)self->loop, "_udp_address", "iO",
                                             self->family, addr);
    if (resolved == NULL)
        return -1;
    rc = pl_udp_addr_numeric(self->family, resolved, ss);
    Py_DECREF(resolved);
    if (rc == 0)
        PyErr_Format(PyExc_OSError, "cannot send to address %R", addr);
    return rc < 0 || rc == 0 ? -1 : 0;
}

/* ---- the socket ------------------------------------------------------------- */

static int
pl_udp_uv_usable(PLUdp *self)
{
    /* The loop's own close walk may have closed the handle behind us. */
    return self->state == PL_UVH_OPEN && self->uvh != NULL &&
           !uv_is_closing((uv_handle_t *)self->uvh);
}

/* libuv's handle owns the fd: once it was closed behind the transport's
 * back (os.close), what would have vanished quietly drops the transport
 * with OSError(EBADF) through _fatal_error, as the stdlib's socket calls
 * report it. 0 while the fd is open, 1 when dropped. */
static int
pl_udp_check_fd(PLUdp *self)
{
    if (!pl_udp_uv_usable(self) || self->conn_lost || pl_error_check_fd(self->fd) == 0)
        return 0;
    pl_uvh_fatal(PL_UVH(self), "Fatal error on datagram transport");
    return 1;
}

static int
pl_udp_op_check_fd(PLUVHandle *h)
{
    return pl_udp_check_fd((PLUdp *)h);
}

/* AF_UNIX: self.<attr>() when the socket is readable (writer 0) or
 * writable (writer 1), on the loop's own poller; attr NULL: stop watching. */
static int
pl_udp_watch(PLUdp *self, int writer, const char *attr)
{
    if (attr == NULL)
        return pl_poll_remove(self->loop, self->fd, writer);
    PyObject *cb = PyObject_GetAttrString((PyObject *)self, attr);
    if (cb == NULL)
        return -1;
    int rc = pl_poll_add(self->loop, self->fd, writer, cb);
    Py_DECREF(cb);
    return rc;
}

/* Release the socket: libuv closes its fd (the socket object is detached
 * first so it does not close the number again); an AF_UNIX socket is closed
 * by its object once the poller forgot it. */
static void
pl_udp_release_socket(PLUdp *self)
{
    if (self->state != PL_UVH_OPEN)
        return;
    self->reading = 0;
    Py_CLEAR(self->backlog); /* unread once closed, as the stdlib leaves them */
    if (self->uvh == NULL) {
        self->state = PL_UVH_CLOSED;
        if (pl_udp_watch(self, 0, NULL) < 0 ||
            pl_udp_watch(self, 1, NULL) < 0)
            PyErr_Clear();
        self->writing = 0;
        PyObject *r = PyObject_CallMethod(self->sock, "close", NULL);
        if (r == NULL)
            PyErr_WriteUnraisable((PyObject *)self);
        Py_XDECREF(r);
        return;
    }
    pl_uvh_close(PL_UVH(self));
}

/* ---- reading ------------------------------------------------------------------ */

static void pl_udp_op_stop_reading(PLUVHandle *h);

static void
pl__udp_alloc_cb(uv_handle_t *handle, size_t suggested, uv_buf_t *buf)
{
    pl_loop_gil_ensure(handle->loop);
    PLUdp *self = (PLUdp *)handle->data;
    (void)suggested;
    buf->base = NULL;
    buf->len = 0;
    if (self->loop->udp_buf == NULL)
        self->loop->udp_buf = PyMem_Malloc(PL_UDP_MMSG_BUF);
    if (self->loop->udp_buf == NULL)
        return; /* libuv reports UV_ENOBUFS */
    buf->base = self->loop->udp_buf;
    buf->len = PL_UDP_MMSG_BUF;
}

static int
pl_udp_deliver(PLUdp *self, PyObject *data, PyObject *addr)
{
    PyObject *stack[3] = {self->protocol, data, addr};
    PyObject *r = PyObject_VectorcallMethod(pl_state.str_datagram_received, stack,
                                            3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* One received datagram, copied out of the shared buffer: delivered now, or
 * kept in the backlog while reading is paused (or older ones wait there). */
static int
pl_udp_receive(PLUdp *self, const char *base, ssize_t nread, const struct sockaddr *addr)
{
    PyObject *data = pl_loop_bytes_take(self->loop, base, nread);
    PyObject *pyaddr = data == NULL ? NULL
                       : addr ? pl_udp_rx_addr(self, addr)
                              : Py_NewRef(Py_None); /* libuv always gives one; be safe */
    int rc;
    if (pyaddr == NULL) {
        rc = pl_udp_fatal(self, "Fatal read error on datagram transport");
    }
    else if (self->paused || self->backlog != NULL) {
        if (self->backlog == NULL)
            self->backlog = PyList_New(0);
        PyObject *item = self->backlog ? PyTuple_Pack(2, data, pyaddr) : NULL;
        rc = item != NULL && PyList_Append(self->backlog, item) == 0 ? 0 : -1;
        Py_XDECREF(item);
    }
    else {
        rc = pl_udp_deliver(self, data, pyaddr);
    }
    if (data != NULL)
        pl_loop_bytes_give_back(self->loop, data);
    Py_XDECREF(pyaddr);
    return rc;
}

static void
pl__udp_recv_cb(uv_udp_t *handle, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                unsigned flags)
{
    pl_loop_gil_ensure(handle->loop);
    PLUdp *self = (PLUdp *)handle->data;
    /* The handle reads with recvmmsg: each datagram of a batch comes as a
     * UV_UDP_MMSG_CHUNK call, then one UV_UDP_MMSG_FREE call ends the batch.
     * libuv drops the rest of a batch once receiving stops, so a pause asked
     * for inside a batch stops receiving only here, at its end, and the
     * datagrams read meanwhile wait in the backlog. UV_UDP_PARTIAL: truncated
     * to the chunk size (64 KiB, more than any IP datagram). */
    if (flags & UV_UDP_MMSG_FREE) {
        self->in_batch = 0;
        if (self->stop_deferred) {
            self->stop_deferred = 0;
            pl_udp_op_stop_reading(PL_UVH(self));
        }
        return;
    }
    if (flags & UV_UDP_MMSG_CHUNK)
        self->in_batch = 1;
    if (self->conn_lost || self->closing || self->protocol == NULL)
        return;
    if (nread == 0 && addr == NULL)
        return; /* nothing more to read */
    Py_INCREF(self); /* protocol code may drop the last other reference */
    int entered = pl_uvh_enter(PL_UVH(self));
    int rc = 0;
    if (nread < 0) {
        if (nread == UV_ENOBUFS)
            PyErr_NoMemory();
        else
            pl_error_set_uv((int)nread);
        /* recvfrom() raising: error_received for an OSError (an ICMP error
         * queued on the socket, such as ECONNREFUSED), else fatal. */
        rc = pl_udp_sort_exception(self, "Fatal read error on datagram transport");
    }
    else {
        rc = pl_udp_receive(self, buf->base, nread, addr);
    }
    if (rc < 0)
        pl_udp_route_error(self, "Exception in datagram transport read callback");
    pl_uvh_exit(PL_UVH(self), entered);
    Py_DECREF(self);
}

/* loop.call_soon(self._deliver_backlog) after resume_reading(): the
 * datagrams kept while paused, oldest first, until one pauses again. */
static PyObject *
Udp__deliver_backlog(PLUdp *self, PyObject *Py_UNUSED(ignored))
{
    while (self->backlog != NULL && !self->paused && !self->conn_lost && !self->closing &&
           self->protocol != NULL) {
        PyObject *item = PyList_GET_ITEM(self->backlog, 0);
        Py_INCREF(item);
        if (PyList_SetSlice(self->backlog, 0, 1, NULL) < 0) {
            Py_DECREF(item);
            return NULL;
        }
        if (PyList_GET_SIZE(self->backlog) == 0)
            Py_CLEAR(self->backlog);
        int rc = pl_udp_deliver(self, PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1));
        Py_DECREF(item);
        if (rc < 0)
            pl_udp_route_error(self, "Exception in datagram transport read callback");
    }
    Py_RETURN_NONE;
}

static int
pl_udp_op_start_reading(PLUVHandle *h)
{
    PLUdp *self = (PLUdp *)h;
    if (self->reading || self->paused || self->closing || self->state != PL_UVH_OPEN)
        return 0;
    if (self->uvh == NULL) {
        if (pl_udp_watch(self, 0, "_read_ready") < 0)
            return -1;
        self->reading = 1;
        return 0;
    }
    if (!pl_udp_uv_usable(self))
        return 0;
    return pl_uvh_reading_started(
        PL_UVH(self), uv_udp_recv_start(self->uvh, pl__udp_alloc_cb, pl__udp_recv_cb));
}

static void
pl_udp_op_stop_reading(PLUVHandle *h)
{
    PLUdp *self = (PLUdp *)h;
    if (!self->reading)
        return;
    self->reading = 0;
    if (self->uvh == NULL) {
        if (pl_udp_watch(self, 0, NULL) < 0)
            PyErr_WriteUnraisable((PyObject *)self);
    }
    else if (pl_udp_uv_usable(self)) {
        uv_udp_recv_stop(self->uvh);
    }
}

/* AF_UNIX: the poller found the socket readable. */
static PyObject *
Udp__read_ready(PLUdp *self, PyObject *Py_UNUSED(ignored))
{
    if (pl_loop_check_uv_thread(self->loop) < 0)
        return NULL;
    if (self->conn_lost || self->state != PL_UVH_OPEN || self->protocol == NULL)
        Py_RETURN_NONE;
    PyObject *res = PyObject_CallMethod(self->sock, "recvfrom", "i", PL_UDP_MAX_SIZE);
    if (res == NULL) {
        if (PyErr_ExceptionMatches(PyExc_BlockingIOError) ||
            PyErr_ExceptionMatches(PyExc_InterruptedError)) {
            PyErr_Clear();
            Py_RETURN_NONE;
        }
        if (pl_udp_sort_exception(self, "Fatal read error on datagram transport") < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    Py_INCREF(self);
    int rc = 0;
    if (PyTuple_Check(res) && PyTuple_GET_SIZE(res) == 2)
        rc = pl_udp_deliver(self, PyTuple_GET_ITEM(res, 0), PyTuple_GET_ITEM(res, 1));
    Py_DECREF(res);
    Py_DECREF(self);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* ---- closing ------------------------------------------------------------------ */

static int
pl_udp_schedule_connection_lost(PLUdp *self, PyObject *exc)
{
    return pl_uvh_call_soon(PL_UVH(self), "_call_connection_lost", exc ? exc : Py_None);
}

/* Drop the transport with `exc` (NULL: none): queued datagrams are
 * discarded, connection_lost runs on the next loop pass. */
static int
pl_udp_force_close(PLUdp *self, PyObject *exc)
{
    if (self->conn_lost)
        return 0;
    if (self->pending) {
        /* libuv cancels its requests when the handle closes; they count
         * for nothing from now on. */
        self->buffer_size = 0;
        if (self->queue != NULL && PyList_SetSlice(self->queue, 0, PY_SSIZE_T_MAX, NULL) < 0)
            return -1;
        if (self->uvh == NULL)
            self->pending = 0;
        if (self->writing) {
            self->writing = 0;
            if (pl_udp_watch(self, 1, NULL) < 0)
                return -1;
        }
    }
    if (!self->closing) {
        self->closing = 1;
        pl_udp_op_stop_reading(PL_UVH(self));
    }
    self->conn_lost++;
    return pl_udp_schedule_connection_lost(self, exc);
}

static int
pl_udp_op_force_close(PLUVHandle *h, PyObject *exc)
{
    return pl_udp_force_close((PLUdp *)h, exc);
}

static PyObject *
Udp__call_connection_lost(PLUdp *self, PyObject *exc)
{
    PyObject *r = NULL;
    if (self->protocol_connected && self->protocol != NULL)
        r = PyObject_CallMethod(self->protocol, "connection_lost", "O", exc);
    else
        r = Py_NewRef(Py_None);
    /* As the stdlib's finally clause: whatever connection_lost did. */
    PyObject *saved = r == NULL ? pl_err_fetch() : NULL;
    pl_udp_release_socket(self);
    Py_CLEAR(self->protocol);
    Py_CLEAR(self->server);
    if (saved != NULL)
        pl_err_restore(saved);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_NONE;
}

/* Everything queued left (or failed): finish a pending close(). */
static int
pl_udp_on_drained(PLUdp *self)
{
    if (!self->closing || self->conn_lost || self->state != PL_UVH_OPEN)
        return 0;
    self->conn_lost++;
    PyObject *r = Udp__call_connection_lost(self, Py_None);
    Py_XDECREF(r);
    return r == NULL ? -1 : 0;
}

/* ---- writing --------------------------------------------------------------- */

static void
pl__udp_send_cb(uv_udp_send_t *ureq, int status)
{
    pl_loop_gil_ensure(ureq->handle->loop);
    pl_udp_send_req *req = (pl_udp_send_req *)ureq;
    PLUdp *self = req->udp;
    int entered = 0;
    self->pending--;
    if (!self->conn_lost)
        self->buffer_size -= req->size;
    Py_DECREF(req->owner);
    PyMem_Free(req);
    pl_counters.requests_freed++;
    if (status == UV_ECANCELED || self->conn_lost)
        goto done;
    entered = pl_uvh_enter(PL_UVH(self));
    int rc = 0;
    if (status < 0) {
        pl_error_set_uv(status);
        rc = pl_udp_sort_exception(self, "Fatal write error on datagram transport");
    }
    if (rc == 0)
        rc = pl_udp_maybe_resume(self);
    if (rc == 0 && self->pending == 0)
        rc = pl_udp_on_drained(self);
    if (rc < 0)
        pl_udp_route_error(self, "Exception in datagram transport send callback");
done:
    pl_uvh_exit(PL_UVH(self), entered);
    Py_DECREF(self);
}

/* Queue one datagram with libuv. `owner` is a bytes object. */
static int
pl_udp_uv_queue(PLUdp *self, PyObject *owner, const struct sockaddr *sa)
{
    pl_udp_send_req *req = PyMem_Malloc(sizeof(*req));
    if (req == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    uv_buf_t b = uv_buf_init(PyBytes_AS_STRING(owner), (unsigned int)PyBytes_GET_SIZE(owner));
    if (pl_uvh_req_started(req, uv_udp_send(&req->req, self->uvh, &b, 1, sa, pl__udp_send_cb)) < 0)
        return -1;
    /* libuv accepted the request: only now take the references it needs. */
    req->udp = (PLUdp *)Py_NewRef((PyObject *)self);
    req->owner = Py_NewRef(owner);
    req->size = PyBytes_GET_SIZE(owner) + PL_UDP_HEADER_SIZE;
    self->buffer_size += req->size;
    self->pending++;
    return 0;
}

/* sendto() on an IP socket: 0 when sent or queued, 1 when the socket said
 * EAGAIN-free "no" and the error is set for the caller to sort, -1 on an
 * error to propagate. */
static int
pl_udp_uv_sendto(PLUdp *self, PyObject *data, Py_buffer *view, PyObject *addr)
{
    struct sockaddr_storage ss;
    const struct sockaddr *sa = NULL;
    if (!self->connected) {
        /* None too: the socket module refuses it as sock.sendto() would. */
        if (pl_udp_addr_from_py(self, addr, &ss) < 0)
            return 1;
        sa = (const struct sockaddr *)&ss;
    }
    if (!pl_udp_uv_usable(self))
        return 0;
    if (self->pending > 0 && pl_error_check_fd(self->fd) < 0)
        return 1; /* nothing would try the socket: the datagram would wait forever */
    if (self->pending == 0) {
        uv_buf_t b = uv_buf_init(view->buf, (unsigned int)view->len);
        int n = uv_udp_try_send(self->uvh, &b, 1, sa);
        if (n >= 0)
            return 0;
        if (n != UV_EAGAIN) {
            pl_error_set_uv(n);
            return 1;
        }
    }
    /* Queue an immutable copy, as the stdlib does. */
    PyObject *owner = PyBytes_CheckExact(data)
                          ? Py_NewRef(data)
                          : PyBytes_FromStringAndSize(view->buf, view->len);
    if (owner == NULL)
        return 1;
    int rc = pl_udp_uv_queue(self, owner, sa);
    Py_DECREF(owner);
    return rc < 0 ? 1 : 0;
}

/* One datagram through the socket object (AF_UNIX): the call's result. */
static PyObject *
pl_udp_sock_send(PLUdp *self, PyObject *data, PyObject *addr)
{
    if (self->connected)
        return PyObject_CallMethod(self->sock, "send", "O", data);
    return PyObject_CallMethod(self->sock, "sendto", "OO", data, addr);
}

static int
pl_udp_sock_would_block(void)
{
    if (!PyErr_ExceptionMatches(PyExc_BlockingIOError) &&
        !PyErr_ExceptionMatches(PyExc_InterruptedError))
        return 0;
    PyErr_Clear();
    return 1;
}

/* sendto() on an AF_UNIX socket: same contract as pl_udp_uv_sendto. */
static int
pl_udp_poll_sendto(PLUdp *self, PyObject *data, Py_buffer *view, PyObject *addr)
{
    if (self->pending == 0) {
        PyObject *r = pl_udp_sock_send(self, data, addr);
        if (r != NULL) {
            Py_DECREF(r);
            return 0;
        }
        if (!pl_udp_sock_would_block())
            return 1;
        if (pl_udp_watch(self, 1, "_sendto_ready") < 0)
            return 1;
        self->writing = 1;
    }
    PyObject *item = Py_BuildValue("(y#O)", view->buf, view->len, addr);
    if (item == NULL)
        return 1;
    int rc = PyList_Append(self->queue, item);
    Py_DECREF(item);
    if (rc < 0)
        return 1;
    self->buffer_size += view->len + PL_UDP_HEADER_SIZE;
    self->pending++;
    return 0;
}

/* AF_UNIX: the poller found the socket writable. */
static PyObject *
Udp__sendto_ready(PLUdp *self, PyObject *Py_UNUSED(ignored))
{
    if (pl_loop_check_uv_thread(self->loop) < 0)
        return NULL;
    Py_INCREF(self);
    PyObject *ret = NULL;
    while (self->queue != NULL && PyList_GET_SIZE(self->queue) > 0) {
        PyObject *item = Py_NewRef(PyList_GET_ITEM(self->queue, 0));
        if (PyList_SetSlice(self->queue, 0, 1, NULL) < 0) {
            Py_DECREF(item);
            goto done;
        }
        self->pending--;
        Py_ssize_t size = PyBytes_GET_SIZE(PyTuple_GET_ITEM(item, 0)) + PL_UDP_HEADER_SIZE;
        self->buffer_size -= size;
        PyObject *r = pl_udp_sock_send(self, PyTuple_GET_ITEM(item, 0), PyTuple_GET_ITEM(item, 1));
        if (r == NULL && pl_udp_sock_would_block()) {
            /* Try again later. */
            int rc = PyList_Insert(self->queue, 0, item);
            Py_DECREF(item);
            if (rc < 0)
                goto done;
            self->pending++;
            self->buffer_size += size;
            break;
        }
        Py_DECREF(item);
        if (r == NULL) {
            if (pl_udp_sort_exception(self, "Fatal write error on datagram transport") == 0)
                ret = Py_NewRef(Py_None);
            goto done;
        }
        Py_DECREF(r);
    }
    if (pl_udp_maybe_resume(self) < 0) /* may append to the queue */
        goto done;
    if (self->pending == 0) {
        if (self->writing) {
            self->writing = 0;
            if (pl_udp_watch(self, 1, NULL) < 0)
                goto done;
        }
        if (pl_udp_on_drained(self) < 0)
            goto done;
    }
    ret = Py_NewRef(Py_None);
done:
    Py_DECREF(self);
    return ret;
}

/* sendto(data, addr=None)'s arguments: positional ones directly (the hot
 * case), anything else through PyArg_ParseTupleAndKeywords for its errors.
 * Borrowed references. */
static int
pl_udp_sendto_args(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                   PyObject **data, PyObject **addr)
{
    static char *kwlist[] = {"data", "addr", NULL};
    if (kwnames == NULL && nargs >= 1 && nargs <= 2) {
        *data = args[0];
        *addr = nargs == 2 ? args[1] : Py_None;
        return 0;
    }
    int rc = -1;
    Py_ssize_t nk = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    PyObject *tuple = PyTuple_New(nargs), *kwds = nk ? PyDict_New() : NULL;
    if (tuple == NULL || (nk && kwds == NULL))
        goto cleanup;
    for (Py_ssize_t i = 0; i < nargs; i++)
        PyTuple_SET_ITEM(tuple, i, Py_NewRef(args[i]));
    for (Py_ssize_t i = 0; i < nk; i++) {
        if (PyDict_SetItem(kwds, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0)
            goto cleanup;
    }
    *addr = Py_None;
    if (PyArg_ParseTupleAndKeywords(tuple, kwds, "O|O:sendto", kwlist, data, addr))
        rc = 0;
cleanup:
    /* The parsed objects stay alive: the caller's args and kwnames hold them. */
    Py_XDECREF(tuple);
    Py_XDECREF(kwds);
    return rc;
}

static PyObject *
Udp_sendto(PLUdp *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    if (pl_loop_check_uv_thread(self->loop) < 0)
        return NULL;
    PyObject *data, *addr;
    if (pl_udp_sendto_args(args, nargs, kwnames, &data, &addr) < 0)
        return NULL;
    if (!PyBytes_Check(data) && !PyByteArray_Check(data) && !PyMemoryView_Check(data)) {
        PyObject *name = PyType_GetName(Py_TYPE(data));
        if (name != NULL) {
            PyErr_Format(PyExc_TypeError, "data argument must be a bytes-like object, not %R",
                         name);
            Py_DECREF(name);
        }
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    PyObject *ret = NULL;
    if (view.len == 0 && !PL_UDP_SEND_EMPTY)
        goto sent;
    if (view.len > UINT_MAX) {
        errno = EMSGSIZE;
        pl_error_set_errno();
        goto sort;
    }
    if (self->address != NULL) {
        int same = addr == Py_None ? 1 : PyObject_RichCompareBool(addr, self->address, Py_EQ);
        if (same < 0)
            goto done;
        if (!same) {
            PyErr_Format(PyExc_ValueError, "Invalid address: must be None or %S", self->address);
            goto done;
        }
        addr = self->address;
    }
    if (self->conn_lost || self->state != PL_UVH_OPEN) {
        if (pl_uvh_lost_write(PL_UVH(self), "socket.send() raised exception.") < 0)
            goto done;
        goto sent;
    }
    int rc = self->uvh != NULL ? pl_udp_uv_sendto(self, data, &view, addr)
                               : pl_udp_poll_sendto(self, data, &view, addr);
    if (rc > 0)
        goto sort;
    if (rc < 0 || pl_udp_maybe_pause(self) < 0)
        goto done;
    goto sent;
sort:
    /* The socket (or the address) refused: error_received() for an
     * OSError, the stdlib's _fatal_error for anything else. */
    if (pl_udp_sort_exception(self, "Fatal write error on datagram transport") < 0)
        goto done;
sent:
    ret = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&view);
    return ret;
}

/* ---- methods ---------------------------------------------------------------- */

/* loop.close() with this transport still open: no protocol callbacks any
 * more, just release the socket (and the handle's self-reference). */
static PyObject *
Udp__close_for_loop(PLUdp *self, PyObject *Py_UNUSED(ignored))
{
    if (self->uvh == NULL)
        Py_RETURN_NONE; /* AF_UNIX: nothing of libuv's; the socket stays as the stdlib's */
    self->closing = 1;
    if (!self->conn_lost)
        self->conn_lost = 1;
    pl_udp_release_socket(self);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

/* pl_uvh_ops: each pending send request's reference (`pending` counts
 * libuv requests once a handle exists). */
static size_t
pl_udp_op_pending_refs(PLUVHandle *h)
{
    return ((PLUdp *)h)->pending;
}

/* What get_write_buffer_size() reports. */
static Py_ssize_t
pl_udp_op_write_size(PLUVHandle *h)
{
    return ((PLUdp *)h)->buffer_size;
}

static void
pl_udp_op_close_for_loop(PLUVHandle *h)
{
    PyObject *r = Udp__close_for_loop((PLUdp *)h, NULL);
    if (r == NULL)
        PyErr_WriteUnraisable((PyObject *)h);
    Py_XDECREF(r);
}

/* pl_uvh_ops reading control: see pl_uvh_pause_reading/resume_reading. */
static void
pl_udp_op_pause(PLUVHandle *h)
{
    PLUdp *self = (PLUdp *)h;
    if (self->in_batch)
        self->stop_deferred = 1; /* see pl__udp_recv_cb */
    else
        pl_udp_op_stop_reading(PL_UVH(self));
}

static int
pl_udp_op_resume(PLUVHandle *h)
{
    PLUdp *self = (PLUdp *)h;
    self->stop_deferred = 0;
    if (self->backlog != NULL && pl_uvh_call_soon(h, "_deliver_backlog", NULL) < 0)
        return -1;
    return pl_udp_op_start_reading(h);
}

static PyObject *
Udp_set_protocol(PLUdp *self, PyObject *protocol)
{
    Py_XSETREF(self->protocol, Py_NewRef(protocol));
    self->protocol_connected = 1;
    Py_RETURN_NONE;
}

/* ---- type ------------------------------------------------------------------- */

/* The endpoint's own references, which the base traverses and clears. */
static const Py_ssize_t pl_udp_fields[] = {
    offsetof(PLUdp, address), offsetof(PLUdp, rx_addr), offsetof(PLUdp, backlog),
    offsetof(PLUdp, tx_addr), offsetof(PLUdp, queue), -1};

#define pl_udp_op_release NULL

static const pl_uvh_ops pl_udp_ops = PL_UVH_OPS(udp);

/* Open a uv_udp_t on `fd`. uv_udp_open sets SO_REUSEADDR on the socket;
 * the user's setting is put back, since the stdlib leaves it alone. */
static int
pl_udp_open_uv(PLUdp *t, int fd)
{
    int reuse = 0;
    socklen_t rlen = sizeof(reuse);
    if (getsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, &rlen) < 0) {
        pl_error_set_errno();
        return -1;
    }
    uv_udp_t *uvh = PyMem_Malloc(sizeof(*uvh));
    if (uvh == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    int err = uv_udp_init_ex(&t->loop->uv, uvh, AF_UNSPEC | UV_UDP_RECVMMSG);
    if (err < 0) {
        PyMem_Free(uvh);
        pl_error_set_uv(err);
        return -1;
    }
    pl_counters.handles_created++;
    pl_counters.transports_created[PL_TRANSPORT_UDP]++;
    err = uv_udp_open(uvh, (uv_os_sock_t)fd);
    if (err < 0) {
        /* libuv did not take the fd: it stays with the socket object. */
        pl_uvh_discard((uv_handle_t *)uvh);
        pl_error_set_uv(err);
        return -1;
    }
    if (!reuse)
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof(reuse));
    t->uvh = uvh; /* attached (and on the loop's list) once the transport is complete */
    return 0;
}

/* UDPTransport._new(loop, sock, protocol, address, extra): wrap a datagram
 * socket. pyloop/loop.py's _make_datagram_transport schedules
 * connection_made, reading and the waiter, in the stdlib's order. */
static PyObject *
Udp__new(PyObject *Py_UNUSED(cls), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 5 && nargs != 6) {
        PyErr_SetString(PyExc_TypeError,
                        "_new(loop, sock, protocol, address, extra, context=None)");
        return NULL;
    }
    PyObject *loop = args[0], *sock = args[1], *protocol = args[2], *address = args[3],
             *extra = args[4], *context = nargs == 6 ? args[5] : NULL;
    if (!PyObject_TypeCheck(loop, &PLLoop_Type)) {
        PyErr_SetString(PyExc_TypeError, "loop must be a pyloop loop");
        return NULL;
    }
    if (pl_loop_check_uv_thread((PLLoop *)loop) < 0)
        return NULL;
    if (pl_loop_check_closed((PLLoop *)loop) < 0)
        return NULL;
    if (!PyDict_Check(extra)) {
        PyErr_SetString(PyExc_TypeError, "extra must be a dict");
        return NULL;
    }
    int fd = pl_uvh_sock_fd(sock);
    if (fd < 0)
        return NULL;
    int family = AF_INET, type = 0;
    socklen_t len = sizeof(family);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &family, &len) < 0)
        return pl_error_set_errno();
    len = sizeof(type);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
        return pl_error_set_errno();
    if (type != SOCK_DGRAM ||
        (family != AF_INET && family != AF_INET6 && family != AF_UNIX)) {
        PyErr_SetString(PyExc_ValueError, "a datagram socket (AF_INET, AF_INET6 or AF_UNIX) "
                                          "is required");
        return NULL;
    }
    PyObject *peer = PyDict_GetItemString(extra, "peername");
    int connected = peer != NULL ? PyObject_IsTrue(peer) : 0;
    if (connected < 0)
        return NULL;

    PLUdp *t = (PLUdp *)pl_uvh_new((PyTypeObject *)pl_udp_type, (PLLoop *)loop, &pl_udp_ops,
                                   extra, context);
    if (t == NULL)
        return NULL;
    t->protocol = Py_NewRef(protocol);
    t->protocol_connected = 1;
    t->fd = fd;
    t->family = family;
    t->connected = (char)connected;
    int truthy = PyObject_IsTrue(address); /* the stdlib tests `if self._address` */
    if (truthy < 0)
        goto error;
    t->address = truthy ? Py_NewRef(address) : NULL;
    if (family == AF_UNIX) {
        t->queue = PyList_New(0);
        if (t->queue == NULL)
            goto error;
    }
    else if (pl_udp_open_uv(t, fd) < 0) {
        goto error;
    }
    t->sock = Py_NewRef(sock);
    if (t->uvh != NULL)
        pl_uvh_attach(PL_UVH(t), (uv_handle_t *)t->uvh);
    else
        t->state = PL_UVH_OPEN; /* AF_UNIX: the loop's poller, no libuv handle */
    return (PyObject *)t;

error:
    Py_DECREF(t);
    return NULL;
}

static PyMethodDef Udp_methods[] = {
    PL_UVH_METHODS,
    {"sendto", PL_METH(Udp_sendto), METH_FASTCALL | METH_KEYWORDS, NULL},
    {"set_protocol", (PyCFunction)Udp_set_protocol, METH_O, NULL},
    {"_call_connection_lost", (PyCFunction)Udp__call_connection_lost, METH_O, NULL},
    {"_read_ready", (PyCFunction)Udp__read_ready, METH_NOARGS, NULL},
    {"_deliver_backlog", (PyCFunction)Udp__deliver_backlog, METH_NOARGS, NULL},
    {"_sendto_ready", (PyCFunction)Udp__sendto_ready, METH_NOARGS, NULL},
    {"_close_for_loop", (PyCFunction)Udp__close_for_loop, METH_NOARGS, NULL},
    {"_new", PL_METH(Udp__new), METH_FASTCALL | METH_STATIC, NULL},
    {NULL}
};

static PyGetSetDef Udp_getset[] = {
    PL_UVH_GETSET,
    {NULL}
};

static PyMemberDef Udp_members[] = {
    PL_UVH_MEMBERS,
    {"_address", T_OBJECT, offsetof(PLUdp, address), READONLY, NULL},
    {"_sock_fd", T_INT, offsetof(PLUdp, fd), READONLY, NULL},
    {NULL}
};

PL_UVH_TYPE_SPEC(Udp_spec, "pyloop._core.UDPTransport", PLUdp, Udp_methods, Udp_members,
                 Udp_getset);

int
pl_udp_init_types(PyObject *module)
{
    /* asyncio.Transport too, as the stdlib's datagram transport is one (and
     * CPython's tests check it). */
    static const char *const bases[] = {"Transport", "DatagramTransport", NULL};
    pl_udp_type = pl_uvh_make_type(module, &Udp_spec, bases, "UDPTransport");
    return pl_udp_type == NULL ? -1 : 0;
}
