/* call_later / call_at on one binary min-heap of TimerHandles, ordered by
 * (deadline, insertion order). Each timer knows its heap slot, so cancel()
 * removes it at once instead of leaving a tombstone for the loop to skip. */
#include "timer.h"
#include "module.h"

#include <math.h>

/* NaN deadlines are accepted and, as in the stdlib (whose "not yet due" test
 * is false for NaN), fire at once: order them before every real deadline so
 * the heap invariant holds. */
static inline int
pl_timer_less(const PLHandle *a, const PLHandle *b)
{
    double wa = isnan(a->when) ? -INFINITY : a->when;
    double wb = isnan(b->when) ? -INFINITY : b->when;
    if (wa != wb)
        return wa < wb;
    return a->seq < b->seq;
}

static inline void
pl_timer_place(PLLoop *loop, Py_ssize_t i, PLHandle *t)
{
    loop->heap[i] = t;
    t->heap_index = i;
}

static void
pl_timer_sift_up(PLLoop *loop, Py_ssize_t i)
{
    PLHandle *t = loop->heap[i];
    while (i > 0) {
        Py_ssize_t parent = (i - 1) / 2;
        if (!pl_timer_less(t, loop->heap[parent]))
            break;
        pl_timer_place(loop, i, loop->heap[parent]);
        i = parent;
    }
    pl_timer_place(loop, i, t);
}

static void
pl_timer_sift_down(PLLoop *loop, Py_ssize_t i)
{
    PLHandle *t = loop->heap[i];
    Py_ssize_t n = loop->heap_len;
    for (;;) {
        Py_ssize_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && pl_timer_less(loop->heap[c + 1], loop->heap[c]))
            c++;
        if (!pl_timer_less(loop->heap[c], t))
            break;
        pl_timer_place(loop, i, loop->heap[c]);
        i = c;
    }
    pl_timer_place(loop, i, t);
}

/* Put `t` in the heap with the heap's own reference, keeping its seq. */
static int
pl_timer_insert(PLLoop *loop, PLHandle *t)
{
    if (loop->heap_len == loop->heap_cap) {
        Py_ssize_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        PLHandle **nh = PyMem_Realloc(loop->heap, (size_t)cap * sizeof(PLHandle *));
        if (nh == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        loop->heap = nh;
        loop->heap_cap = cap;
    }
    t->scheduled = 1;
    Py_INCREF(t);
    loop->heap[loop->heap_len] = t;
    t->heap_index = loop->heap_len;
    loop->heap_len++;
    pl_timer_sift_up(loop, t->heap_index);
    return 0;
}

int
pl_timer_push(PLLoop *loop, PLHandle *t)
{
    unsigned long long seq = loop->timer_seq++;
    t->seq = seq;
    return pl_timer_insert(loop, t);
}

/* Take the timer out of the heap without dropping the heap's reference;
 * the caller owns it afterwards. */
static PLHandle *
pl_timer_detach(PLLoop *loop, Py_ssize_t i)
{
    PLHandle *t = loop->heap[i];
    loop->heap_len--;
    if (i != loop->heap_len) {
        PLHandle *last = loop->heap[loop->heap_len];
        pl_timer_place(loop, i, last);
        if (i > 0 && pl_timer_less(last, loop->heap[(i - 1) / 2]))
            pl_timer_sift_up(loop, i);
        else
            pl_timer_sift_down(loop, i);
    }
    t->heap_index = -1;
    t->scheduled = 0;
    return t;
}

void
pl_timer_remove(PLLoop *loop, PLHandle *t)
{
    Py_ssize_t i = t->heap_index;
    if (i < 0 || i >= loop->heap_len || loop->heap[i] != t)
        return;
    Py_DECREF(pl_timer_detach(loop, i));
}

PLHandle *
pl_timer_peek(PLLoop *loop)
{
    return loop->heap_len ? loop->heap[0] : NULL;
}

Py_ssize_t
pl_timer_take_due(PLLoop *loop, double now, unsigned long long seq_limit)
{
    Py_ssize_t n = 0, young = 0;
    int rc = 0;
    while (loop->heap_len > 0 && !(loop->heap[0]->when > now)) { /* NaN is due */
        if (n + young == loop->due_cap) {
            Py_ssize_t cap = loop->due_cap ? loop->due_cap * 2 : 64;
            PLHandle **due = PyMem_Realloc(loop->due, (size_t)cap * sizeof(*due));
            if (due == NULL) {
                PyErr_NoMemory();
                rc = -1;
                break;
            }
            /* The young ones sit at the far end: move them to the new end. */
            memmove(due + cap - young, due + loop->due_cap - young, (size_t)young * sizeof(*due));
            loop->due = due;
            loop->due_cap = cap;
        }
        PLHandle *t = pl_timer_detach(loop, 0);
        if (t->seq >= seq_limit)
            loop->due[loop->due_cap - ++young] = t;
        else
            loop->due[n++] = t;
    }
    /* Timers scheduled during this pass wait for the next one, as in the
     * stdlib, which collects due timers before it runs a pass's callbacks. */
    for (Py_ssize_t i = 0; i < young; i++) {
        PLHandle *t = loop->due[loop->due_cap - 1 - i];
        if (pl_timer_insert(loop, t) < 0) {
            PyErr_Clear();
            if (pl_loop_ready_push(loop, t) < 0)
                PyErr_Clear();
        }
        Py_DECREF(t);
    }
    if (rc < 0) {
        /* What was taken goes to the ready queue instead. */
        for (Py_ssize_t i = 0; i < n; i++) {
            if (pl_loop_ready_push(loop, loop->due[i]) < 0)
                PyErr_Clear();
            Py_DECREF(loop->due[i]);
        }
        PyErr_NoMemory();
        return -1;
    }
    return n;
}

void
pl_timer_clear(PLLoop *loop)
{
    /* Detach the array first: dropping a timer can run arbitrary code
     * (a callback's __del__) that touches this loop. */
    PLHandle **heap = loop->heap;
    Py_ssize_t n = loop->heap_len;
    loop->heap = NULL;
    loop->heap_len = loop->heap_cap = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        heap[i]->heap_index = -1;
        heap[i]->scheduled = 0;
    }
    for (Py_ssize_t i = 0; i < n; i++)
        Py_DECREF(heap[i]);
    PyMem_Free(heap);
}

/* ---- call_at / call_later ------------------------------------------------ */

/* Parse (delay_or_when, callback, *args, context=None). */
static int
pl_timer_parse(const char *meth, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
               PyObject **first, PyObject **callback, PyObject **context)
{
    *context = NULL;
    *first = NULL;
    *callback = NULL;
    if (kwnames != NULL) {
        Py_ssize_t nk = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t i = 0; i < nk; i++) {
            PyObject *k = PyTuple_GET_ITEM(kwnames, i);
            if (PyUnicode_Check(k) && PyUnicode_CompareWithASCIIString(k, "context") == 0) {
                *context = args[nargs + i];
            }
            else {
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%S'",
                             meth, k);
                return -1;
            }
        }
    }
    if (nargs < 2) {
        PyErr_Format(PyExc_TypeError, "%s() missing %zd required positional argument%s", meth,
                     2 - nargs, nargs == 1 ? "" : "s");
        return -1;
    }
    *first = args[0];
    *callback = args[1];
    return 0;
}

static int
pl_timer_check_callback(PLLoop *self, PyObject *callback, const char *meth)
{
    if (self->debug)
        return pl_loop_check_callback_debug(self, callback, meth);
    if (!PyCallable_Check(callback)) {
        PyErr_Format(PyExc_TypeError, "a callable object was expected by %s(), got %R", meth,
                     callback);
        return -1;
    }
    return 0;
}

static PyObject *
pl_timer_schedule(PLLoop *self, double when, PyObject *const *args, Py_ssize_t nargs,
                  PyObject *callback, PyObject *context)
{
    PyObject *tuple = PyTuple_New(nargs - 2);
    if (tuple == NULL)
        return NULL;
    for (Py_ssize_t i = 2; i < nargs; i++)
        PyTuple_SET_ITEM(tuple, i - 2, Py_NewRef(args[i]));
    PLHandle *t = pl_handle_new(&PLTimerHandle_Type, self, callback, tuple, context);
    Py_DECREF(tuple);
    if (t == NULL)
        return NULL;
    t->when = when;
    if (pl_timer_push(self, t) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    return (PyObject *)t;
}

extern int pl_loop_check_thread(PLLoop *loop);

static int
pl_timer_common_checks(PLLoop *self, PyObject *callback, const char *meth)
{
    if (pl_loop_check_closed(self) < 0)
        return -1;
    if (self->debug && pl_loop_check_thread(self) < 0)
        return -1;
    return pl_timer_check_callback(self, callback, meth);
}

PyObject *
Loop_call_at(PLLoop *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *when_obj, *callback, *context;
    if (pl_timer_parse("call_at", args, nargs, kwnames, &when_obj, &callback, &context) < 0)
        return NULL;
    if (when_obj == Py_None) {
        PyErr_SetString(PyExc_TypeError, "when cannot be None");
        return NULL;
    }
    if (pl_timer_common_checks(self, callback, "call_at") < 0)
        return NULL;
    double when = PyFloat_AsDouble(when_obj);
    if (when == -1.0 && PyErr_Occurred())
        return NULL;
    PyObject *t = pl_timer_schedule(self, when, args, nargs, callback, context);
    if (t != NULL && !PyFloat_CheckExact(when_obj))
        ((PLHandle *)t)->when_obj = Py_NewRef(when_obj);
    return t;
}

PyObject *
Loop_call_later(PLLoop *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *delay_obj, *callback, *context;
    double when;
    if (pl_timer_parse("call_later", args, nargs, kwnames, &delay_obj, &callback, &context) < 0)
        return NULL;
    if (delay_obj == Py_None) {
        PyErr_SetString(PyExc_TypeError, "delay must not be None");
        return NULL;
    }
    double now = pl_loop_time(self);
    if (now == -1.0 && PyErr_Occurred())
        return NULL;
    if (PyFloat_CheckExact(delay_obj)) {
        when = now + PyFloat_AS_DOUBLE(delay_obj);
    }
    else if (PyLong_CheckExact(delay_obj)) {
        double d = PyLong_AsDouble(delay_obj);
        if (d == -1.0 && PyErr_Occurred())
            return NULL;
        when = now + d;
    }
    else {
        /* Same arithmetic as the stdlib (time() + delay) so that odd numeric
         * types are accepted or refused exactly as there. */
        PyObject *nowobj = PyFloat_FromDouble(now);
        if (nowobj == NULL)
            return NULL;
        PyObject *sum = PyNumber_Add(nowobj, delay_obj);
        Py_DECREF(nowobj);
        if (sum == NULL)
            return NULL;
        when = PyFloat_AsDouble(sum);
        Py_DECREF(sum);
        if (when == -1.0 && PyErr_Occurred())
            return NULL;
    }
    if (pl_timer_common_checks(self, callback, "call_at") < 0)
        return NULL;
    return pl_timer_schedule(self, when, args, nargs, callback, context);
}
