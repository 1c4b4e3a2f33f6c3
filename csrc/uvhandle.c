/* The transport base (see uvhandle.h): lifetime of the libuv handle, the
 * loop's list of open handles, error routing, flow control, the context
 * protocol callbacks run in, and the methods every transport shares.
 *
 * Lifetime: a transport holds a reference to itself from pl_uvh_attach
 * until libuv's close callback ran, so libuv never points at freed memory;
 * the loop reaches every open one through its list (to close them with it,
 * and to show the collector what libuv holds), never through their kinds. */
#include "uvhandle.h"
#include "errors.h"
#include "module.h"

#include <math.h>
#include <structmember.h>

#define PL_LOG_THRESHOLD_FOR_CONNLOST_WRITES 5 /* as asyncio.constants */
#define PL_UVH_RAW_IN_MAX 4

/* ---- creation and the libuv handle ------------------------------------------ */

PyObject *
pl_uvh_make_type(PyObject *module, PyType_Spec *spec, const char *const *bases, const char *name)
{
    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL)
        return NULL;
    Py_ssize_t n = 0;
    while (bases[n] != NULL)
        n++;
    PyObject *tuple = PyTuple_New(n), *tp = NULL;
    for (Py_ssize_t i = 0; tuple != NULL && i < n; i++) {
        PyObject *base = PyObject_GetAttrString(asyncio, bases[i]);
        if (base == NULL)
            goto done;
        PyTuple_SET_ITEM(tuple, i, base);
        if (!PyType_Check(base) ||
            ((PyTypeObject *)base)->tp_basicsize != (Py_ssize_t)offsetof(PLUVHandle, loop)) {
            PyErr_Format(PyExc_RuntimeError,
                         "asyncio.%s's layout is not the one pyloop was built for", bases[i]);
            goto done;
        }
    }
    if (tuple != NULL)
        tp = PyType_FromSpecWithBases(spec, tuple);
done:
    Py_XDECREF(tuple);
    Py_DECREF(asyncio);
    if (tp == NULL)
        return NULL;
    if (PyModule_AddObjectRef(module, name, tp) < 0) {
        Py_DECREF(tp);
        return NULL;
    }
    return tp;
}

PLUVHandle *
pl_uvh_new(PyTypeObject *type, PLLoop *loop, const pl_uvh_ops *ops, PyObject *extra,
           PyObject *context)
{
    if (context != NULL && context != Py_None && !PyContext_CheckExact(context)) {
        PyErr_SetString(PyExc_TypeError, "context must be a contextvars.Context or None");
        return NULL;
    }
    PLUVHandle *h = (PLUVHandle *)type->tp_alloc(type, 0);
    if (h == NULL)
        return NULL;
    h->ops = ops;
    h->loop = (PLLoop *)Py_NewRef((PyObject *)loop);
    h->high_water = 64 * 1024; /* asyncio's defaults */
    h->low_water = 16 * 1024;
    h->extra = extra == NULL || extra == Py_None ? PyDict_New() : Py_NewRef(extra);
    h->context_given = context != NULL && context != Py_None;
    h->context = h->context_given ? Py_NewRef(context) : PyContext_CopyCurrent();
#if !PL_MANAGED_DICT
    h->dict = PyDict_New();
    if (h->dict == NULL) {
        Py_DECREF(h);
        return NULL;
    }
#endif
    if (h->extra == NULL || h->context == NULL) {
        Py_DECREF(h);
        return NULL;
    }
    return h;
}

PyObject *
pl_uvh_name(const char *name)
{
    /* Keyed by the literal's address: the callers pass string literals, a
     * handful of them, and a name made from a C string is a new string
     * object interned anew on every call (most of a cheap call's cost). */
    static struct {
        const char *key;
        PyObject *str;
    } cache[24];
    size_t i = 0;
    for (; i < sizeof(cache) / sizeof(cache[0]) && cache[i].key != NULL; i++) {
        if (cache[i].key == name)
            return Py_NewRef(cache[i].str);
    }
    PyObject *str = PyUnicode_InternFromString(name);
    if (str != NULL && i < sizeof(cache) / sizeof(cache[0])) {
        cache[i].key = name;
        cache[i].str = Py_NewRef(str); /* kept for the process */
    }
    return str;
}

int
pl_uvh_sock_fd(PyObject *sock)
{
    PyObject *name = pl_uvh_name("fileno");
    PyObject *fdobj = name ? PyObject_CallMethodNoArgs(sock, name) : NULL;
    Py_XDECREF(name);
    if (fdobj == NULL)
        return -1;
    long fd = PyLong_AsLong(fdobj);
    Py_DECREF(fdobj);
    if (fd == -1 && PyErr_Occurred())
        return -1;
    if (fd < 0 || fd > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "the socket is closed");
        return -1;
    }
    return (int)fd;
}

static void
pl_uvh_link(PLUVHandle *h)
{
    PLLoop *loop = h->loop;
    h->open_prev = NULL;
    h->open_next = loop->uvh_open;
    if (loop->uvh_open != NULL)
        loop->uvh_open->open_prev = h;
    loop->uvh_open = h;
}

static void
pl_uvh_unlink(PLUVHandle *h)
{
    if (h->open_prev != NULL)
        h->open_prev->open_next = h->open_next;
    else if (h->loop->uvh_open == h)
        h->loop->uvh_open = h->open_next;
    if (h->open_next != NULL)
        h->open_next->open_prev = h->open_prev;
    h->open_prev = h->open_next = NULL;
}

static void
pl__uvh_close_cb(uv_handle_t *handle)
{
    pl_loop_gil_ensure(handle->loop);
    PLUVHandle *h = (PLUVHandle *)handle->data;
    int kind = h != NULL && h->ops->counter_kind != NULL ? h->ops->counter_kind(h)
                                                          : (int)pl_counters_stream_kind(handle);
    pl_counters.transports_freed[kind]++; /* before the free */
    PyMem_Free(handle);
    pl_counters.handles_freed++;
    if (h == NULL)
        return; /* never attached: only the memory */
    pl_uvh_unlink(h);
    h->uvh = NULL;
    h->state = PL_UVH_CLOSED;
    Py_DECREF(h); /* the reference held while the handle was open */
}

void
pl_uvh_attach(PLUVHandle *h, uv_handle_t *uvh)
{
    uvh->data = h;
    h->uvh = uvh;
    h->state = PL_UVH_OPEN;
    Py_INCREF(h); /* held by the open handle until its close callback */
    pl_uvh_link(h);
}

void
pl_uvh_discard(uv_handle_t *uvh)
{
    uvh->data = NULL;
    uv_close(uvh, pl__uvh_close_cb);
}

void
pl_uvh_close(PLUVHandle *h)
{
    if (h->state != PL_UVH_OPEN || h->uvh == NULL)
        return;
    h->state = PL_UVH_CLOSING;
    /* libuv closes the fd: the Python socket object must not close it again. */
    if (h->sock != NULL) {
        PyObject *r = PyObject_CallMethod(h->sock, "detach", NULL);
        if (r == NULL)
            PyErr_Clear();
        Py_XDECREF(r);
    }
    uv_close((uv_handle_t *)h->uvh, pl__uvh_close_cb);
}

void
pl_uvh_close_all(PLLoop *loop)
{
    PLUVHandle *h = loop->uvh_open;
    while (h != NULL) {
        PLUVHandle *next = h->open_next; /* h leaves the list in its close callback */
        if (h->state == PL_UVH_OPEN)
            h->ops->close_for_loop(h);
        h = next;
    }
}

/* Those references are invisible to the collector otherwise: a loop dropped
 * without close() would keep every open transport (and through it the loop,
 * its sockets and queued data) alive for good. Visited from the loop, they
 * make the lot one cycle, freed once unreachable (the loop's finalizer
 * closes the handles), as the stdlib's transports are. */
int
pl_uvh_traverse_all(PLLoop *loop, visitproc visit, void *arg)
{
    for (PLUVHandle *h = loop->uvh_open; h != NULL; h = h->open_next) {
        Py_VISIT(h); /* the open handle's reference */
        size_t n = h->ops->pending_refs(h);
        for (size_t i = 0; i < n; i++)
            Py_VISIT(h);
    }
    return 0;
}

/* ---- the object --------------------------------------------------------------- */

int
pl_uvh_traverse(PyObject *self, visitproc visit, void *arg)
{
    PLUVHandle *h = (PLUVHandle *)self;
    Py_VISIT(Py_TYPE(h));
    Py_VISIT(h->extra);
    Py_VISIT((PyObject *)h->loop);
    Py_VISIT(h->protocol);
    Py_VISIT(h->sock);
    Py_VISIT(h->context);
    Py_VISIT(h->server);
    for (const Py_ssize_t *f = h->ops ? h->ops->fields : NULL; f != NULL && *f >= 0; f++)
        Py_VISIT(*(PyObject **)((char *)h + *f));
#if PL_MANAGED_DICT
    return pl_visit_managed_dict(self, visit, arg);
#else
    Py_VISIT(h->dict);
    return 0;
#endif
}

int
pl_uvh_clear(PyObject *self)
{
    PLUVHandle *h = (PLUVHandle *)self;
    if (h->ops != NULL && h->ops->release != NULL)
        h->ops->release(h);
    for (const Py_ssize_t *f = h->ops ? h->ops->fields : NULL; f != NULL && *f >= 0; f++)
        Py_CLEAR(*(PyObject **)((char *)h + *f));
    Py_CLEAR(h->extra);
    Py_CLEAR(h->protocol);
    Py_CLEAR(h->context);
    Py_CLEAR(h->server);
#if PL_MANAGED_DICT
    pl_clear_managed_dict(self);
#else
    Py_CLEAR(h->dict);
#endif
    /* loop and sock stay until dealloc: an open handle still needs them. */
    return 0;
}

/* close(), as the stdlib's transports: reading stops, and connection_lost
 * follows on the next pass once nothing is queued (else when the queue
 * drains). */
PyObject *
pl_uvh_close_meth(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    PLUVHandle *h = (PLUVHandle *)self;
    if (pl_loop_check_uv_thread(h->loop) < 0)
        return NULL;
    if (h->closing || h->state != PL_UVH_OPEN || h->ops->check_fd(h))
        Py_RETURN_NONE;
    h->closing = 1;
    h->ops->stop_reading(h);
    if (h->ops->write_size(h) == 0 && h->ops->force_close(h, NULL) < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyObject *
pl_uvh_repr(PyObject *self)
{
    PLUVHandle *h = (PLUVHandle *)self;
    const char *st = h->state == PL_UVH_OPEN ? (h->closing ? "closing" : "open") : "closed";
    return PyUnicode_FromFormat("<%s %s write_buffer=%zd>", Py_TYPE(h)->tp_name, st,
                                h->ops->write_size(h));
}

PyObject *
pl_uvh_tp_new(PyTypeObject *type, PyObject *Py_UNUSED(a), PyObject *Py_UNUSED(k))
{
    PyErr_Format(PyExc_TypeError, "cannot create '%s' instances directly", type->tp_name);
    return NULL;
}

void
pl_uvh_dealloc(PyObject *self)
{
    PLUVHandle *h = (PLUVHandle *)self;
    PyTypeObject *tp = Py_TYPE(h);
    PyObject_GC_UnTrack(h);
    if (h->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)h);
    tp->tp_clear(self);
    /* A socket no libuv handle took closes itself (with the socket
     * module's ResourceWarning when it was left open). */
    Py_CLEAR(h->sock);
    Py_CLEAR(h->loop);
    tp->tp_free((PyObject *)h);
    Py_DECREF(tp);
}

/* ---- scheduling --------------------------------------------------------------- */

int
pl_uvh_call_soon(PLUVHandle *h, const char *name, PyObject *arg)
{
    /* Looked up on the instance: a patched method is the one that runs. */
    PyObject *str = pl_uvh_name(name);
    PyObject *meth = str ? PyObject_GetAttr((PyObject *)h, str) : NULL;
    Py_XDECREF(str);
    if (meth == NULL)
        return -1;
    PyObject *args = arg != NULL ? PyTuple_Pack(1, arg) : PyTuple_New(0);
    int rc = args == NULL ? -1
                          : pl_loop_call_soon_c(h->loop, meth, args,
                                                h->context_given ? h->context : NULL);
    Py_XDECREF(args);
    Py_DECREF(meth);
    return rc;
}

/* ---- error routing ------------------------------------------------------------ */

static int
pl_uvh_stop_exception(void)
{
    return PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) ||
           PyErr_ExceptionMatches(PyExc_SystemExit);
}

/* loop.call_exception_handler({message, exception, transport, protocol}). */
static void
pl_uvh_call_handler(PLUVHandle *h, const char *message, PyObject *exc)
{
    PyObject *ctx = Py_BuildValue("{sssOsOsO}", "message", message, "exception", exc,
                                  "transport", (PyObject *)h, "protocol",
                                  h->protocol ? h->protocol : Py_None);
    PyObject *r = ctx ? PyObject_CallMethod((PyObject *)h->loop, "call_exception_handler",
                                            "O", ctx)
                      : NULL;
    Py_XDECREF(ctx);
    if (r == NULL) {
        if (pl_uvh_stop_exception())
            pl_loop_stash_exception(h->loop);
        else
            PyErr_WriteUnraisable((PyObject *)h);
    }
    Py_XDECREF(r);
}

void
pl_uvh_report(PLUVHandle *h, const char *message)
{
    if (pl_uvh_stop_exception()) {
        pl_loop_stash_exception(h->loop);
        return;
    }
    PyObject *exc = pl_err_fetch();
    if (exc == NULL)
        return;
    pl_uvh_call_handler(h, message, exc);
    Py_DECREF(exc);
}

void
pl_uvh_fatal(PLUVHandle *h, const char *message)
{
    PyObject *exc = pl_err_fetch();
    if (exc == NULL)
        return;
    if (!PyObject_TypeCheck(exc, (PyTypeObject *)PyExc_OSError)) {
        pl_uvh_call_handler(h, message, exc);
    }
    else if (h->loop->debug) {
        /* logger.debug("%r: %s", transport, message, exc_info=exc) */
        PyObject *meth = PyObject_GetAttrString(pl_state.logger, "debug");
        PyObject *args = meth ? Py_BuildValue("(sOs)", "%r: %s", (PyObject *)h, message) : NULL;
        PyObject *kw = args ? Py_BuildValue("{sO}", "exc_info", exc) : NULL;
        PyObject *r = kw ? PyObject_Call(meth, args, kw) : NULL;
        if (r == NULL)
            PyErr_WriteUnraisable((PyObject *)h);
        Py_XDECREF(r);
        Py_XDECREF(kw);
        Py_XDECREF(args);
        Py_XDECREF(meth);
    }
    if (h->ops->force_close(h, exc) < 0)
        PyErr_WriteUnraisable((PyObject *)h);
    Py_DECREF(exc);
}

void
pl_uvh_callback_error(PLUVHandle *h, const char *message)
{
    if (pl_uvh_stop_exception()) {
        pl_loop_stash_exception(h->loop);
        return;
    }
    pl_uvh_fatal(h, message);
}

int
pl_uvh_lost_write(PLUVHandle *h, const char *message)
{
    if (h->conn_lost >= PL_LOG_THRESHOLD_FOR_CONNLOST_WRITES) {
        PyObject *r = PyObject_CallMethod(pl_state.logger, "warning", "s", message);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    h->conn_lost++;
    return 0;
}

PyObject *
pl_uvh_call_lost(PLUVHandle *h, PyObject *exc)
{
    if (!h->protocol_connected || h->protocol == NULL)
        return NULL;
    PyObject *name = pl_uvh_name("connection_lost");
    PyObject *r = name ? PyObject_CallMethodOneArg(h->protocol, name, exc) : NULL;
    Py_XDECREF(name);
    if (r != NULL) {
        Py_DECREF(r);
        return NULL;
    }
    return pl_err_fetch();
}

PyObject *
pl_uvh_lost_finish(PLUVHandle *h, PyObject *r, PyObject *err)
{
    if (r == NULL) {
        if (err == NULL)
            return NULL;
        PyErr_WriteUnraisable((PyObject *)h);
    }
    Py_XDECREF(r);
    if (err != NULL) {
        pl_err_restore(err);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- flow control ------------------------------------------------------------- */

static int
pl_uvh_protocol_hook(PLUVHandle *h, const char *meth, const char *message)
{
    if (h->protocol == NULL)
        return 0;
    PyObject *r = PyObject_CallMethod(h->protocol, meth, NULL);
    if (r != NULL) {
        Py_DECREF(r);
        return 0;
    }
    if (pl_uvh_stop_exception())
        return -1;
    PyObject *exc = pl_err_fetch();
    pl_uvh_call_handler(h, message, exc);
    Py_XDECREF(exc);
    return 0;
}

int
pl_uvh_maybe_pause(PLUVHandle *h, Py_ssize_t size)
{
    if (size <= h->high_water || h->protocol_paused)
        return 0;
    h->protocol_paused = 1;
    return pl_uvh_protocol_hook(h, "pause_writing", "protocol.pause_writing() failed");
}

int
pl_uvh_maybe_resume(PLUVHandle *h, Py_ssize_t size)
{
    if (!h->protocol_paused || size > h->low_water)
        return 0;
    h->protocol_paused = 0;
    return pl_uvh_protocol_hook(h, "resume_writing", "protocol.resume_writing() failed");
}

/* A write-buffer limit as the stdlib takes it: any real number, compared
 * with the (whole) buffer size. A float is floored, which compares the same
 * way (size > 1.5 exactly when size > 1); what exceeds Py_ssize_t (10**30,
 * infinity) saturates, meaning "never"; NaN becomes -1, which the range
 * check refuses with ValueError as the stdlib's comparison does. */
static int
pl_uvh_limit_from_py(PyObject *obj, Py_ssize_t *out)
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

PyObject *
pl_uvh_set_write_buffer_limits(PyObject *self, PyObject *args, PyObject *kwds)
{
    PLUVHandle *h = (PLUVHandle *)self;
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
            if (pl_uvh_limit_from_py(low_o, &low) < 0)
                return NULL;
            high = low > PY_SSIZE_T_MAX / 4   ? PY_SSIZE_T_MAX
                   : low < PY_SSIZE_T_MIN / 4 ? PY_SSIZE_T_MIN
                                              : 4 * low;
        }
    }
    else if (pl_uvh_limit_from_py(high_o, &high) < 0) {
        return NULL;
    }
    if (low_o == Py_None)
        low = high / 4;
    else if (pl_uvh_limit_from_py(low_o, &low) < 0)
        return NULL;
    if (!(high >= low && low >= 0)) {
        PyErr_Format(PyExc_ValueError, "high (%zd) must be >= low (%zd) must be >= 0", high, low);
        return NULL;
    }
    h->high_water = high;
    h->low_water = low;
    if (pl_uvh_maybe_pause(h, h->ops->write_size(h)) < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyObject *
pl_uvh_get_write_buffer_limits(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    PLUVHandle *h = (PLUVHandle *)self;
    return Py_BuildValue("(nn)", h->low_water, h->high_water);
}

PyObject *
pl_uvh_get_write_buffer_size(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    PLUVHandle *h = (PLUVHandle *)self;
    return PyLong_FromSsize_t(h->ops->write_size(h));
}

/* ---- shared methods ------------------------------------------------------------ */

PyObject *
pl_uvh_get_extra_info(PyObject *self, PyObject *args, PyObject *kwds)
{
    PLUVHandle *h = (PLUVHandle *)self;
    static char *kwlist[] = {"name", "default", NULL};
    PyObject *name, *dflt = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:get_extra_info", kwlist, &name, &dflt))
        return NULL;
    if (h->extra != NULL && PyDict_Check(h->extra)) {
        PyObject *v = PyDict_GetItemWithError(h->extra, name);
        if (v != NULL)
            return Py_NewRef(v);
        if (PyErr_Occurred())
            return NULL;
    }
    return Py_NewRef(dflt);
}

PyObject *
pl_uvh_get_protocol(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    PLUVHandle *h = (PLUVHandle *)self;
    return Py_NewRef(h->protocol ? h->protocol : Py_None);
}

PyObject *
pl_uvh_is_closing(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    PLUVHandle *h = (PLUVHandle *)self;
    return PyBool_FromLong(h->closing || h->state != PL_UVH_OPEN);
}

PyObject *
pl_uvh_force_close_meth(PyObject *self, PyObject *exc)
{
    PLUVHandle *h = (PLUVHandle *)self;
    if (pl_loop_check_uv_thread(h->loop) < 0)
        return NULL;
    if (h->ops->force_close(h, exc == Py_None ? NULL : exc) < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyObject *
pl_uvh_abort(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return pl_uvh_force_close_meth(self, Py_None);
}

PyObject *
pl_uvh_get_sock(PyObject *self, void *Py_UNUSED(closure))
{
    PLUVHandle *h = (PLUVHandle *)self;
    if (h->sock == NULL || h->state != PL_UVH_OPEN)
        Py_RETURN_NONE;
    return Py_NewRef(h->sock);
}

/* ---- reading control ------------------------------------------------------------ */

PyObject *
pl_uvh_is_reading(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    PLUVHandle *h = (PLUVHandle *)self;
    return PyBool_FromLong(!h->closing && h->state == PL_UVH_OPEN && !h->paused);
}

PyObject *
pl_uvh_pause_reading(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    PLUVHandle *h = (PLUVHandle *)self;
    if (pl_loop_check_uv_thread(h->loop) < 0)
        return NULL;
    if (h->closing || h->paused || h->state != PL_UVH_OPEN || h->ops->check_fd(h))
        Py_RETURN_NONE;
    h->paused = 1;
    h->ops->pause(h);
    Py_RETURN_NONE;
}

PyObject *
pl_uvh_resume_reading(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    PLUVHandle *h = (PLUVHandle *)self;
    if (pl_loop_check_uv_thread(h->loop) < 0)
        return NULL;
    if (h->closing || !h->paused || h->state != PL_UVH_OPEN || h->ops->check_fd(h))
        Py_RETURN_NONE;
    h->paused = 0;
    if (h->ops->resume(h) < 0)
        return NULL;
    Py_RETURN_NONE;
}

PyObject *
pl_uvh_start_reading_meth(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    PLUVHandle *h = (PLUVHandle *)self;
    if (pl_loop_check_uv_thread(h->loop) < 0)
        return NULL;
    if (h->ops->start_reading(h) < 0)
        return NULL;
    Py_RETURN_NONE;
}

int
pl_uvh_reading_started(PLUVHandle *h, int err)
{
    if (err < 0) {
        pl_error_set_uv(err);
        return -1;
    }
    h->reading = 1;
    return 0;
}

int
pl_uvh_req_started(void *req, int err)
{
    if (err < 0) {
        PyMem_Free(req);
        pl_error_set_uv(err);
        return -1;
    }
    pl_counters.requests_created++;
    return 0;
}

/* One libuv buffer of a write request at most (a power of two below UINT_MAX). */
#define PL_UVH_WRITE_CHUNK ((size_t)1 << 30)

int
pl_uvh_write_start(PLUVHandle *h, PyObject *owner, char *base, size_t len, uv_write_cb cb)
{
    pl_uvh_write_req *req = PyMem_Malloc(sizeof(*req));
    if (req == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    /* A libuv buffer's length is an unsigned int: 4 GiB or more go as
     * several buffers of the one request (cut to 32 bits, the rest of the
     * data would be dropped while the buffer size still counted it). */
    size_t nbufs = len <= PL_UVH_WRITE_CHUNK ? 1 : (len + PL_UVH_WRITE_CHUNK - 1) / PL_UVH_WRITE_CHUNK;
    uv_buf_t few[4];
    uv_buf_t *bufs = nbufs <= 4 ? few : PyMem_Malloc(nbufs * sizeof(uv_buf_t));
    if (bufs == NULL) {
        PyMem_Free(req);
        PyErr_NoMemory();
        return -1;
    }
    for (size_t i = 0; i < nbufs; i++) {
        size_t off = i * (size_t)PL_UVH_WRITE_CHUNK;
        size_t n = len - off < PL_UVH_WRITE_CHUNK ? len - off : PL_UVH_WRITE_CHUNK;
        bufs[i] = uv_buf_init(base + off, (unsigned int)n);
    }
    int err = uv_write(&req->req, h->uvh, bufs, (unsigned int)nbufs, cb); /* libuv copies bufs */
    if (bufs != few)
        PyMem_Free(bufs);
    if (pl_uvh_req_started(req, err) < 0)
        return -1;
    /* libuv accepted the request: only now take the references it needs. */
    req->h = (PLUVHandle *)Py_NewRef((PyObject *)h);
    req->owner = Py_NewRef(owner);
    req->len = len;
    return 0;
}

PLUVHandle *
pl_uvh_write_finish(uv_write_t *ureq, int status, size_t *len)
{
    pl_uvh_write_req *req = (pl_uvh_write_req *)ureq;
    PLUVHandle *h = req->h;
    *len = req->len;
    if (status == 0 && h->loop->monitor != NULL)
        h->loop->monitor->bytes_written += req->len;
    Py_DECREF(req->owner);
    PyMem_Free(req);
    pl_counters.requests_freed++;
    return h;
}

/* ---- raw bytes in --------------------------------------------------------------- */

static pl_uvh_raw_in_probe pl_uvh_probes[PL_UVH_RAW_IN_MAX];
static int pl_uvh_nprobes;

int
pl_uvh_register_raw_in(pl_uvh_raw_in_probe probe)
{
    for (int i = 0; i < pl_uvh_nprobes; i++) {
        if (pl_uvh_probes[i] == probe)
            return 0; /* the module initialised again */
    }
    if (pl_uvh_nprobes == PL_UVH_RAW_IN_MAX) {
        PyErr_SetString(PyExc_RuntimeError, "too many raw-bytes-in hooks");
        return -1;
    }
    pl_uvh_probes[pl_uvh_nprobes++] = probe;
    return 0;
}

pl_uvh_raw_in_fn
pl_uvh_raw_in_for(PyObject *protocol)
{
    for (int i = 0; i < pl_uvh_nprobes; i++) {
        pl_uvh_raw_in_fn fn = pl_uvh_probes[i](protocol);
        if (fn != NULL)
            return fn;
    }
    return NULL;
}
