/* The timer heap behind call_later / call_at. */
#ifndef PL_TIMER_H
#define PL_TIMER_H

#include "loop.h"

int pl_timer_push(PLLoop *loop, PLHandle *timer);
void pl_timer_remove(PLLoop *loop, PLHandle *timer);
/* Earliest deadline, or NULL when no timer is scheduled (borrowed). */
PLHandle *pl_timer_peek(PLLoop *loop);
/* Take every timer due at `now` and scheduled before seq_limit off the heap,
 * earliest first, into loop->due (owned references). Returns how many, or
 * -1 (MemoryError). */
Py_ssize_t pl_timer_take_due(PLLoop *loop, double now, unsigned long long seq_limit);
/* Empty the heap (loop close); drops the heap's references. */
void pl_timer_clear(PLLoop *loop);

PyObject *Loop_call_later(PLLoop *self, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames);
PyObject *Loop_call_at(PLLoop *self, PyObject *const *args, Py_ssize_t nargs,
                       PyObject *kwnames);

#endif
