/* Task creation on the loop. */
#ifndef PL_TASK_H
#define PL_TASK_H

#include "loop.h"

PyObject *Loop_create_task(PLLoop *self, PyObject *const *args, Py_ssize_t nargs,
                           PyObject *kwnames);
PyObject *Loop_set_task_factory(PLLoop *self, PyObject *factory);
PyObject *Loop_get_task_factory(PLLoop *self, PyObject *ignored);

/* Whether asyncio's C Task or Future made without loop= would be bound to
 * `loop`: it runs and is asyncio's running loop in this thread (3.12+). */
int pl_task_loop_is_current(PLLoop *loop);

#if PY_VERSION_HEX >= 0x030D03F0
#define PL_CREATE_TASK_SIG "create_task($self, coro, **kwargs)\n--\n\n"
#else
#define PL_CREATE_TASK_SIG "create_task($self, coro, *, name=None, context=None)\n--\n\n"
#endif

#endif
