/* create_task / set_task_factory / get_task_factory.
 *
 * Task creation sits on the hot path of gather() and TaskGroup, so the common
 * case (no task factory) builds the stdlib C Task with one vectorcall. With a
 * factory, the Python layer's _create_task_with_factory keeps the per-version
 * rules for name/context/kwargs. */
#include "task.h"
#include "module.h"

/* 3.13.3 and 3.14 pass every keyword through: create_task(coro, **kwargs). */
#define PL_CREATE_TASK_KWARGS (PY_VERSION_HEX >= 0x030D03F0)

#if PY_VERSION_HEX >= 0x030C0000
/* _asyncio._get_running_loop, the running loop the C Future and Task find
 * when they are made without loop=; NULL until looked up (or when _asyncio's
 * Future/Task are not asyncio's, and the fast path is off). */
static PyObject *pl_task_running_getter;
static char pl_task_running_looked_up;

static int
pl_task_running_lookup(void)
{
    pl_task_running_looked_up = 1;
    PyObject *mod = PyImport_ImportModule("_asyncio");
    if (mod == NULL) {
        PyErr_Clear();
        return 0;
    }
    PyObject *task = PyObject_GetAttrString(mod, "Task");
    PyObject *future = PyObject_GetAttrString(mod, "Future");
    PyObject *getter = PyObject_GetAttrString(mod, "_get_running_loop");
    if (task == pl_state.task_type && future == pl_state.future_type && getter != NULL)
        pl_task_running_getter = Py_NewRef(getter);
    PyErr_Clear();
    Py_XDECREF(task);
    Py_XDECREF(future);
    Py_XDECREF(getter);
    Py_DECREF(mod);
    return 0;
}

#endif

/* From 3.12 the C running-loop lookup is a thread-state read; 3.11's makes a
 * getpid() system call each time (twice, with the Task's own): not worth it. */
int
pl_task_loop_is_current(PLLoop *loop)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (!loop->running)
        return 0;
    if (!pl_task_running_looked_up)
        pl_task_running_lookup();
    if (pl_task_running_getter == NULL)
        return 0;
    PyObject *running = PyObject_CallNoArgs(pl_task_running_getter);
    if (running == NULL) {
        PyErr_Clear();
        return 0;
    }
    int same = running == (PyObject *)loop;
    Py_DECREF(running);
    return same;
#else
    (void)loop;
    return 0;
#endif
}

PyObject *
Loop_create_task(PLLoop *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    PyObject *coro = NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    Py_ssize_t coro_kw = -1;

    if (nargs > 1) {
        PyErr_Format(PyExc_TypeError,
                     "create_task() takes 2 positional arguments but %zd were given", nargs + 1);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *k = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(k, "coro") == 0 && nargs == 0) {
            coro_kw = i;
            continue;
        }
#if !PL_CREATE_TASK_KWARGS
        if (PyUnicode_CompareWithASCIIString(k, "name") != 0 &&
            PyUnicode_CompareWithASCIIString(k, "context") != 0) {
            PyErr_Format(PyExc_TypeError,
                         "create_task() got an unexpected keyword argument '%S'", k);
            return NULL;
        }
#endif
    }
    if (nargs == 1)
        coro = args[0];
    else if (coro_kw >= 0)
        coro = args[coro_kw];
    else {
        PyErr_SetString(PyExc_TypeError,
                        "create_task() missing 1 required positional argument: 'coro'");
        return NULL;
    }
    if (pl_loop_check_closed(self) < 0)
        return NULL;

    /* Keywords other than "coro", in the order given. */
    PyObject *rest_names = NULL, *res = NULL;
    PyObject **stack = NULL;
    Py_ssize_t nrest = nkw - (coro_kw >= 0 ? 1 : 0);

    if (self->task_factory != NULL) {
        PyObject *kw = PyDict_New();
        if (kw == NULL)
            return NULL;
        for (Py_ssize_t i = 0; i < nkw; i++) {
            if (i == coro_kw)
                continue;
            if (PyDict_SetItem(kw, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0) {
                Py_DECREF(kw);
                return NULL;
            }
        }
        res = PyObject_CallMethod((PyObject *)self, "_create_task_with_factory", "OO", coro, kw);
        Py_DECREF(kw);
        return res;
    }

    if (nrest == 0) {
        /* The common create_task(coro). Inside this loop's own run, Task(coro)
         * binds the task to the same loop as loop=self would, without the
         * keyword (a dict for tp_init and its parse: about 400 instructions
         * per task on 3.14). Otherwise Task(coro, loop=self) from the C stack. */
        PyObject *small[2] = {coro, (PyObject *)self};
        if (pl_task_loop_is_current(self))
            return PyObject_Vectorcall(pl_state.task_type, small, 1, NULL);
        return PyObject_Vectorcall(pl_state.task_type, small, 1, pl_state.kwnames_loop);
    }

    /* Task(coro, <keywords>..., loop=self) */
    stack = PyMem_Malloc((size_t)(nrest + 2) * sizeof(PyObject *));
    rest_names = PyTuple_New(nrest + 1);
    if (stack == NULL || rest_names == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    stack[0] = coro;
    Py_ssize_t j = 0;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        if (i == coro_kw)
            continue;
        stack[1 + j] = args[nargs + i];
        PyTuple_SET_ITEM(rest_names, j, Py_NewRef(PyTuple_GET_ITEM(kwnames, i)));
        j++;
    }
    stack[1 + j] = (PyObject *)self;
    PyTuple_SET_ITEM(rest_names, j, Py_NewRef(pl_state.str_loop));
    /* In debug mode the Task records its source traceback from the top
     * Python frame, which is already the caller: no create_task frame to
     * drop here, unlike the stdlib's Python create_task. */
    res = PyObject_Vectorcall(pl_state.task_type, stack, 1, rest_names);
done:
    PyMem_Free(stack);
    Py_XDECREF(rest_names);
    return res;
}

PyObject *
Loop_set_task_factory(PLLoop *self, PyObject *factory)
{
    if (factory != Py_None && !PyCallable_Check(factory)) {
        PyErr_SetString(PyExc_TypeError, "task factory must be a callable or None");
        return NULL;
    }
    Py_XSETREF(self->task_factory, factory == Py_None ? NULL : Py_NewRef(factory));
    Py_RETURN_NONE;
}

PyObject *
Loop_get_task_factory(PLLoop *self, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(self->task_factory ? self->task_factory : Py_None);
}
