/* pyloop._core: module init, the Python helpers the C core calls on its cold
 * paths, and the handle/request counters the tests read. */
#include "compat.h"
#include "dns.h"
#include "fs.h"
#include "handle.h"
#include "loop.h"
#include "module.h"
#include "monitor.h"
#include "pipe.h"
#include "process.h"
#include "server.h"
#include "stream.h"
#include "tls.h"
#include "udp.h"

#include <uv.h>

pl_module_state pl_state;
pl_counters_t pl_counters;

static int
pl_module_set_hook(PyObject *hooks, const char *name, PyObject **slot)
{
    PyObject *v = PyDict_GetItemString(hooks, name);
    if (v == NULL)
        return 0;
    if (!PyCallable_Check(v)) {
        PyErr_Format(PyExc_TypeError, "hook %s must be callable", name);
        return -1;
    }
    Py_XSETREF(*slot, Py_NewRef(v));
    return 0;
}

/* _set_hooks(dict): called once by pyloop/__init__.py. */
static PyObject *
pl_module_set_hooks(PyObject *Py_UNUSED(m), PyObject *hooks)
{
    if (!PyDict_Check(hooks)) {
        PyErr_SetString(PyExc_TypeError, "_set_hooks() expects a dict");
        return NULL;
    }
    if (pl_module_set_hook(hooks, "handle_error", &pl_state.handle_error) < 0 ||
        pl_module_set_hook(hooks, "handle_repr", &pl_state.handle_repr) < 0 ||
        pl_module_set_hook(hooks, "extract_stack", &pl_state.extract_stack) < 0 ||
        pl_module_set_hook(hooks, "slow_callback", &pl_state.slow_callback) < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* The names of the transport kinds in _counters() and _count_transport(). */
static const char *const pl_counters_kind_names[PL_TRANSPORT_NKINDS] = {
    [PL_TRANSPORT_TCP] = "tcp",   [PL_TRANSPORT_UNIX] = "unix",
    [PL_TRANSPORT_UDP] = "udp",   [PL_TRANSPORT_TLS] = "tls",
    [PL_TRANSPORT_PIPE] = "pipe", [PL_TRANSPORT_SUBPROCESS] = "subprocess",
};

/* The weak references _count_transport() made, until their callback ran: a
 * weak reference must outlive its object for the callback to run, and one
 * kept by the object itself would die with it in a collected cycle. */
static PyObject *pl_counters_watched;

static int
pl_counters_add(PyObject *d, const char *name, long long v)
{
    PyObject *n = PyLong_FromLongLong(v);
    int rc = n == NULL ? -1 : PyDict_SetItemString(d, name, n);
    Py_XDECREF(n);
    return rc;
}

/* _counters(): {"handles_created": n, ..., "tcp_transports_created": n,
 * "tcp_transports_freed": n, ...} */
static PyObject *
pl_module_counters(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored))
{
    PyObject *d = PyDict_New();
    if (d == NULL)
        return NULL;
    if (pl_counters_add(d, "handles_created", pl_counters.handles_created) < 0 ||
        pl_counters_add(d, "handles_freed", pl_counters.handles_freed) < 0 ||
        pl_counters_add(d, "requests_created", pl_counters.requests_created) < 0 ||
        pl_counters_add(d, "requests_freed", pl_counters.requests_freed) < 0)
        goto error;
    for (int k = 0; k < PL_TRANSPORT_NKINDS; k++) {
        char name[64];
        PyOS_snprintf(name, sizeof(name), "%s_transports_created", pl_counters_kind_names[k]);
        if (pl_counters_add(d, name, pl_counters.transports_created[k]) < 0)
            goto error;
        PyOS_snprintf(name, sizeof(name), "%s_transports_freed", pl_counters_kind_names[k]);
        if (pl_counters_add(d, name, pl_counters.transports_freed[k]) < 0)
            goto error;
    }
    return d;
error:
    Py_DECREF(d);
    return NULL;
}

/* The weak reference callback of a counted Python transport; `kind` is the
 * index bound to it. */
static PyObject *
pl_counters_freed_cb(PyObject *kind, PyObject *ref)
{
    pl_counters.transports_freed[PyLong_AsLong(kind)]++;
    if (PySet_Discard(pl_counters_watched, ref) < 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyMethodDef pl_counters_freed_def = {"_transport_freed", pl_counters_freed_cb, METH_O,
                                            NULL};

/* _count_transport(kind, transport): a Python transport of `kind` was made;
 * it counts as freed when the object goes away. */
static PyObject *
pl_module_count_transport(PyObject *Py_UNUSED(m), PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *index = NULL, *cb = NULL, *ref = NULL;
    int k = 0;
    if (nargs != 2 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "_count_transport(kind: str, transport)");
        return NULL;
    }
    while (k < PL_TRANSPORT_NKINDS &&
           PyUnicode_CompareWithASCIIString(args[0], pl_counters_kind_names[k]) != 0)
        k++;
    if (k == PL_TRANSPORT_NKINDS) {
        PyErr_Format(PyExc_ValueError, "unknown transport kind %R", args[0]);
        return NULL;
    }
    index = PyLong_FromLong(k);
    cb = index ? PyCFunction_New(&pl_counters_freed_def, index) : NULL;
    ref = cb ? PyWeakref_NewRef(args[1], cb) : NULL;
    int rc = ref == NULL ? -1 : PySet_Add(pl_counters_watched, ref);
    Py_XDECREF(ref);
    Py_XDECREF(cb);
    Py_XDECREF(index);
    if (rc < 0)
        return NULL;
    pl_counters.transports_created[k]++;
    Py_RETURN_NONE;
}

/* libuv_version(): the version of the libuv this module runs on (the bundled one, or the system's with
 * PYLOOP_SYSTEM_LIBUV=1): asked of the library, not of the headers it was built with. */
static PyObject *
pl_module_libuv_version(PyObject *Py_UNUSED(m), PyObject *Py_UNUSED(ignored))
{
    return PyUnicode_FromString(uv_version_string());
}

#ifdef PL_LIBUV_BUNDLED
#define PL_LIBUV_LINKAGE "bundled"
#else
#define PL_LIBUV_LINKAGE "system"
#endif

static PyMethodDef pl_module_methods[] = {
    {"_set_hooks", pl_module_set_hooks, METH_O, NULL},
    {"_set_threadsafe_handle", pl_handle_set_threadsafe, METH_VARARGS, NULL},
    {"_spawn", PL_METH(pl_process_spawn), METH_FASTCALL, NULL},
    {"_counters", pl_module_counters, METH_NOARGS,
     "_counters()\n--\n\nlibuv handles and requests, and transports of each kind, created and "
     "freed so far."},
    {"_count_transport", PL_METH(pl_module_count_transport), METH_FASTCALL,
     "_count_transport(kind, transport)\n--\n\nCount a Python transport of `kind` as made, "
     "and as freed when it goes away."},
    {"libuv_version", pl_module_libuv_version, METH_NOARGS,
     "libuv_version()\n--\n\nThe version of the libuv pyloop runs on, as \"1.50.0\"."},
    {NULL}
};

static struct PyModuleDef pl_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "pyloop._core",
    .m_doc = "The C core of pyloop: an asyncio event loop on libuv.",
    .m_size = -1,
    .m_methods = pl_module_methods,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    PyObject *m = PyModule_Create(&pl_module_def);
    PyObject *asyncio = NULL;
    if (m == NULL)
        return NULL;
    asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL)
        goto error;
    pl_state.future_type = PyObject_GetAttrString(asyncio, "Future");
    if (pl_state.future_type == NULL)
        goto error;
    pl_state.task_type = PyObject_GetAttrString(asyncio, "Task");
    if (pl_state.task_type == NULL)
        goto error;
    pl_state.buffered_protocol_type = PyObject_GetAttrString(asyncio, "BufferedProtocol");
    if (pl_state.buffered_protocol_type == NULL)
        goto error;
    {
        PyObject *log = PyImport_ImportModule("asyncio.log");
        if (log == NULL)
            goto error;
        pl_state.logger = PyObject_GetAttrString(log, "logger");
        Py_DECREF(log);
        if (pl_state.logger == NULL)
            goto error;
    }
    pl_state.str_loop = PyUnicode_InternFromString("loop");
    pl_state.str_context = PyUnicode_InternFromString("context");
    pl_state.str_callback = PyUnicode_InternFromString("callback");
    pl_state.str_datagram_received = PyUnicode_InternFromString("datagram_received");
    if (!pl_state.str_loop || !pl_state.str_context || !pl_state.str_callback ||
        !pl_state.str_datagram_received)
        goto error;
    pl_state.kwnames_loop = PyTuple_Pack(1, pl_state.str_loop);
    if (pl_state.kwnames_loop == NULL)
        goto error;
    if (pl_counters_watched == NULL && (pl_counters_watched = PySet_New(NULL)) == NULL)
        goto error;
    if (pl_handle_init_types(m) < 0 || pl_loop_init_type(m) < 0 || pl_stream_init_types(m) < 0 ||
        pl_server_init_types(m) < 0 ||
        pl_pipe_init_types(m) < 0 ||
        pl_udp_init_types(m) < 0 || pl_tls_init_type(m) < 0 || pl_monitor_init(m) < 0 ||
        pl_fs_init_types(m) < 0 || pl_dns_init(m) < 0)
        goto error;
    if (PyModule_AddFunctions(m, pl_fs_methods) < 0)
        goto error;
    /* "bundled": libuv linked statically into this module; "system": the shared library pkg-config found */
    if (PyModule_AddStringConstant(m, "libuv_linkage", PL_LIBUV_LINKAGE) < 0)
        goto error;
    Py_DECREF(asyncio);
    return m;
error:
    Py_XDECREF(asyncio);
    Py_DECREF(m);
    return NULL;
}
