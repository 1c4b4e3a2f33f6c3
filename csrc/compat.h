/* Every PY_VERSION_HEX shim in one place. */
#ifndef PL_COMPAT_H
#define PL_COMPAT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* Fetch the raised exception as one object (3.12 API), normalized, with its
 * traceback attached, so callers never juggle the (type, value, tb) triple. */
static inline PyObject *
pl_err_fetch(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL)
        return NULL;
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

static inline void
pl_err_restore(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc,
                  PyException_GetTraceback(exc));
#endif
}

/* Forget a bytes object's cached hash: pyloop refills a bytes object only
 * it references (stream.c). The field is deprecated for readers (3.11+)
 * but still the cache bytes_hash() fills. */
static inline void
pl_bytes_reset_hash(PyObject *b)
{
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
    ((PyBytesObject *)b)->ob_shash = -1;
#pragma GCC diagnostic pop
}

/* obj.name into *result: 1 found, 0 no such attribute (*result NULL, no
 * exception), -1 error. PyObject_GetOptionalAttrString is 3.13+. */
static inline int
pl_getattr_optional(PyObject *obj, const char *name, PyObject **result)
{
#if PY_VERSION_HEX >= 0x030D0000
    return PyObject_GetOptionalAttrString(obj, name, result);
#else
    *result = PyObject_GetAttrString(obj, name);
    if (*result != NULL)
        return 1;
    if (!PyErr_ExceptionMatches(PyExc_AttributeError))
        return -1;
    PyErr_Clear();
    return 0;
#endif
}

/* sep.join(iterable) for bytes: PyBytes_Join is public from 3.14; before,
 * the same function is the exported _PyBytes_Join. */
static inline PyObject *
pl_bytes_join(PyObject *sep, PyObject *iterable)
{
#if PY_VERSION_HEX >= 0x030E0000
    return PyBytes_Join(sep, iterable);
#else
    return _PyBytes_Join(sep, iterable);
#endif
}

/* The TypeError a stream transport's write() raises for data of another type,
 * worded as the running Python's selector transport words it (3.14 names the
 * three accepted types instead of "bytes-like"). One %s: the type's name. */
#if PY_VERSION_HEX >= 0x030E0000
#define PL_STREAM_WRITE_TYPE_MSG \
    "data argument must be a bytes, bytearray, or memoryview object, not '%.100s'"
#else
#define PL_STREAM_WRITE_TYPE_MSG "data argument must be a bytes-like object, not '%.100s'"
#endif

/* 3.14's selector transport drops writelines() to a lost connection before it
 * looks at the chunks (earlier versions make memoryviews of them first, so a
 * str raises TypeError even then). */
#define PL_WRITELINES_DROP_FIRST (PY_VERSION_HEX >= 0x030E0000)

/* Instance dicts of the C transports (uvhandle.h). 3.12+: a managed dict,
 * which costs nothing until an attribute is set and keeps method lookups
 * specialized. 3.11 has no managed dict for extension types: a dict at
 * tp_dictoffset, made with the object, since 3.11 specializes method
 * lookups only when that dict exists (LOAD_METHOD_WITH_DICT). */
#if PY_VERSION_HEX >= 0x030C0000
#define PL_MANAGED_DICT 1
#define PL_MANAGED_DICT_FLAG Py_TPFLAGS_MANAGED_DICT
#if PY_VERSION_HEX >= 0x030D0000
#define pl_visit_managed_dict PyObject_VisitManagedDict
#define pl_clear_managed_dict PyObject_ClearManagedDict
#else
#define pl_visit_managed_dict _PyObject_VisitManagedDict
#define pl_clear_managed_dict _PyObject_ClearManagedDict
#endif
#else
#define PL_MANAGED_DICT 0
#define PL_MANAGED_DICT_FLAG 0
#endif

/* The object a weak reference points to, as a new reference (None once it is
 * dead), NULL with an exception on error: PyWeakref_GetRef from 3.13, where
 * the borrowing PyWeakref_GetObject is deprecated. */
static inline PyObject *
pl_weakref_get(PyObject *ref)
{
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *obj;
    int rc = PyWeakref_GetRef(ref, &obj);
    if (rc < 0)
        return NULL;
    return rc == 0 ? Py_NewRef(Py_None) : obj;
#else
    PyObject *obj = PyWeakref_GetObject(ref);
    return obj == NULL ? NULL : Py_NewRef(obj);
#endif
}

/* Cast a method implementation to PyCFunction without -Wcast-function-type. */
#define PL_METH(f) ((PyCFunction)(void (*)(void))(f))

#endif
