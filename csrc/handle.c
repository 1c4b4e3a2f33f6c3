/* Handle and TimerHandle: creation, running a callback in its context,
 * cancellation, and the attributes debugging tools read. */
#include "handle.h"
#include "loop.h"
#include "module.h"
#include "timer.h"

#include <math.h>
#include <structmember.h>

/* Plain Handles (not subclasses, not timers) that were freed, kept for the
 * next call_soon: a task step allocates one and frees it a moment later, and
 * a reused one skips the allocator, the zeroing of a new GC object and the
 * young-generation count (which would trigger collections of objects that
 * are not garbage). Each entry is untracked, its references all cleared and
 * its weak references gone; PyObject_Init gives it a new reference count.
 * The module is single-phase (no per-interpreter GIL), so one list is safe. */
#define PL_HANDLE_FREELIST_MAX 1024 /* gather() of 1,000 tasks: one step handle each */
static PLHandle *pl_handle_freelist[PL_HANDLE_FREELIST_MAX];
static int pl_handle_nfree;

PLHandle *
pl_handle_new(PyTypeObject *type, PLLoop *loop, PyObject *callback, PyObject *args,
              PyObject *context)
{
    PLHandle *h;
    if (type == &PLHandle_Type && pl_handle_nfree > 0) {
        h = pl_handle_freelist[--pl_handle_nfree];
        PyObject_Init((PyObject *)h, type);
    }
    else {
        h = PyObject_GC_New(PLHandle, type);
        if (h == NULL)
            return NULL;
    }
    if (context == NULL || context == Py_None) {
        context = PyContext_CopyCurrent();
        if (context == NULL) {
            h->callback = h->args = h->context = h->source_traceback = h->repr = NULL;
            h->loop = NULL;
            h->weakreflist = NULL;
            Py_DECREF(h);
            return NULL;
        }
    }
    else {
        Py_INCREF(context);
    }
    h->context = context;
    h->callback = Py_NewRef(callback);
    h->args = Py_NewRef(args);
    h->loop = (PLLoop *)Py_NewRef((PyObject *)loop);
    h->source_traceback = NULL;
    h->repr = NULL;
    h->weakreflist = NULL;
    h->cancelled = 0;
    h->is_timer = (type == &PLTimerHandle_Type);
    h->scheduled = 0;
    h->when = 0.0;
    h->when_obj = NULL;
    h->seq = 0;
    h->heap_index = -1;
    h->ts = NULL;
    if (loop->debug && pl_state.extract_stack != NULL) {
        h->source_traceback = PyObject_CallNoArgs(pl_state.extract_stack);
        if (h->source_traceback == NULL) {
            Py_DECREF(h);
            return NULL;
        }
    }
    PyObject_GC_Track(h);
    return h;
}

void
pl_handle_cancel(PLHandle *h)
{
    if (h->cancelled)
        return;
    if (h->loop != NULL && h->loop->debug && h->repr == NULL && pl_state.handle_repr) {
        /* Keep a representation in debug mode so that a later "slow callback"
         * warning can still name the callback. */
        h->repr = PyObject_CallOneArg(pl_state.handle_repr, (PyObject *)h);
        if (h->repr == NULL)
            PyErr_Clear();
    }
    h->cancelled = 1;
    if (h->is_timer && h->scheduled && h->loop != NULL)
        pl_timer_remove(h->loop, h);
    Py_CLEAR(h->callback);
    Py_CLEAR(h->args);
}

/* ---- 3.14's thread-safe handles ------------------------------------------ */

/* events._ThreadSafeHandle is a Python class with __slots__; its instances
 * are made here without running its __init__ (which costs a Python frame,
 * copy_context and more per call): tp_alloc, then each slot written at the
 * offset its member descriptor gives. Its Python methods (cancel, cancelled,
 * repr) work on those slots as usual. */
static struct {
    PyTypeObject *type;
    PyObject *rlock;       /* threading.RLock */
    PyObject *debug_new;   /* (loop, callback, args, context) -> handle, in debug mode */
    PyObject *str_acquire;
    PyObject *str_release;
    Py_ssize_t off_callback, off_args, off_cancelled, off_loop, off_source_traceback, off_repr,
        off_context, off_lock;
} pl_ts;

#define PL_TS_SLOT(o, off) (*(PyObject **)((char *)(o) + (off)))

static int
pl_ts_offset(PyTypeObject *type, const char *name, Py_ssize_t *off)
{
    PyObject *d = PyObject_GetAttrString((PyObject *)type, name);
    if (d == NULL)
        return -1;
    int ok = Py_IS_TYPE(d, &PyMemberDescr_Type) &&
             ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
    if (ok)
        *off = ((PyMemberDescrObject *)d)->d_member->offset;
    else
        PyErr_Format(PyExc_TypeError, "%s.%s is not an object slot", type->tp_name, name);
    Py_DECREF(d);
    return ok ? 0 : -1;
}

PyObject *
pl_handle_set_threadsafe(PyObject *Py_UNUSED(module), PyObject *args)
{
    PyObject *type, *rlock, *debug_new;
    if (!PyArg_ParseTuple(args, "O!OO", &PyType_Type, &type, &rlock, &debug_new))
        return NULL;
    PyTypeObject *t = (PyTypeObject *)type;
    if (pl_ts_offset(t, "_callback", &pl_ts.off_callback) < 0 ||
        pl_ts_offset(t, "_args", &pl_ts.off_args) < 0 ||
        pl_ts_offset(t, "_cancelled", &pl_ts.off_cancelled) < 0 ||
        pl_ts_offset(t, "_loop", &pl_ts.off_loop) < 0 ||
        pl_ts_offset(t, "_source_traceback", &pl_ts.off_source_traceback) < 0 ||
        pl_ts_offset(t, "_repr", &pl_ts.off_repr) < 0 ||
        pl_ts_offset(t, "_context", &pl_ts.off_context) < 0 ||
        pl_ts_offset(t, "_lock", &pl_ts.off_lock) < 0)
        return NULL;
    if (pl_ts.str_acquire == NULL) {
        pl_ts.str_acquire = PyUnicode_InternFromString("acquire");
        pl_ts.str_release = PyUnicode_InternFromString("release");
        if (pl_ts.str_acquire == NULL || pl_ts.str_release == NULL)
            return NULL;
    }
    Py_XSETREF(pl_ts.rlock, Py_NewRef(rlock));
    Py_XSETREF(pl_ts.debug_new, Py_NewRef(debug_new));
    Py_XSETREF(pl_ts.type, (PyTypeObject *)Py_NewRef(type));
    Py_RETURN_NONE;
}

int
pl_handle_threadsafe_active(void)
{
    return pl_ts.type != NULL;
}

static void
pl_ts_put(PyObject *o, Py_ssize_t off, PyObject *v)
{
    Py_XSETREF(PL_TS_SLOT(o, off), Py_NewRef(v));
}

PyObject *
pl_handle_threadsafe_new(PLHandle *h)
{
    PyObject *ts;
    if (h->loop->debug) {
        ts = PyObject_CallFunctionObjArgs(pl_ts.debug_new, (PyObject *)h->loop, h->callback,
                                          h->args, h->context, NULL);
    }
    else {
        PyObject *lock = PyObject_CallNoArgs(pl_ts.rlock);
        if (lock == NULL)
            return NULL;
        ts = pl_ts.type->tp_alloc(pl_ts.type, 0);
        if (ts == NULL) {
            Py_DECREF(lock);
            return NULL;
        }
        pl_ts_put(ts, pl_ts.off_callback, h->callback);
        pl_ts_put(ts, pl_ts.off_args, h->args);
        pl_ts_put(ts, pl_ts.off_cancelled, Py_False);
        pl_ts_put(ts, pl_ts.off_loop, (PyObject *)h->loop);
        pl_ts_put(ts, pl_ts.off_source_traceback, Py_None);
        pl_ts_put(ts, pl_ts.off_repr, Py_None);
        pl_ts_put(ts, pl_ts.off_context, h->context);
        Py_XSETREF(PL_TS_SLOT(ts, pl_ts.off_lock), lock);
    }
    if (ts != NULL)
        h->ts = Py_NewRef(ts);
    return ts;
}

static int pl_handle_call(PLHandle *h, PyObject *report_as);

/* As _ThreadSafeHandle._run: under the handle's lock, and not at all once
 * cancelled, so a cancel() from another thread waits for a running callback. */
static int
pl_handle_run_threadsafe(PLHandle *h)
{
    PyObject *ts = Py_NewRef(h->ts);
    PyObject *lock = Py_XNewRef(PL_TS_SLOT(ts, pl_ts.off_lock));
    int rc = -1;
    if (lock == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_ThreadSafeHandle without _lock");
        goto done;
    }
    PyObject *r = PyObject_CallMethodNoArgs(lock, pl_ts.str_acquire);
    if (r == NULL)
        goto done;
    Py_DECREF(r);
    rc = PL_TS_SLOT(ts, pl_ts.off_cancelled) == Py_True ? 0 : pl_handle_call(h, ts);
    PyObject *pending = rc < 0 ? pl_err_fetch() : NULL;
    r = PyObject_CallMethodNoArgs(lock, pl_ts.str_release);
    if (r == NULL) {
        Py_XDECREF(pending);
        rc = -1;
        goto done;
    }
    Py_DECREF(r);
    if (pending != NULL)
        pl_err_restore(pending);
done:
    Py_XDECREF(lock);
    Py_DECREF(ts);
    return rc;
}

int
pl_handle_run(PLHandle *h)
{
    if (h->ts != NULL)
        return pl_handle_run_threadsafe(h);
    return pl_handle_call(h, (PyObject *)h);
}

/* The callback in its context; an ordinary exception goes to the exception
 * handler with `report_as` as the context's handle. */
static int
pl_handle_call(PLHandle *h, PyObject *report_as)
{
    int rc = 0;
    PyObject *res = NULL;
    PyObject *exc = NULL;
    /* The callback may cancel this very handle (which clears callback/args),
     * so keep our own references for the duration of the call. */
    PyObject *cb = Py_NewRef(h->callback);
    PyObject *args = Py_NewRef(h->args);
    PyObject *ctx = Py_NewRef(h->context);

    if (PyContext_Enter(ctx) == 0) {
        /* A callable without vectorcall (the C Task's step wrapper, on
         * every task step) is called through tp_call with the tuple we
         * already hold, instead of having one made for it. */
        if (PyVectorcall_Function(cb) != NULL)
            res = PyObject_Vectorcall(cb, &PyTuple_GET_ITEM(args, 0), PyTuple_GET_SIZE(args),
                                      NULL);
        else
            res = PyObject_Call(cb, args, NULL);
        if (PyContext_Exit(ctx) < 0 && res != NULL)
            Py_CLEAR(res);
    }
    if (res != NULL) {
        Py_DECREF(res);
        goto done;
    }
    if (PyErr_ExceptionMatches(PyExc_SystemExit) || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        rc = -1;
        goto done;
    }
    exc = pl_err_fetch();
    if (pl_state.handle_error == NULL) {
        pl_err_restore(exc);
        exc = NULL;
        rc = -1;
        goto done;
    }
    res = PyObject_CallFunctionObjArgs(pl_state.handle_error, report_as, exc, NULL);
    if (res == NULL) {
        /* call_exception_handler swallows ordinary errors itself; what gets
         * here is KeyboardInterrupt/SystemExit and must stop the loop. */
        rc = -1;
        goto done;
    }
    Py_DECREF(res);
done:
    Py_XDECREF(exc);
    Py_DECREF(cb);
    Py_DECREF(args);
    Py_DECREF(ctx);
    return rc;
}

/* ---- Python-facing methods ---------------------------------------------- */

static int
Handle_traverse(PLHandle *h, visitproc visit, void *arg)
{
    Py_VISIT(h->callback);
    Py_VISIT(h->args);
    Py_VISIT(h->context);
    Py_VISIT((PyObject *)h->loop);
    Py_VISIT(h->source_traceback);
    Py_VISIT(h->repr);
    Py_VISIT(h->when_obj);
    Py_VISIT(h->ts);
    return 0;
}

static int
Handle_clear(PLHandle *h)
{
    Py_CLEAR(h->callback);
    Py_CLEAR(h->args);
    Py_CLEAR(h->context);
    Py_CLEAR(h->loop);
    Py_CLEAR(h->source_traceback);
    Py_CLEAR(h->repr);
    Py_CLEAR(h->when_obj);
    Py_CLEAR(h->ts);
    return 0;
}

static void
Handle_dealloc(PLHandle *h)
{
    PyObject_GC_UnTrack(h);
    if (h->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)h);
    Handle_clear(h);
    /* Only now: the clears above may run code that takes a handle. */
    if (Py_IS_TYPE(h, &PLHandle_Type) && pl_handle_nfree < PL_HANDLE_FREELIST_MAX) {
        pl_handle_freelist[pl_handle_nfree++] = h;
        return;
    }
    Py_TYPE(h)->tp_free((PyObject *)h);
}

static PyObject *
Handle_cancel(PLHandle *h, PyObject *Py_UNUSED(ignored))
{
    pl_handle_cancel(h);
    Py_RETURN_NONE;
}

static PyObject *
Handle_cancelled(PLHandle *h, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(h->cancelled);
}

static PyObject *
Handle_get_context(PLHandle *h, PyObject *Py_UNUSED(ignored))
{
    if (h->context == NULL)
        Py_RETURN_NONE;
    return Py_NewRef(h->context);
}

static PyObject *
Handle__run(PLHandle *h, PyObject *Py_UNUSED(ignored))
{
    if (h->cancelled || h->callback == NULL)
        Py_RETURN_NONE;
    if (pl_handle_run(h) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Handle_repr(PLHandle *h)
{
    if (h->repr != NULL)
        return Py_NewRef(h->repr);
    if (pl_state.handle_repr == NULL)
        return PyUnicode_FromFormat("<%s object at %p>", Py_TYPE(h)->tp_name, h);
    return PyObject_CallOneArg(pl_state.handle_repr, (PyObject *)h);
}

static PyObject *
Handle_get_callback(PLHandle *h, void *Py_UNUSED(c))
{
    return Py_NewRef(h->callback ? h->callback : Py_None);
}

static PyObject *
Handle_get_args(PLHandle *h, void *Py_UNUSED(c))
{
    return Py_NewRef(h->args ? h->args : Py_None);
}

static PyObject *
Handle_get_loop(PLHandle *h, void *Py_UNUSED(c))
{
    return Py_NewRef(h->loop ? (PyObject *)h->loop : Py_None);
}

static PyObject *
Handle_get_cancelled(PLHandle *h, void *Py_UNUSED(c))
{
    return PyBool_FromLong(h->cancelled);
}

static PyObject *
Handle_get_source_traceback(PLHandle *h, void *Py_UNUSED(c))
{
    return Py_NewRef(h->source_traceback ? h->source_traceback : Py_None);
}

static PyObject *
Handle_get_context_attr(PLHandle *h, void *Py_UNUSED(c))
{
    return Py_NewRef(h->context ? h->context : Py_None);
}

static PyObject *
Handle_new(PyTypeObject *type, PyObject *Py_UNUSED(a), PyObject *Py_UNUSED(k))
{
    PyErr_Format(PyExc_TypeError, "cannot create '%s' instances; use loop.call_soon()",
                 type->tp_name);
    return NULL;
}

static PyMethodDef Handle_methods[] = {
    {"cancel", PL_METH(Handle_cancel), METH_NOARGS, "cancel($self, /)\n--\n\nCancel the call."},
    {"cancelled", PL_METH(Handle_cancelled), METH_NOARGS, "cancelled($self, /)\n--\n\n"},
    {"get_context", PL_METH(Handle_get_context), METH_NOARGS, "get_context($self, /)\n--\n\n"},
    {"_run", PL_METH(Handle__run), METH_NOARGS, NULL},
    {NULL}
};

static PyGetSetDef Handle_getset[] = {
    {"_callback", (getter)Handle_get_callback, NULL, NULL, NULL},
    {"_args", (getter)Handle_get_args, NULL, NULL, NULL},
    {"_loop", (getter)Handle_get_loop, NULL, NULL, NULL},
    {"_cancelled", (getter)Handle_get_cancelled, NULL, NULL, NULL},
    {"_source_traceback", (getter)Handle_get_source_traceback, NULL, NULL, NULL},
    {"_context", (getter)Handle_get_context_attr, NULL, NULL, NULL},
    {NULL}
};

PyTypeObject PLHandle_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyloop._core.Handle",
    .tp_basicsize = sizeof(PLHandle),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Object returned by callback registration methods.",
    .tp_new = Handle_new,
    .tp_dealloc = (destructor)Handle_dealloc,
    .tp_traverse = (traverseproc)Handle_traverse,
    .tp_clear = (inquiry)Handle_clear,
    .tp_repr = (reprfunc)Handle_repr,
    .tp_methods = Handle_methods,
    .tp_getset = Handle_getset,
    .tp_weaklistoffset = offsetof(PLHandle, weakreflist),
};

/* ---- TimerHandle --------------------------------------------------------- */

/* The deadline as given to call_at (an int stays an int, as the stdlib
 * keeps it), else as the float the heap orders by. */
static PyObject *
TimerHandle_when(PLHandle *h, PyObject *Py_UNUSED(ignored))
{
    if (h->when_obj != NULL)
        return Py_NewRef(h->when_obj);
    return PyFloat_FromDouble(h->when);
}

static PyObject *
TimerHandle_get_when(PLHandle *h, void *Py_UNUSED(c))
{
    return TimerHandle_when(h, NULL);
}

static PyObject *
TimerHandle_get_scheduled(PLHandle *h, void *Py_UNUSED(c))
{
    return PyBool_FromLong(h->scheduled);
}

static Py_hash_t
TimerHandle_hash(PLHandle *h)
{
    /* As the stdlib: a timer hashes like its deadline. */
    PyObject *w = PyFloat_FromDouble(h->when);
    if (w == NULL)
        return -1;
    Py_hash_t r = PyObject_Hash(w);
    Py_DECREF(w);
    return r;
}

static PyObject *
TimerHandle_richcompare(PyObject *a, PyObject *b, int op)
{
    if (!PyObject_TypeCheck(b, &PLTimerHandle_Type))
        Py_RETURN_NOTIMPLEMENTED;
    PLHandle *x = (PLHandle *)a, *y = (PLHandle *)b;
    if (op == Py_EQ || op == Py_NE) {
        int eq = 1;
        if (x != y) {
            eq = x->when == y->when && x->cancelled == y->cancelled;
            if (eq) {
                int r = PyObject_RichCompareBool(x->callback ? x->callback : Py_None,
                                                 y->callback ? y->callback : Py_None, Py_EQ);
                if (r < 0)
                    return NULL;
                eq = r;
            }
            if (eq) {
                int r = PyObject_RichCompareBool(x->args ? x->args : Py_None,
                                                 y->args ? y->args : Py_None, Py_EQ);
                if (r < 0)
                    return NULL;
                eq = r;
            }
        }
        return PyBool_FromLong(op == Py_EQ ? eq : !eq);
    }
    switch (op) {
    case Py_LT: return PyBool_FromLong(x->when < y->when);
    case Py_LE: return PyBool_FromLong(x->when <= y->when);
    case Py_GT: return PyBool_FromLong(x->when > y->when);
    case Py_GE: return PyBool_FromLong(x->when >= y->when);
    }
    Py_RETURN_NOTIMPLEMENTED;
}

static PyMethodDef TimerHandle_methods[] = {
    {"when", PL_METH(TimerHandle_when), METH_NOARGS,
     "when($self, /)\n--\n\nReturn the scheduled callback time (loop.time() clock)."},
    {NULL}
};

static PyGetSetDef TimerHandle_getset[] = {
    {"_when", (getter)TimerHandle_get_when, NULL, NULL, NULL},
    {"_scheduled", (getter)TimerHandle_get_scheduled, NULL, NULL, NULL},
    {NULL}
};

PyTypeObject PLTimerHandle_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyloop._core.TimerHandle",
    .tp_basicsize = sizeof(PLHandle),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Object returned by timed callback registration methods.",
    .tp_new = Handle_new,
    .tp_dealloc = (destructor)Handle_dealloc,
    .tp_traverse = (traverseproc)Handle_traverse,
    .tp_clear = (inquiry)Handle_clear,
    .tp_hash = (hashfunc)TimerHandle_hash,
    .tp_richcompare = TimerHandle_richcompare,
    .tp_methods = TimerHandle_methods,
    .tp_getset = TimerHandle_getset,
    .tp_weaklistoffset = offsetof(PLHandle, weakreflist),
};

int
pl_handle_init_types(PyObject *module)
{
    PLTimerHandle_Type.tp_base = &PLHandle_Type;
    if (PyType_Ready(&PLHandle_Type) < 0 || PyType_Ready(&PLTimerHandle_Type) < 0)
        return -1;
    if (PyModule_AddObjectRef(module, "Handle", (PyObject *)&PLHandle_Type) < 0)
        return -1;
    if (PyModule_AddObjectRef(module, "TimerHandle", (PyObject *)&PLTimerHandle_Type) < 0)
        return -1;
    return 0;
}
