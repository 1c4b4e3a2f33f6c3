/* Callback handles: the objects call_soon / call_later return and the ready
 * queue and timer heap hold. */
#ifndef PL_HANDLE_H
#define PL_HANDLE_H

#include "compat.h"

struct PLLoop;

typedef struct PLHandle {
    PyObject_HEAD
    PyObject *callback;         /* NULL once cancelled */
    PyObject *args;             /* tuple; NULL once cancelled */
    PyObject *context;          /* contextvars.Context */
    struct PLLoop *loop;        /* strong reference */
    PyObject *source_traceback; /* debug mode only */
    PyObject *repr;             /* kept on cancel in debug mode */
    PyObject *weakreflist;
    char cancelled;
    char is_timer;
    /* TimerHandle only (zero in plain handles) */
    char scheduled;             /* in the loop's heap */
    double when;
    PyObject *when_obj;         /* call_at's `when` when not a float (an int stays an int) */
    unsigned long long seq;     /* insertion order: FIFO among equal whens */
    Py_ssize_t heap_index;      /* -1 when not in the heap */
    /* 3.14+: the asyncio.events._ThreadSafeHandle call_soon_threadsafe
     * returned for this handle (its lock and _cancelled decide), else NULL */
    PyObject *ts;
} PLHandle;

extern PyTypeObject PLHandle_Type;
extern PyTypeObject PLTimerHandle_Type;

/* Build a handle that owns references to callback, args and context
 * (context NULL or None: a copy of the current context). */
PLHandle *pl_handle_new(PyTypeObject *type, struct PLLoop *loop, PyObject *callback,
                        PyObject *args, PyObject *context);

/* Run the handle's callback in its context. Returns 0 when the callback ran
 * (an ordinary exception went to the loop's exception handler), -1 when an
 * exception must propagate out of the loop (KeyboardInterrupt, SystemExit,
 * or an error raised by the exception handler machinery). */
int pl_handle_run(PLHandle *h);

/* Drop callback and args; for timers also leave the heap. */
void pl_handle_cancel(PLHandle *h);

int pl_handle_init_types(PyObject *module);

/* 3.14's call_soon_threadsafe returns an asyncio.events._ThreadSafeHandle:
 * _core._set_threadsafe_handle(type, rlock_factory, debug_factory) (from
 * pyloop/loop.py) turns that on; pl_handle_threadsafe_new makes the one for
 * `h` (its slots filled from C, or by debug_factory in debug mode for the
 * source traceback) and ties it to `h`. NULL with an exception on failure. */
PyObject *pl_handle_set_threadsafe(PyObject *module, PyObject *args);
int pl_handle_threadsafe_active(void);
PyObject *pl_handle_threadsafe_new(PLHandle *h);

#endif
