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
        /* The common create_task(coro): Task(coro, loop=self) from the C
         * stack with one kwnames tuple kept for it, nothing allocated. */
        static PyObject *loop_kwnames;
        if (loop_kwnames == NULL &&
            (loop_kwnames = PyTuple_Pack(1, pl_state.str_loop)) == NULL)
            return NULL;
        PyObject *small[2] = {coro, (PyObject *)self};
        return PyObject_Vectorcall(pl_state.task_type, small, 1, loop_kwnames);
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
