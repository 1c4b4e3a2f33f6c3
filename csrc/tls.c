/* The data path of TLS connections: a C base class for pyloop/loop.py's
 * _SSLProtocol, which also derives from asyncio.sslproto.SSLProtocol.
 *
 * The stdlib's memory-BIO protocol stays in charge of everything that is not
 * per record: the handshake, shutdown, timeouts, errors, the app transport.
 * What runs for every record moves here: get_buffer/buffer_updated (records
 * into the incoming BIO), _do_read and both of its read steps, _write_appdata
 * and _do_write (app data through SSLObject.write), _process_outgoing
 * (records out to the C stream transport), both flow-control checks, and the
 * app transport's write(). In Python each HTTPS request walked about a dozen
 * frames of that code: callgrind put pyloop at 50,000 instructions per
 * request, 34,000 of them in libpython, against uvloop's 31,800; with this
 * file, 27,100, and 21,100 once the OpenSSL calls it makes went direct
 * (openssl.c; benchmarks/callgrind_net.py, docs/performance.md).
 *
 * The attributes those methods read (_state, _sslobj, _incoming, the flow
 * control flags and water marks...) are data descriptors on this type, so
 * the Python methods that remain assign them into this struct and the C
 * methods read them without a dictionary lookup. The semantics are the
 * stdlib's line by line; where a step is shortened (a write with nothing
 * queued does not go through the backlog deque, a read loop stops when no
 * bytes are left instead of raising SSLWantReadError) the result, the calls
 * made and the state left behind are the same. One difference is deliberate:
 * the buffered read step reads into the app's buffer itself (see
 * pl_tls_read_buffered). */
#include "tls.h"
#include "module.h"
#include "uvhandle.h"
#include "openssl.h"

#include <structmember.h>

typedef enum {
    PL_TLS_OTHER = 0, /* unset or not an SSLProtocolState member */
    PL_TLS_UNWRAPPED,
    PL_TLS_DO_HANDSHAKE,
    PL_TLS_WRAPPED,
    PL_TLS_FLUSHING,
    PL_TLS_SHUTDOWN,
    PL_TLS_NSTATES
} pl_tls_state;

/* A flow-control water mark: the object assigned (for the getter) and its
 * value as a double for the comparisons (exact for any int below 2**53). */
typedef struct {
    PyObject *obj;
    double value;
} pl_tls_mark;

enum { PL_TLS_IN_HIGH, PL_TLS_IN_LOW, PL_TLS_OUT_HIGH, PL_TLS_OUT_LOW, PL_TLS_NMARKS };

typedef struct {
    PyObject_HEAD
    PyObject *state;            /* _state */
    pl_tls_state state_code;
    PyObject *sslobj;           /* _sslobj: ssl.SSLObject */
    PyObject *reader;           /* the _ssl._SSLSocket inside it, or sslobj itself */
    PyObject *incoming;         /* _incoming: ssl.MemoryBIO */
    PyObject *outgoing;         /* _outgoing */
    PyObject *transport;        /* _transport: the C stream transport */
    PyObject *app_protocol;     /* _app_protocol */
    PyObject *loop;             /* _loop */
    PyObject *write_backlog;    /* _write_backlog: collections.deque */
    PyObject *ssl_buffer;       /* _ssl_buffer: bytearray */
    PyObject *ssl_buffer_view;  /* _ssl_buffer_view: memoryview of it */
    /* bound methods of the objects above, taken when they are assigned:
     * a call through one skips the method lookup by name */
    PyObject *m_reader_read, *m_reader_write, *m_reader_pending;
    PyObject *m_incoming_write, *m_outgoing_read, *m_transport_write;
    /* the OpenSSL objects inside incoming, outgoing and reader, called
     * directly (openssl.c); NULL: through their Python methods */
    pl_ossl_bio *in_bio, *out_bio;
    pl_ossl_ssl *ssl;
    /* reads and writes go to `ssl` directly too: its context has no
     * Python callback that could run during them (see pl_tls_quiet) */
    char ssl_rw;
    char ssl_quiet;
    Py_ssize_t write_buffer_size;
    Py_ssize_t conn_lost;
    char app_protocol_is_buffer;
    char ssl_writing_paused;
    char app_reading_paused;
    char ssl_reading_paused;
    char app_writing_paused;
    pl_tls_mark marks[PL_TLS_NMARKS];
} PLTLSProtocol;

/* Cached at type creation: the SSLProtocolState members, asyncio's
 * SSLAgainErrors, ssl.SSLObject, the stdlib's own copied read step (the
 * fallback for a loop that is not pyloop's), and interned method names. */
static PyObject *pl_tls_states[PL_TLS_NSTATES];
static PyObject *pl_tls_again_errors;
static PyObject *pl_tls_sslobject_type;
static PyObject *pl_tls_stdlib_read_copied;
static PyObject *pl_tls_s_read, *pl_tls_s_write, *pl_tls_s_pending, *pl_tls_s_append,
    *pl_tls_s_data_received, *pl_tls_s_max_size, *pl_tls_s_fatal_error,
    *pl_tls_s_do_handshake, *pl_tls_s_do_flush, *pl_tls_s_do_shutdown,
    *pl_tls_s_call_eof_received, *pl_tls_s_start_shutdown,
    *pl_tls_s_pause_writing, *pl_tls_s_resume_writing, *pl_tls_s_pause_reading,
    *pl_tls_s_resume_reading, *pl_tls_s_app_transport, *pl_tls_s_call_exception_handler;
static PyObject *pl_tls_msg_fatal; /* "Fatal error on SSL protocol" */
static PyObject *pl_tls_s_ssl_protocol, *pl_tls_s_write_appdata;
static PyTypeObject *pl_tls_type;

#define PL_TLS_LOG_THRESHOLD_FOR_CONNLOST_WRITES 5 /* asyncio.constants */

/* obj.name(a1, a2) (trailing NULLs: fewer arguments), through `bound`, the
 * bound method cached for obj, when there is one. */
static PyObject *
pl_tls_invoke(PyObject *bound, PyObject *name, PyObject *obj, PyObject *a1, PyObject *a2)
{
    PyObject *stack[3] = {obj, a1, a2};
    size_t n = a1 == NULL ? 0 : a2 == NULL ? 1 : 2;
    if (bound == NULL)
        return PyObject_VectorcallMethod(name, stack, (n + 1) | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                         NULL);
    Py_INCREF(bound); /* the attribute may be reassigned during the call */
    PyObject *r = PyObject_Vectorcall(bound, stack + 1, n | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
    Py_DECREF(bound);
    return r;
}

/* Calls obj.name(arg) (no argument when NULL) and drops the result: 0, or
 * -1 with the error set. */
static int
pl_tls_call_void(PyObject *name, PyObject *obj, PyObject *arg)
{
    PyObject *r = pl_tls_invoke(NULL, name, obj, arg, NULL);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* bio.pending (a MemoryBIO of this protocol's), or -1 with the error set. */
static Py_ssize_t
pl_tls_pending_attr(PLTLSProtocol *self, PyObject *bio)
{
    pl_ossl_bio *direct = bio == NULL ? NULL
        : bio == self->incoming ? self->in_bio
        : bio == self->outgoing ? self->out_bio
        : NULL;
    if (direct != NULL) {
        size_t n = pl_ossl_bio_pending(direct);
        return n > (size_t)PY_SSIZE_T_MAX ? PY_SSIZE_T_MAX : (Py_ssize_t)n;
    }
    if (bio == NULL) {
        PyErr_SetString(PyExc_AttributeError, "TLS protocol has no BIO");
        return -1;
    }
    PyObject *n = PyObject_GetAttr(bio, pl_tls_s_pending);
    if (n == NULL)
        return -1;
    Py_ssize_t v = PyNumber_AsSsize_t(n, PyExc_OverflowError);
    Py_DECREF(n);
    return v;
}

/* The attribute the stdlib would fail on, as the AttributeError it raises. */
static int
pl_tls_require(PLTLSProtocol *self, PyObject *v, const char *name)
{
    if (v != NULL)
        return 0;
    PyErr_Format(PyExc_AttributeError, "'%.100s' object has no attribute '%s'",
                 Py_TYPE(self)->tp_name, name);
    return -1;
}

/* self._loop.call_soon(callback): the C helper on a pyloop loop, the
 * method on any other. 0, or -1 with the error set. */
static int
pl_tls_call_soon(PLTLSProtocol *self, PyObject *callback)
{
    if (callback == NULL || pl_tls_require(self, self->loop, "_loop") < 0)
        return -1;
    if (PyObject_TypeCheck(self->loop, &PLLoop_Type)) {
        PyObject *args = PyTuple_New(0);
        int rc = args ? pl_loop_call_soon_c((PLLoop *)self->loop, callback, args, NULL) : -1;
        Py_XDECREF(args);
        return rc;
    }
    PyObject *h = PyObject_CallMethod(self->loop, "call_soon", "O", callback);
    Py_XDECREF(h);
    return h == NULL ? -1 : 0;
}

/* ---- flow control ---------------------------------------------------- */

/* _outgoing.pending + _write_buffer_size, or -1 with the error set. */
static Py_ssize_t
pl_tls_write_buffer_size(PLTLSProtocol *self)
{
    Py_ssize_t pending = pl_tls_pending_attr(self, self->outgoing);
    if (pending < 0)
        return -1;
    return pending + self->write_buffer_size;
}

/* pause_writing()/resume_writing() on the app protocol: its exceptions go to
 * the loop's exception handler, except KeyboardInterrupt and SystemExit. */
static int
pl_tls_app_flow(PLTLSProtocol *self, PyObject *name, const char *message)
{
    PyObject *proto = Py_XNewRef(self->app_protocol);
    int rc = 0;
    if (pl_tls_require(self, proto, "_app_protocol") < 0)
        return -1;
    if (pl_tls_call_void(name, proto, NULL) == 0)
        goto done;
    if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) ||
        PyErr_ExceptionMatches(PyExc_SystemExit)) {
        rc = -1;
        goto done;
    }
    PyObject *exc = pl_err_fetch();
    PyObject *loop = Py_XNewRef(self->loop), *context = NULL;
    PyObject *app_transport = PyObject_GetAttr((PyObject *)self, pl_tls_s_app_transport);
    if (app_transport != NULL && pl_tls_require(self, loop, "_loop") == 0)
        context = Py_BuildValue("{sssOsOsO}", "message", message, "exception", exc, "transport",
                                app_transport, "protocol", (PyObject *)self);
    rc = context == NULL ? -1
        : pl_tls_call_void(pl_tls_s_call_exception_handler, loop, context);
    Py_XDECREF(context);
    Py_XDECREF(app_transport);
    Py_XDECREF(loop);
    Py_XDECREF(exc);
done:
    Py_DECREF(proto);
    return rc;
}

/* _control_app_writing */
static int
pl_tls_control_app_writing(PLTLSProtocol *self)
{
    Py_ssize_t size = pl_tls_write_buffer_size(self);
    if (size < 0)
        return -1;
    if ((double)size >= self->marks[PL_TLS_OUT_HIGH].value && !self->app_writing_paused) {
        self->app_writing_paused = 1;
        return pl_tls_app_flow(self, pl_tls_s_pause_writing, "protocol.pause_writing() failed");
    }
    if ((double)size <= self->marks[PL_TLS_OUT_LOW].value && self->app_writing_paused) {
        self->app_writing_paused = 0;
        return pl_tls_app_flow(self, pl_tls_s_resume_writing, "protocol.resume_writing() failed");
    }
    return 0;
}

/* _control_ssl_reading */
static int
pl_tls_control_ssl_reading(PLTLSProtocol *self)
{
    Py_ssize_t size = pl_tls_pending_attr(self, self->incoming);
    if (size < 0)
        return -1;
    PyObject *name;
    if ((double)size >= self->marks[PL_TLS_IN_HIGH].value && !self->ssl_reading_paused) {
        self->ssl_reading_paused = 1;
        name = pl_tls_s_pause_reading;
    }
    else if ((double)size <= self->marks[PL_TLS_IN_LOW].value && self->ssl_reading_paused) {
        self->ssl_reading_paused = 0;
        name = pl_tls_s_resume_reading;
    }
    else {
        return 0;
    }
    PyObject *transport = Py_XNewRef(self->transport);
    int rc = pl_tls_require(self, transport, "_transport") < 0 ? -1
        : pl_tls_call_void(name, transport, NULL);
    Py_XDECREF(transport);
    return rc;
}

/* ---- outgoing -------------------------------------------------------- */

/* _outgoing.read(): every byte of the outgoing BIO as bytes. */
static PyObject *
pl_tls_outgoing_read(PLTLSProtocol *self)
{
    if (self->out_bio != NULL) {
        size_t avail = pl_ossl_bio_pending(self->out_bio);
        int len = avail > INT_MAX ? INT_MAX : (int)avail; /* as _ssl */
        if (len == 0)
            return PyBytes_FromStringAndSize(NULL, 0); /* the empty singleton */
        PyObject *data = PyBytes_FromStringAndSize(NULL, len);
        if (data == NULL)
            return NULL;
        int got = pl_ossl_bio_read(self->out_bio, PyBytes_AS_STRING(data), len);
        if (got == len)
            return data;
        if (got > 0) {
            /* a short read, which a memory BIO never does: kept as _ssl */
            _PyBytes_Resize(&data, got);
            return data;
        }
        /* nothing was taken out: the Python method fails as _ssl does */
        Py_DECREF(data);
    }
    PyObject *outgoing = Py_NewRef(self->outgoing);
    PyObject *data = pl_tls_invoke(self->m_outgoing_read, pl_tls_s_read, outgoing, NULL, NULL);
    Py_DECREF(outgoing);
    return data;
}

/* _process_outgoing: the records the SSL object wrote, to the transport. */
static int
pl_tls_process_outgoing(PLTLSProtocol *self)
{
    if (!self->ssl_writing_paused) {
        if (pl_tls_require(self, self->outgoing, "_outgoing") < 0)
            return -1;
        PyObject *data = pl_tls_outgoing_read(self);
        if (data == NULL)
            return -1;
        Py_ssize_t n = PyObject_Size(data);
        int rc = n < 0 ? -1 : 0;
        if (n > 0) {
            PyObject *transport = Py_XNewRef(self->transport);
            /* None once connection_lost ran: the AttributeError is the
             * stdlib's too. */
            PyObject *r = pl_tls_require(self, transport, "_transport") < 0 ? NULL
                : pl_tls_invoke(self->m_transport_write, pl_tls_s_write, transport, data, NULL);
            rc = r == NULL ? -1 : 0;
            Py_XDECREF(r);
            Py_XDECREF(transport);
        }
        Py_DECREF(data);
        if (rc < 0)
            return -1;
    }
    return pl_tls_control_app_writing(self);
}

/* reader.write(data): the count written, 0 when the SSL object wants to
 * read first (SSLAgainErrors, swallowed), -1 on another error. */
static Py_ssize_t
pl_tls_ssl_write(PLTLSProtocol *self, PyObject *data, int *again)
{
    *again = 0;
    if (pl_tls_require(self, self->reader, "_sslobj") < 0)
        return -1;
    /* taken before the data's buffer is: a Python __buffer__ may replace
     * _sslobj, and the write still goes to this one, as in the stdlib
     * (whose self._sslobj.write is looked up first) */
    PyObject *reader = Py_NewRef(self->reader);
    PyObject *bound = Py_XNewRef(self->m_reader_write);
    pl_ossl_ssl *ssl = self->ssl_rw ? self->ssl : NULL; /* lives as long as reader */
    Py_ssize_t count = -1;
    if (ssl != NULL) {
        Py_buffer b;
        if (PyObject_GetBuffer(data, &b, PyBUF_SIMPLE) == 0) {
            /* empty or over INT_MAX: _ssl's own checks, through write() */
            if (b.len > 0 && b.len <= INT_MAX)
                count = pl_ossl_ssl_write(ssl, b.buf, (size_t)b.len);
            PyBuffer_Release(&b);
            if (count >= 0) {
                *again = count == 0;
                goto done;
            }
        }
        else {
            PyErr_Clear(); /* write() raises its own TypeError */
        }
    }
    PyObject *r = pl_tls_invoke(bound, pl_tls_s_write, reader, data, NULL);
    if (r == NULL) {
        if (PyErr_ExceptionMatches(pl_tls_again_errors)) {
            PyErr_Clear();
            *again = 1;
            count = 0;
        }
        goto done;
    }
    count = PyNumber_AsSsize_t(r, PyExc_OverflowError);
    Py_DECREF(r);
done:
    Py_XDECREF(bound);
    Py_DECREF(reader);
    return count;
}

/* _do_write: the backlog through the SSL object, then _process_outgoing. */
static int
pl_tls_do_write(PLTLSProtocol *self)
{
    if (pl_tls_require(self, self->write_backlog, "_write_backlog") < 0)
        return -1;
    PyObject *backlog = Py_NewRef(self->write_backlog);
    int rc = -1;
    for (;;) {
        int more = PyObject_IsTrue(backlog);
        if (more < 0)
            goto done;
        if (!more)
            break;
        PyObject *data = PySequence_GetItem(backlog, 0);
        if (data == NULL)
            goto done;
        int again;
        Py_ssize_t count = pl_tls_ssl_write(self, data, &again);
        Py_ssize_t data_len = count < 0 ? -1 : PyObject_Size(data);
        if (again || data_len < 0) {
            Py_DECREF(data);
            if (again)
                break;
            goto done;
        }
        if (count < data_len) {
            PyObject *rest = PySequence_GetSlice(data, count, PY_SSIZE_T_MAX);
            int set = rest == NULL ? -1 : PySequence_SetItem(backlog, 0, rest);
            Py_XDECREF(rest);
            Py_DECREF(data);
            if (set < 0)
                goto done;
            self->write_buffer_size -= count;
        }
        else {
            Py_DECREF(data);
            if (PySequence_DelItem(backlog, 0) < 0)
                goto done;
            self->write_buffer_size -= data_len;
        }
    }
    rc = pl_tls_process_outgoing(self);
done:
    Py_DECREF(backlog);
    return rc;
}

/* The stdlib's `except Exception as ex: self._fatal_error(ex, msg)` around
 * a step that failed: 0 when it was an Exception and _fatal_error returned,
 * -1 otherwise (BaseException propagates, as there). */
static int
pl_tls_fatal(PLTLSProtocol *self)
{
    if (!PyErr_ExceptionMatches(PyExc_Exception))
        return -1;
    PyObject *exc = pl_err_fetch();
    PyObject *r = pl_tls_invoke(NULL, pl_tls_s_fatal_error, (PyObject *)self, exc,
                                pl_tls_msg_fatal);
    Py_DECREF(exc);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

/* Appends to the backlog and counts it, as _write_appdata does per item. */
static int
pl_tls_backlog_append(PLTLSProtocol *self, PyObject *data, Py_ssize_t len)
{
    if (pl_tls_require(self, self->write_backlog, "_write_backlog") < 0)
        return -1;
    PyObject *backlog = Py_NewRef(self->write_backlog);
    int rc = pl_tls_call_void(pl_tls_s_append, backlog, data);
    Py_DECREF(backlog);
    if (rc < 0)
        return -1;
    if (len < 0 && (len = PyObject_Size(data)) < 0)
        return -1;
    self->write_buffer_size += len;
    return 0;
}

/* _write_appdata over n items; NULL with the error set (what the stdlib
 * raises out of it), else None. */
static PyObject *
pl_tls_write_items(PLTLSProtocol *self, PyObject *const *items, Py_ssize_t n)
{
    if (self->state_code == PL_TLS_FLUSHING || self->state_code == PL_TLS_SHUTDOWN ||
        self->state_code == PL_TLS_UNWRAPPED) {
        if (self->conn_lost >= PL_TLS_LOG_THRESHOLD_FOR_CONNLOST_WRITES) {
            PyObject *r = PyObject_CallMethod(pl_state.logger, "warning", "s",
                                              "SSL connection is closed");
            if (r == NULL)
                return NULL;
            Py_DECREF(r);
        }
        self->conn_lost += 1;
        Py_RETURN_NONE;
    }
    int rc = 0;
    int empty = 0;
    if (n == 1 && self->state_code == PL_TLS_WRAPPED && self->write_backlog != NULL) {
        /* not a sized backlog: the generic path fails as the stdlib does */
        Py_ssize_t queued = PyObject_Length(self->write_backlog);
        if (queued < 0)
            PyErr_Clear();
        empty = queued == 0;
    }
    if (empty) {
        /* Nothing queued: what _do_write would do with the backlog holding
         * only this item, without putting it there first. */
        PyObject *data = Py_NewRef(items[0]);
        Py_ssize_t len = PyObject_Size(data);
        int again = 0;
        Py_ssize_t count = len < 0 ? -1 : pl_tls_ssl_write(self, data, &again);
        if (len < 0) {
            rc = -1;
        }
        else if (count < 0) {
            /* the stdlib had queued it before the write failed */
            PyObject *exc = pl_err_fetch();
            rc = pl_tls_backlog_append(self, data, len);
            if (rc == 0)
                pl_err_restore(exc);
            else
                Py_XDECREF(exc);
            rc = -1;
        }
        else if (again || count < len) {
            PyObject *rest = again ? Py_NewRef(data)
                : PySequence_GetSlice(data, count, PY_SSIZE_T_MAX);
            rc = rest == NULL ? -1 : pl_tls_backlog_append(self, rest, len - count);
            Py_XDECREF(rest);
        }
        if (rc == 0)
            rc = pl_tls_process_outgoing(self);
        Py_DECREF(data);
    }
    else {
        for (Py_ssize_t i = 0; i < n && rc == 0; i++)
            rc = pl_tls_backlog_append(self, items[i], -1);
        if (rc < 0)
            return NULL; /* outside the stdlib's try, as there */
        if (self->state_code == PL_TLS_WRAPPED)
            rc = pl_tls_do_write(self);
    }
    if (rc < 0 && pl_tls_fatal(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
TLSProtocol_write_appdata(PLTLSProtocol *self, PyObject *list_of_data)
{
    PyObject *items = PySequence_Fast(list_of_data, "_write_appdata() expects an iterable");
    if (items == NULL)
        return NULL;
    PyObject *r = pl_tls_write_items(self, PySequence_Fast_ITEMS(items),
                                     PySequence_Fast_GET_SIZE(items));
    Py_DECREF(items);
    return r;
}

/* write(data) of pyloop's _SSLTransport (loop.py), bound to it as a method
 * (an instancemethod): the stdlib's _SSLProtocolTransport.write, and for a
 * TLSProtocol its _write_appdata of one item without the tuple. */
static PyObject *
pl_tls_transport_write(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "write() takes exactly one argument (%zd given)",
                     nargs - 1);
        return NULL;
    }
    PyObject *transport = args[0], *data = args[1];
    if (!PyBytes_Check(data) && !PyByteArray_Check(data) && !PyMemoryView_Check(data)) {
        PyObject *name = PyType_GetName(Py_TYPE(data)); /* type(data).__name__ */
        if (name != NULL)
            PyErr_Format(PyExc_TypeError, "data: expecting a bytes-like instance, got %U", name);
        Py_XDECREF(name);
        return NULL;
    }
    int nonempty = PyObject_IsTrue(data);
    if (nonempty <= 0)
        return nonempty < 0 ? NULL : Py_NewRef(Py_None);
    PyObject *proto = PyObject_GetAttr(transport, pl_tls_s_ssl_protocol);
    if (proto == NULL)
        return NULL;
    PyObject *r;
    if (PyObject_TypeCheck(proto, pl_tls_type)) {
        r = pl_tls_write_items((PLTLSProtocol *)proto, &data, 1);
    }
    else {
        PyObject *one = PyTuple_Pack(1, data);
        r = one == NULL ? NULL : pl_tls_invoke(NULL, pl_tls_s_write_appdata, proto, one, NULL);
        Py_XDECREF(one);
    }
    Py_DECREF(proto);
    return r;
}

static PyMethodDef pl_tls_transport_write_def = {
    "write", PL_METH(pl_tls_transport_write), METH_FASTCALL,
    "write(data)\n--\n\nWrite some data bytes to the transport (TLS records to the socket)."};

static PyObject *
TLSProtocol_do_write(PLTLSProtocol *self, PyObject *Py_UNUSED(ignored))
{
    if (pl_tls_do_write(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
TLSProtocol_process_outgoing(PLTLSProtocol *self, PyObject *Py_UNUSED(ignored))
{
    if (pl_tls_process_outgoing(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
TLSProtocol_control_app_writing(PLTLSProtocol *self, PyObject *Py_UNUSED(ignored))
{
    if (pl_tls_control_app_writing(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
TLSProtocol_control_ssl_reading(PLTLSProtocol *self, PyObject *Py_UNUSED(ignored))
{
    if (pl_tls_control_ssl_reading(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
TLSProtocol_get_write_buffer_size(PLTLSProtocol *self, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t n = pl_tls_write_buffer_size(self);
    return n < 0 && PyErr_Occurred() ? NULL : PyLong_FromSsize_t(n);
}

static PyObject *
TLSProtocol_get_read_buffer_size(PLTLSProtocol *self, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t n = pl_tls_pending_attr(self, self->incoming);
    return n < 0 ? NULL : PyLong_FromSsize_t(n);
}

/* ---- incoming -------------------------------------------------------- */

/* reader.read(len, memory at dst): the count read; 0 with *eof when
 * close_notify came, 0 without when OpenSSL wants more records first
 * (SSLAgainErrors, swallowed); -1 on another error. OpenSSL directly when it
 * can (openssl.c), else, and for every other outcome, through read(). */
static Py_ssize_t
pl_tls_ssl_read(PLTLSProtocol *self, PyObject *reader, char *dst, Py_ssize_t len, int *eof)
{
    *eof = 0;
    if (reader == self->reader && self->ssl_rw && len > 0 && len <= INT_MAX) {
        Py_ssize_t n = pl_ossl_ssl_read(self->ssl, dst, (size_t)len, eof);
        if (n >= 0)
            return n;
    }
    PyObject *size = PyLong_FromSsize_t(len);
    PyObject *into = size ? PyMemoryView_FromMemory(dst, len, PyBUF_WRITE) : NULL;
    PyObject *r = into ? pl_tls_invoke(self->m_reader_read, pl_tls_s_read, reader, size, into)
                       : NULL;
    /* only the read saw the view of dst, and it keeps no reference */
    Py_XDECREF(into);
    Py_XDECREF(size);
    if (r == NULL) {
        if (!PyErr_ExceptionMatches(pl_tls_again_errors))
            return -1;
        PyErr_Clear();
        return 0;
    }
    Py_ssize_t n = PyNumber_AsSsize_t(r, PyExc_OverflowError);
    Py_DECREF(r);
    if (n == 0)
        *eof = 1; /* read() returns no bytes for close_notify only */
    return n == -1 && PyErr_Occurred() ? -1 : n;
}

/* Bytes still buffered: in the incoming BIO (not yet decrypted) or in the SSL
 * object (decrypted, not yet read). -1 on error. */
static int
pl_tls_more(PLTLSProtocol *self, PyObject *reader, PyObject *incoming)
{
    Py_ssize_t n = pl_tls_pending_attr(self, incoming);
    if (n != 0)
        return n < 0 ? -1 : 1;
    if (reader == self->reader && self->ssl != NULL) {
        int count = pl_ossl_ssl_pending(self->ssl);
        if (count >= 0) /* never below: _ssl would raise for it */
            return count > 0;
    }
    PyObject *r = pl_tls_invoke(self->m_reader_pending, pl_tls_s_pending, reader, NULL, NULL);
    if (r == NULL)
        return -1;
    int more = PyObject_IsTrue(r);
    Py_DECREF(r);
    return more;
}

/* Drains the SSL object into the loop's buffer: the decrypted bytes (NULL
 * with no error when there were none) and *eof when close_notify came. The
 * stdlib reads max_size-sized bytes objects until SSLWantReadError: every
 * record cost a 256 KiB allocation shrunk to size and an exception. */
static PyObject *
pl_tls_read_plain(PLTLSProtocol *self, PLLoop *loop, PyObject *reader, PyObject *incoming,
                  int *eof)
{
    PyObject *first = NULL, *chunks = NULL, *result = NULL;
    *eof = 0;
    char *buf = pl_loop_read_buf(loop);
    if (buf == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    for (;;) {
        Py_ssize_t n = pl_tls_ssl_read(self, reader, buf, PL_LOOP_READ_BUF_SIZE, eof);
        if (n < 0 || n > PL_LOOP_READ_BUF_SIZE) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_SystemError, "SSLObject.read() returned a bad count");
            goto cleanup;
        }
        if (n == 0) /* close_notify (*eof), or nothing more to read */
            break;
        PyObject *chunk = first == NULL ? pl_loop_bytes_take(loop, buf, n)
            : PyBytes_FromStringAndSize(buf, n);
        if (chunk == NULL)
            goto cleanup;
        if (first == NULL) {
            first = chunk;
        }
        else {
            if (chunks == NULL && (chunks = PyList_New(0)) == NULL) {
                Py_DECREF(chunk);
                goto cleanup;
            }
            int rc = PyList_Append(chunks, chunk);
            Py_DECREF(chunk);
            if (rc < 0)
                goto cleanup;
        }
        int more = pl_tls_more(self, reader, incoming);
        if (more < 0)
            goto cleanup;
        if (!more)
            break;
    }
    if (chunks != NULL) {
        if (PyList_Insert(chunks, 0, first) < 0)
            goto cleanup;
        PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
        PyObject *joined = empty ? pl_bytes_join(empty, chunks) : NULL;
        Py_XDECREF(empty);
        if (joined == NULL)
            goto cleanup;
        Py_SETREF(first, joined);
    }
    result = first;
    first = NULL;

cleanup:
    Py_XDECREF(first);
    Py_XDECREF(chunks);
    return result;
}

/* _do_read__copied: decrypted data to data_received, close_notify to
 * eof_received and the shutdown. */
static int
pl_tls_read_copied(PLTLSProtocol *self)
{
    if (self->loop == NULL || !PyObject_TypeCheck(self->loop, &PLLoop_Type)) {
        /* not pyloop's loop: the stdlib's own step */
        PyObject *r = PyObject_CallOneArg(pl_tls_stdlib_read_copied, (PyObject *)self);
        Py_XDECREF(r);
        return r == NULL ? -1 : 0;
    }
    if (pl_tls_require(self, self->reader, "_sslobj") < 0 ||
        pl_tls_require(self, self->incoming, "_incoming") < 0)
        return -1;
    PLLoop *loop = (PLLoop *)Py_NewRef(self->loop);
    PyObject *reader = Py_NewRef(self->reader), *incoming = Py_NewRef(self->incoming);
    int eof, rc = -1;
    PyObject *data = pl_tls_read_plain(self, loop, reader, incoming, &eof);
    Py_DECREF(reader);
    Py_DECREF(incoming);
    if (data == NULL && PyErr_Occurred())
        goto done;
    if (data != NULL) {
        PyObject *proto = Py_XNewRef(self->app_protocol);
        int r = pl_tls_require(self, proto, "_app_protocol") < 0 ? -1
            : pl_tls_call_void(pl_tls_s_data_received, proto, data);
        Py_XDECREF(proto);
        pl_loop_bytes_give_back(loop, data);
        if (r < 0)
            goto done;
    }
    if (eof && (pl_tls_call_void(pl_tls_s_call_eof_received, (PyObject *)self, NULL) < 0 ||
                pl_tls_call_void(pl_tls_s_start_shutdown, (PyObject *)self, NULL) < 0))
        goto done;
    rc = 0;
done:
    Py_DECREF(loop);
    return rc;
}

static PyObject *
TLSProtocol_do_read_copied(PLTLSProtocol *self, PyObject *Py_UNUSED(ignored))
{
    if (pl_tls_read_copied(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* _do_read__buffered: decrypted data straight into the app protocol's
 * get_buffer() memory. The stdlib reads into `buf` and then `buf[offset:]`,
 * which for a bytearray is a copy: every read after the first is lost and
 * buffer_updated reports bytes that never arrived (python/cpython#156275).
 * Here every read goes into the buffer itself, at its offset. */
static int
pl_tls_read_buffered(PLTLSProtocol *self)
{
    PyObject *get_buffer = NULL, *updated = NULL, *buf = NULL, *reader = NULL, *n = NULL;
    Py_buffer view = {0};
    int held = 0, rc = -1;
    Py_ssize_t hint = pl_tls_pending_attr(self, self->incoming); /* _get_read_buffer_size() */
    if (hint < 0 || pl_tls_require(self, self->reader, "_sslobj") < 0)
        return -1;
    get_buffer = PyObject_GetAttrString((PyObject *)self, "_app_protocol_get_buffer");
    n = get_buffer ? PyLong_FromSsize_t(hint) : NULL;
    buf = n ? PyObject_CallOneArg(get_buffer, n) : NULL;
    if (buf == NULL)
        goto done;
    reader = Py_NewRef(self->reader);
    /* The stdlib reads len(buf) bytes (its TypeError for an object without
     * one) with SSLObject.read(len, buf). */
    Py_ssize_t wants = PyObject_Length(buf), offset = 0;
    if (wants < 0)
        goto done;
    if (PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE) < 0) {
        /* not writable memory: that read() refuses it, and its own error
         * (TypeError, worded by the running version) is the stdlib's */
        PyErr_Clear();
        Py_SETREF(n, PyLong_FromSsize_t(wants));
        PyObject *r = n ? pl_tls_invoke(self->m_reader_read, pl_tls_s_read, reader, n, buf)
                        : NULL;
        if (r != NULL) {
            Py_DECREF(r);
            PyErr_Format(PyExc_TypeError, "get_buffer() returned %.200s, not writable memory",
                         Py_TYPE(buf)->tp_name);
        }
        goto done;
    }
    held = 1;
    /* as _ssl's read() takes a length outside (0, len(memory)] */
    if (wants <= 0 || wants > view.len)
        wants = view.len;
    int eof = 0;
    for (;;) {
        Py_ssize_t count = pl_tls_ssl_read(self, reader, (char *)view.buf + offset, wants - offset, &eof);
        if (count < 0 && PyErr_Occurred())
            goto done;
        if (count <= 0)
            break;
        offset += count;
        if (offset >= wants) {
            /* full: the rest waits for the next pass, as in the stdlib */
            PyObject *again = PyObject_GetAttrString((PyObject *)self, "_do_read");
            int rc = pl_tls_call_soon(self, again);
            Py_XDECREF(again);
            if (rc < 0)
                goto done;
            break;
        }
    }
    /* the app may resize its buffer in buffer_updated: release it first */
    PyBuffer_Release(&view);
    held = 0;
    if (offset > 0) {
        updated = PyObject_GetAttrString((PyObject *)self, "_app_protocol_buffer_updated");
        PyObject *nbytes = updated ? PyLong_FromSsize_t(offset) : NULL;
        PyObject *r = nbytes ? PyObject_CallOneArg(updated, nbytes) : NULL;
        Py_XDECREF(nbytes);
        if (r == NULL)
            goto done;
        Py_DECREF(r);
    }
    if (eof && /* close_notify */
        (pl_tls_call_void(pl_tls_s_call_eof_received, (PyObject *)self, NULL) < 0 ||
         pl_tls_call_void(pl_tls_s_start_shutdown, (PyObject *)self, NULL) < 0))
        goto done;
    rc = 0;
done:
    if (held)
        PyBuffer_Release(&view);
    Py_XDECREF(reader);
    Py_XDECREF(updated);
    Py_XDECREF(buf);
    Py_XDECREF(n);
    Py_XDECREF(get_buffer);
    return rc;
}

static PyObject *
TLSProtocol_do_read_buffered(PLTLSProtocol *self, PyObject *Py_UNUSED(ignored))
{
    if (pl_tls_read_buffered(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* _do_read */
static int
pl_tls_do_read(PLTLSProtocol *self)
{
    if (self->state_code != PL_TLS_WRAPPED && self->state_code != PL_TLS_FLUSHING)
        return 0;
    int rc = 0;
    if (!self->app_reading_paused) {
        if (self->app_protocol_is_buffer)
            rc = pl_tls_read_buffered(self);
        else
            rc = pl_tls_read_copied(self);
        int queued = rc < 0 ? -1
            : pl_tls_require(self, self->write_backlog, "_write_backlog") < 0 ? -1
            : PyObject_IsTrue(self->write_backlog);
        rc = queued < 0 ? -1 : queued ? pl_tls_do_write(self) : pl_tls_process_outgoing(self);
    }
    if (rc == 0)
        rc = pl_tls_control_ssl_reading(self);
    if (rc < 0)
        return pl_tls_fatal(self);
    return 0;
}

static PyObject *
TLSProtocol_do_read(PLTLSProtocol *self, PyObject *Py_UNUSED(ignored))
{
    if (pl_tls_do_read(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
TLSProtocol_get_buffer(PLTLSProtocol *self, PyObject *arg)
{
    Py_ssize_t want = PyNumber_AsSsize_t(arg, PyExc_OverflowError);
    if (want == -1 && PyErr_Occurred())
        return NULL;
    PyObject *max_obj = PyObject_GetAttr((PyObject *)self, pl_tls_s_max_size);
    if (max_obj == NULL)
        return NULL;
    Py_ssize_t max_size = PyNumber_AsSsize_t(max_obj, PyExc_OverflowError);
    Py_DECREF(max_obj);
    if (max_size == -1 && PyErr_Occurred())
        return NULL;
    if (want <= 0 || want > max_size)
        want = max_size;
    Py_ssize_t have = self->ssl_buffer == NULL ? -1 : PyObject_Length(self->ssl_buffer);
    if (have < 0 && self->ssl_buffer != NULL)
        return NULL;
    if (have < want) {
        /* empty: the one _SSLProtocol.__init__ leaves (pyloop/loop.py); the
         * stdlib's would have been max_size from the start */
        if (have == 0)
            want = max_size;
        PyObject *buffer = PyByteArray_FromStringAndSize(NULL, want);
        PyObject *view = buffer ? PyMemoryView_FromObject(buffer) : NULL;
        if (view == NULL) {
            Py_XDECREF(buffer);
            return NULL;
        }
        if (want > 0)
            memset(PyByteArray_AS_STRING(buffer), 0, (size_t)want);
        Py_XSETREF(self->ssl_buffer, buffer);
        Py_XSETREF(self->ssl_buffer_view, view);
    }
    if (pl_tls_require(self, self->ssl_buffer_view, "_ssl_buffer_view") < 0)
        return NULL;
    return Py_NewRef(self->ssl_buffer_view);
}

/* incoming.write(chunk), stealing `chunk` (NULL: an error is set). */
static int
pl_tls_bio_write(PLTLSProtocol *self, PyObject *chunk)
{
    if (chunk == NULL)
        return -1;
    int rc = -1;
    if (pl_tls_require(self, self->incoming, "_incoming") == 0) {
        PyObject *incoming = Py_NewRef(self->incoming);
        PyObject *r = pl_tls_invoke(self->m_incoming_write, pl_tls_s_write, incoming, chunk, NULL);
        rc = r == NULL ? -1 : 0;
        Py_XDECREF(r);
        Py_DECREF(incoming);
    }
    Py_DECREF(chunk);
    return rc;
}

/* incoming.write(self._ssl_buffer_view[:nbytes]) */
static int
pl_tls_feed(PLTLSProtocol *self, PyObject *nbytes_obj)
{
    if (pl_tls_require(self, self->ssl_buffer_view, "_ssl_buffer_view") < 0 ||
        pl_tls_require(self, self->incoming, "_incoming") < 0)
        return -1;
    PyObject *chunk = NULL;
    Py_ssize_t nbytes = PyLong_Check(nbytes_obj) ? PyLong_AsSsize_t(nbytes_obj) : -1;
    PyErr_Clear();
    PyObject *buffer = self->ssl_buffer;
    if (buffer != NULL && PyByteArray_CheckExact(buffer) && nbytes >= 0 &&
        nbytes <= PyByteArray_GET_SIZE(buffer) && PyMemoryView_Check(self->ssl_buffer_view) &&
        PyMemoryView_GET_BUFFER(self->ssl_buffer_view)->buf == PyByteArray_AS_STRING(buffer)) {
        /* the view is of this bytearray (get_buffer made them together):
         * one read-only view of its first bytes, no slice object */
        chunk = PyMemoryView_FromMemory(PyByteArray_AS_STRING(buffer), nbytes, PyBUF_READ);
    }
    else {
        PyObject *slice = PySlice_New(NULL, nbytes_obj, NULL);
        chunk = slice ? PyObject_GetItem(self->ssl_buffer_view, slice) : NULL;
        Py_XDECREF(slice);
    }
    return pl_tls_bio_write(self, chunk);
}

/* What buffer_updated does once the bytes are in the incoming BIO. */
static int
pl_tls_dispatch(PLTLSProtocol *self)
{
    int rc = 0;
    switch (self->state_code) {
    case PL_TLS_DO_HANDSHAKE:
        rc = pl_tls_call_void(pl_tls_s_do_handshake, (PyObject *)self, NULL);
        break;
    case PL_TLS_WRAPPED:
        rc = pl_tls_do_read(self);
        break;
    case PL_TLS_FLUSHING:
        rc = pl_tls_call_void(pl_tls_s_do_flush, (PyObject *)self, NULL);
        break;
    case PL_TLS_SHUTDOWN:
        rc = pl_tls_call_void(pl_tls_s_do_shutdown, (PyObject *)self, NULL);
        break;
    default:
        break;
    }
    return rc;
}

static PyObject *
TLSProtocol_buffer_updated(PLTLSProtocol *self, PyObject *nbytes)
{
    if (pl_tls_feed(self, nbytes) < 0 || pl_tls_dispatch(self) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static int
pl_tls_is_plain(PyObject *protocol)
{
    if (pl_tls_type == NULL || !PyObject_TypeCheck(protocol, pl_tls_type))
        return 0;
    /* a subclass that overrides either keeps them */
    static const char *names[] = {"get_buffer", "buffer_updated"};
    for (int i = 0; i < 2; i++) {
        PyObject *mine = PyDict_GetItemString(pl_tls_type->tp_dict, names[i]);
        PyObject *theirs = PyObject_GetAttrString((PyObject *)Py_TYPE(protocol), names[i]);
        Py_XDECREF(theirs); /* only compared: the type holds it */
        if (theirs == NULL) {
            PyErr_Clear();
            return 0;
        }
        if (mine == NULL || theirs != mine)
            return 0;
    }
    return 1;
}

static int
pl_tls_data_in(PyObject *protocol, const char *buf, Py_ssize_t n)
{
    PLTLSProtocol *self = (PLTLSProtocol *)protocol;
    if (self->in_bio != NULL && n > 0 && n <= INT_MAX &&
        !pl_ossl_membio_eof_written(self->incoming)) {
        int put = pl_ossl_bio_write(self->in_bio, buf, (int)n);
        if (put == (int)n)
            return pl_tls_dispatch(self);
        if (put > 0) {
            /* a memory BIO takes all or nothing; the rest as below if not */
            buf += put;
            n -= put;
        }
    }
    /* read-only and seen by no Python code: MemoryBIO.write copies it */
    if (pl_tls_bio_write(self, PyMemoryView_FromMemory((char *)buf, n, PyBUF_READ)) < 0)
        return -1;
    return pl_tls_dispatch(self);
}

/* The stream transport's raw-bytes-in hook (uvhandle.h) for a plain
 * TLSProtocol: see pl_tls_is_plain. */
static pl_uvh_raw_in_fn
pl_tls_raw_in_probe(PyObject *protocol)
{
    return pl_tls_is_plain(protocol) ? pl_tls_data_in : NULL;
}

/* ---- attributes ------------------------------------------------------ */

static PyObject *
pl_tls_get_object(PyObject *v, const char *name)
{
    if (v == NULL) {
        PyErr_SetString(PyExc_AttributeError, name);
        return NULL;
    }
    return Py_NewRef(v);
}

static PyObject *
TLSProtocol_get_state(PLTLSProtocol *self, void *Py_UNUSED(closure))
{
    return pl_tls_get_object(self->state, "_state");
}

static int
TLSProtocol_set_state(PLTLSProtocol *self, PyObject *value, void *Py_UNUSED(closure))
{
    pl_tls_state code = PL_TLS_OTHER;
    for (int i = 1; value != NULL && i < PL_TLS_NSTATES; i++)
        if (value == pl_tls_states[i])
            code = (pl_tls_state)i;
    Py_XSETREF(self->state, Py_XNewRef(value));
    self->state_code = code;
    return 0;
}

/* *slot = obj.name when obj has it (a bound method), else NULL: the calls
 * then look the name up and fail as the stdlib does. Never raises. */
static void
pl_tls_bind(PyObject **slot, PyObject *obj, const char *name)
{
    PyObject *bound = NULL;
    if (obj != NULL && obj != Py_None && pl_getattr_optional(obj, name, &bound) < 0)
        PyErr_Clear();
    Py_XSETREF(*slot, bound);
}

/* The OpenSSL objects for direct calls, whenever one of their owners is
 * assigned: the pointers live exactly as long as the references held. */
static void
pl_tls_rebind_ossl(PLTLSProtocol *self)
{
    self->in_bio = pl_ossl_membio_get(self->incoming);
    self->out_bio = pl_ossl_membio_get(self->outgoing);
    self->ssl = pl_ossl_sslobj_get(self->reader, self->in_bio, self->out_bio);
    self->ssl_rw = self->ssl != NULL && self->ssl_quiet;
}

/* 1 when the SSL object's context calls no Python code while records are
 * read and written: no SSLContext._msg_callback (OpenSSL copies it into each
 * SSL object when it is made, so a later one does not reach this object) and
 * no keylog_filename. _ssl raises what such a callback raised from the
 * read() or write() it ran in; a direct call could not. Never raises. */
static int
pl_tls_quiet(PyObject *reader)
{
    PyObject *ctx = NULL, *cb = NULL, *keylog = NULL;
    int quiet = 0;
    if (reader == NULL || pl_getattr_optional(reader, "context", &ctx) <= 0 ||
        pl_getattr_optional(ctx, "_msg_callback", &cb) < 0 ||
        pl_getattr_optional(ctx, "keylog_filename", &keylog) < 0)
        goto done;
    quiet = (cb == NULL || cb == Py_None) && (keylog == NULL || keylog == Py_None);
done:
    if (PyErr_Occurred())
        PyErr_Clear();
    Py_XDECREF(keylog);
    Py_XDECREF(cb);
    Py_XDECREF(ctx);
    return quiet;
}

static PyObject *
TLSProtocol_get_sslobj(PLTLSProtocol *self, void *Py_UNUSED(closure))
{
    return pl_tls_get_object(self->sslobj, "_sslobj");
}

/* ssl.SSLObject's methods only forward to the _ssl object inside it: the C
 * methods call that one (a Python frame less per call). An SSLObject
 * subclass (SSLContext.sslobject_class) keeps its own methods. */
static int
TLSProtocol_set_sslobj(PLTLSProtocol *self, PyObject *value, void *Py_UNUSED(closure))
{
    PyObject *reader = Py_XNewRef(value);
    if (value != NULL && (PyObject *)Py_TYPE(value) == pl_tls_sslobject_type) {
        PyObject *inner = NULL;
        if (pl_getattr_optional(value, "_sslobj", &inner) < 0)
            PyErr_Clear();
        if (inner != NULL)
            Py_SETREF(reader, inner);
    }
    Py_XSETREF(self->sslobj, Py_XNewRef(value));
    Py_XSETREF(self->reader, reader);
    pl_tls_bind(&self->m_reader_read, reader, "read");
    pl_tls_bind(&self->m_reader_write, reader, "write");
    pl_tls_bind(&self->m_reader_pending, reader, "pending");
    self->ssl_quiet = (char)pl_tls_quiet(reader);
    pl_tls_rebind_ossl(self);
    return 0;
}

/* _incoming, _outgoing, _transport: the object and the bound method the
 * per-record path calls on it. */
#define PL_TLS_BOUND_ATTR(attr, field, method, after)                                   \
    static PyObject *TLSProtocol_get_##field(PLTLSProtocol *self, void *Py_UNUSED(c))   \
    {                                                                                   \
        return pl_tls_get_object(self->field, attr);                                    \
    }                                                                                   \
    static int TLSProtocol_set_##field(PLTLSProtocol *self, PyObject *value,            \
                                       void *Py_UNUSED(c))                              \
    {                                                                                   \
        Py_XSETREF(self->field, Py_XNewRef(value));                                     \
        pl_tls_bind(&self->m_##field##_##method, value, #method);                       \
        after;                                                                          \
        return 0;                                                                       \
    }

PL_TLS_BOUND_ATTR("_incoming", incoming, write, pl_tls_rebind_ossl(self))
PL_TLS_BOUND_ATTR("_outgoing", outgoing, read, pl_tls_rebind_ossl(self))
PL_TLS_BOUND_ATTR("_transport", transport, write, (void)0)

static PyObject *
TLSProtocol_get_mark(PLTLSProtocol *self, void *closure)
{
    pl_tls_mark *mark = &self->marks[(intptr_t)closure];
    return pl_tls_get_object(mark->obj, "water mark");
}

static int
TLSProtocol_set_mark(PLTLSProtocol *self, PyObject *value, void *closure)
{
    pl_tls_mark *mark = &self->marks[(intptr_t)closure];
    double v = 0.0;
    if (value != NULL) {
        v = PyFloat_AsDouble(value);
        if (v == -1.0 && PyErr_Occurred())
            return -1;
    }
    Py_XSETREF(mark->obj, Py_XNewRef(value));
    mark->value = v;
    return 0;
}

static PyGetSetDef TLSProtocol_getset[] = {
    {"_state", (getter)TLSProtocol_get_state, (setter)TLSProtocol_set_state, NULL, NULL},
    {"_sslobj", (getter)TLSProtocol_get_sslobj, (setter)TLSProtocol_set_sslobj, NULL, NULL},
    {"_incoming", (getter)TLSProtocol_get_incoming, (setter)TLSProtocol_set_incoming, NULL, NULL},
    {"_outgoing", (getter)TLSProtocol_get_outgoing, (setter)TLSProtocol_set_outgoing, NULL, NULL},
    {"_transport", (getter)TLSProtocol_get_transport, (setter)TLSProtocol_set_transport, NULL,
     NULL},
    {"_incoming_high_water", (getter)TLSProtocol_get_mark, (setter)TLSProtocol_set_mark, NULL,
     (void *)(intptr_t)PL_TLS_IN_HIGH},
    {"_incoming_low_water", (getter)TLSProtocol_get_mark, (setter)TLSProtocol_set_mark, NULL,
     (void *)(intptr_t)PL_TLS_IN_LOW},
    {"_outgoing_high_water", (getter)TLSProtocol_get_mark, (setter)TLSProtocol_set_mark, NULL,
     (void *)(intptr_t)PL_TLS_OUT_HIGH},
    {"_outgoing_low_water", (getter)TLSProtocol_get_mark, (setter)TLSProtocol_set_mark, NULL,
     (void *)(intptr_t)PL_TLS_OUT_LOW},
    {NULL}
};

#define PL_TLS_OBJ(name, field) {name, T_OBJECT_EX, offsetof(PLTLSProtocol, field), 0, NULL}
#define PL_TLS_FLAG(name, field) {name, T_BOOL, offsetof(PLTLSProtocol, field), 0, NULL}

static PyMemberDef TLSProtocol_members[] = {
    PL_TLS_OBJ("_app_protocol", app_protocol),
    PL_TLS_OBJ("_loop", loop),
    PL_TLS_OBJ("_write_backlog", write_backlog),
    PL_TLS_OBJ("_ssl_buffer", ssl_buffer),
    PL_TLS_OBJ("_ssl_buffer_view", ssl_buffer_view),
    {"_write_buffer_size", T_PYSSIZET, offsetof(PLTLSProtocol, write_buffer_size), 0, NULL},
    {"_conn_lost", T_PYSSIZET, offsetof(PLTLSProtocol, conn_lost), 0, NULL},
    PL_TLS_FLAG("_app_protocol_is_buffer", app_protocol_is_buffer),
    PL_TLS_FLAG("_ssl_writing_paused", ssl_writing_paused),
    PL_TLS_FLAG("_app_reading_paused", app_reading_paused),
    PL_TLS_FLAG("_ssl_reading_paused", ssl_reading_paused),
    PL_TLS_FLAG("_app_writing_paused", app_writing_paused),
    {NULL}
};

static PyMethodDef TLSProtocol_methods[] = {
    {"get_buffer", (PyCFunction)TLSProtocol_get_buffer, METH_O, NULL},
    {"buffer_updated", (PyCFunction)TLSProtocol_buffer_updated, METH_O, NULL},
    {"_do_read", (PyCFunction)TLSProtocol_do_read, METH_NOARGS, NULL},
    {"_do_read__copied", (PyCFunction)TLSProtocol_do_read_copied, METH_NOARGS, NULL},
    {"_do_read__buffered", (PyCFunction)TLSProtocol_do_read_buffered, METH_NOARGS, NULL},
    {"_write_appdata", (PyCFunction)TLSProtocol_write_appdata, METH_O, NULL},
    {"_do_write", (PyCFunction)TLSProtocol_do_write, METH_NOARGS, NULL},
    {"_process_outgoing", (PyCFunction)TLSProtocol_process_outgoing, METH_NOARGS, NULL},
    {"_control_app_writing", (PyCFunction)TLSProtocol_control_app_writing, METH_NOARGS, NULL},
    {"_control_ssl_reading", (PyCFunction)TLSProtocol_control_ssl_reading, METH_NOARGS, NULL},
    {"_get_write_buffer_size", (PyCFunction)TLSProtocol_get_write_buffer_size, METH_NOARGS,
     NULL},
    {"_get_read_buffer_size", (PyCFunction)TLSProtocol_get_read_buffer_size, METH_NOARGS, NULL},
    {NULL}
};

/* ---- type ------------------------------------------------------------ */

static int
TLSProtocol_traverse(PLTLSProtocol *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->state);
    Py_VISIT(self->sslobj);
    Py_VISIT(self->reader);
    Py_VISIT(self->incoming);
    Py_VISIT(self->outgoing);
    Py_VISIT(self->transport);
    Py_VISIT(self->app_protocol);
    Py_VISIT(self->loop);
    Py_VISIT(self->write_backlog);
    Py_VISIT(self->ssl_buffer);
    Py_VISIT(self->ssl_buffer_view);
    Py_VISIT(self->m_reader_read);
    Py_VISIT(self->m_reader_write);
    Py_VISIT(self->m_reader_pending);
    Py_VISIT(self->m_incoming_write);
    Py_VISIT(self->m_outgoing_read);
    Py_VISIT(self->m_transport_write);
    for (int i = 0; i < PL_TLS_NMARKS; i++)
        Py_VISIT(self->marks[i].obj);
    return 0;
}

static int
TLSProtocol_clear(PLTLSProtocol *self)
{
    Py_CLEAR(self->state);
    self->state_code = PL_TLS_OTHER;
    Py_CLEAR(self->sslobj);
    Py_CLEAR(self->reader);
    Py_CLEAR(self->incoming);
    Py_CLEAR(self->outgoing);
    Py_CLEAR(self->transport);
    Py_CLEAR(self->app_protocol);
    Py_CLEAR(self->loop);
    Py_CLEAR(self->write_backlog);
    Py_CLEAR(self->ssl_buffer_view);
    Py_CLEAR(self->ssl_buffer);
    Py_CLEAR(self->m_reader_read);
    Py_CLEAR(self->m_reader_write);
    Py_CLEAR(self->m_reader_pending);
    Py_CLEAR(self->m_incoming_write);
    Py_CLEAR(self->m_outgoing_read);
    Py_CLEAR(self->m_transport_write);
    pl_tls_rebind_ossl(self);
    for (int i = 0; i < PL_TLS_NMARKS; i++)
        Py_CLEAR(self->marks[i].obj);
    return 0;
}

/* A TLS protocol is made per TLS connection (ssl= or start_tls): the
 * counters' "tls" kind counts them. Arguments are for the Python __init__. */
static PyObject *
TLSProtocol_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kwds))
{
    PyObject *self = type->tp_alloc(type, 0);
    if (self != NULL)
        pl_counters.transports_created[PL_TRANSPORT_TLS]++;
    return self;
}

static void
TLSProtocol_dealloc(PLTLSProtocol *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    TLSProtocol_clear(self);
    tp->tp_free((PyObject *)self);
    Py_DECREF(tp);
    pl_counters.transports_freed[PL_TRANSPORT_TLS]++;
}

static PyType_Slot TLSProtocol_slots[] = {
    {Py_tp_new, TLSProtocol_new},
    {Py_tp_dealloc, TLSProtocol_dealloc},
    {Py_tp_traverse, TLSProtocol_traverse},
    {Py_tp_clear, TLSProtocol_clear},
    {Py_tp_methods, TLSProtocol_methods},
    {Py_tp_members, TLSProtocol_members},
    {Py_tp_getset, TLSProtocol_getset},
    {Py_tp_doc, "The per-record methods of asyncio.sslproto.SSLProtocol in C; "
                "a base of pyloop's TLS protocol, not usable alone."},
    {0, NULL}
};

static PyType_Spec TLSProtocol_spec = {
    .name = "pyloop._core.TLSProtocol",
    .basicsize = sizeof(PLTLSProtocol),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = TLSProtocol_slots,
};

static int
pl_tls_intern(PyObject **slot, const char *s)
{
    *slot = PyUnicode_InternFromString(s);
    return *slot == NULL ? -1 : 0;
}

int
pl_tls_init_type(PyObject *module)
{
    static const char *state_names[PL_TLS_NSTATES] = {
        NULL, "UNWRAPPED", "DO_HANDSHAKE", "WRAPPED", "FLUSHING", "SHUTDOWN"};
    PyObject *sslproto = NULL, *ssl = NULL, *states = NULL, *cls = NULL, *type = NULL;
    PyObject *write = NULL, *write_method = NULL;
    int rc = -1;
    if (pl_tls_intern(&pl_tls_s_read, "read") < 0 || pl_tls_intern(&pl_tls_s_write, "write") < 0 ||
        pl_tls_intern(&pl_tls_s_pending, "pending") < 0 ||
        pl_tls_intern(&pl_tls_s_append, "append") < 0 ||
        pl_tls_intern(&pl_tls_s_data_received, "data_received") < 0 ||
        pl_tls_intern(&pl_tls_s_max_size, "max_size") < 0 ||
        pl_tls_intern(&pl_tls_s_fatal_error, "_fatal_error") < 0 ||
        pl_tls_intern(&pl_tls_s_do_handshake, "_do_handshake") < 0 ||
        pl_tls_intern(&pl_tls_s_do_flush, "_do_flush") < 0 ||
        pl_tls_intern(&pl_tls_s_do_shutdown, "_do_shutdown") < 0 ||
        pl_tls_intern(&pl_tls_s_call_eof_received, "_call_eof_received") < 0 ||
        pl_tls_intern(&pl_tls_s_start_shutdown, "_start_shutdown") < 0 ||
        pl_tls_intern(&pl_tls_s_pause_writing, "pause_writing") < 0 ||
        pl_tls_intern(&pl_tls_s_resume_writing, "resume_writing") < 0 ||
        pl_tls_intern(&pl_tls_s_pause_reading, "pause_reading") < 0 ||
        pl_tls_intern(&pl_tls_s_resume_reading, "resume_reading") < 0 ||
        pl_tls_intern(&pl_tls_s_app_transport, "_app_transport") < 0 ||
        pl_tls_intern(&pl_tls_s_call_exception_handler, "call_exception_handler") < 0 ||
        pl_tls_intern(&pl_tls_msg_fatal, "Fatal error on SSL protocol") < 0 ||
        pl_tls_intern(&pl_tls_s_ssl_protocol, "_ssl_protocol") < 0 ||
        pl_tls_intern(&pl_tls_s_write_appdata, "_write_appdata") < 0)
        goto done;
    /* Python built without ssl: no TLS, no type (the stdlib raises for ssl=). */
    ssl = PyImport_ImportModule("ssl");
    if (ssl == NULL) {
        if (PyErr_ExceptionMatches(PyExc_ImportError)) {
            PyErr_Clear();
            rc = PyModule_AddObjectRef(module, "_tls_direct", Py_False);
        }
        goto done;
    }
    sslproto = PyImport_ImportModule("asyncio.sslproto");
    if (sslproto == NULL)
        goto done;
    states = PyObject_GetAttrString(sslproto, "SSLProtocolState");
    if (states == NULL)
        goto done;
    for (int i = 1; i < PL_TLS_NSTATES; i++)
        if ((pl_tls_states[i] = PyObject_GetAttrString(states, state_names[i])) == NULL)
            goto done;
    if ((pl_tls_again_errors = PyObject_GetAttrString(sslproto, "SSLAgainErrors")) == NULL ||
        (pl_tls_sslobject_type = PyObject_GetAttrString(ssl, "SSLObject")) == NULL ||
        (cls = PyObject_GetAttrString(sslproto, "SSLProtocol")) == NULL ||
        (pl_tls_stdlib_read_copied = PyObject_GetAttrString(cls, "_do_read__copied")) == NULL)
        goto done;
    type = PyType_FromSpec(&TLSProtocol_spec);
    if (type == NULL || PyModule_AddObjectRef(module, "TLSProtocol", type) < 0)
        goto done;
    pl_tls_type = (PyTypeObject *)type; /* the module holds it from here on */
    write = PyCFunction_New(&pl_tls_transport_write_def, NULL);
    write_method = write ? PyInstanceMethod_New(write) : NULL;
    if (write_method == NULL)
        goto done;
    if (PyModule_AddObjectRef(module, "_tls_transport_write", write_method) < 0 ||
        pl_ossl_init() < 0 ||
        PyModule_AddObjectRef(module, "_tls_direct", pl_ossl_enabled() ? Py_True : Py_False) < 0 ||
        pl_uvh_register_raw_in(pl_tls_raw_in_probe) < 0)
        goto done;
    rc = 0;
done:
    Py_XDECREF(write_method);
    Py_XDECREF(write);
    Py_XDECREF(type);
    Py_XDECREF(cls);
    Py_XDECREF(states);
    Py_XDECREF(sslproto);
    Py_XDECREF(ssl);
    return rc;
}
