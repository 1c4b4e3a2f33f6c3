/* Server._clients on Python 3.13+.
 *
 * The stdlib's Server keeps every connection in a weakref.WeakSet: a weak
 * reference and a set slot per connection (about 145 bytes on 3.14), only
 * so that close_clients()/abort_clients() can reach them and _detach() can
 * tell when the last one left. pyloop's transports attached in C already
 * say which server they belong to (their `_server`, and a flag that the
 * attach was counted in C) and sit in the loop's list of open handles until
 * after they detach. So the set keeps only a count of those (stream.c moves
 * it on attach and detach) and finds them, when asked to list them, by
 * walking the loop's open handles. Anything else added from Python (the
 * Server's own _attach called by other code) goes to a WeakSet of its own,
 * made on first use, so what Python can do with the set behaves as before.
 * loop._start_serving puts one in place of the WeakSet of every
 * base_events.Server it starts. */
#include "server.h"
#include "stream.h"

typedef struct {
    PyObject_HEAD
    PLLoop *loop;
    Py_ssize_t count; /* transports attached in C and not detached yet */
    PyObject *others; /* weakref.WeakSet of what Python added, or NULL */
} PLServerClients;

static PyTypeObject PLServerClients_Type;

int
pl_server_clients_check(PyObject *o)
{
    return Py_TYPE(o) == &PLServerClients_Type;
}

int
pl_server_clients_count(PyObject *o, int delta)
{
    if (!pl_server_clients_check(o))
        return 1;
    PLServerClients *self = (PLServerClients *)o;
    if (self->count + delta < 0)
        return 1;
    self->count += delta;
    return 0;
}

Py_ssize_t
pl_server_clients_len(PyObject *o)
{
    PLServerClients *self = (PLServerClients *)o;
    if (self->others == NULL)
        return self->count;
    Py_ssize_t n = PyObject_Size(self->others);
    return n < 0 ? -1 : self->count + n;
}

/* Every member, into a new list or set (`as_set`). */
static PyObject *
pl_server_clients_snapshot(PLServerClients *self, int as_set)
{
    PyObject *into = as_set ? PySet_New(NULL) : PyList_New(0);
    if (into == NULL)
        return NULL;
    if (self->count > 0 && pl_stream_server_members(self->loop, (PyObject *)self, into) == NULL)
        goto error;
    if (self->others != NULL) {
        PyObject *it = PyObject_GetIter(self->others);
        if (it == NULL)
            goto error;
        PyObject *item;
        while ((item = PyIter_Next(it)) != NULL) {
            int rc = as_set ? PySet_Add(into, item) : PyList_Append(into, item);
            Py_DECREF(item);
            if (rc < 0)
                break;
        }
        Py_DECREF(it);
        if (PyErr_Occurred())
            goto error;
    }
    return into;

error:
    Py_DECREF(into);
    return NULL;
}

static PyObject *
ServerClients_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    PyObject *loop;
    if (kwds != NULL && PyDict_GET_SIZE(kwds) > 0) {
        PyErr_SetString(PyExc_TypeError, "ServerClients() takes no keyword arguments");
        return NULL;
    }
    if (!PyArg_UnpackTuple(args, "ServerClients", 1, 1, &loop))
        return NULL;
    if (!PyObject_TypeCheck(loop, &PLLoop_Type)) {
        PyErr_SetString(PyExc_TypeError, "ServerClients(loop): loop must be a pyloop loop");
        return NULL;
    }
    PLServerClients *self = (PLServerClients *)type->tp_alloc(type, 0);
    if (self == NULL)
        return NULL;
    self->loop = (PLLoop *)Py_NewRef(loop);
    return (PyObject *)self;
}

static int
ServerClients_traverse(PLServerClients *self, visitproc visit, void *arg)
{
    Py_VISIT(self->loop);
    Py_VISIT(self->others);
    return 0;
}

static int
ServerClients_clear(PLServerClients *self)
{
    Py_CLEAR(self->loop);
    Py_CLEAR(self->others);
    return 0;
}

static void
ServerClients_dealloc(PLServerClients *self)
{
    PyObject_GC_UnTrack(self);
    ServerClients_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* What Python adds: kept weakly, as the stdlib's set keeps it. */
static PyObject *
ServerClients_add(PLServerClients *self, PyObject *item)
{
    if (pl_stream_server_member(item, (PyObject *)self))
        Py_RETURN_NONE; /* attached in C already: a set holds it once */
    if (self->others == NULL) {
        PyObject *mod = PyImport_ImportModule("weakref");
        PyObject *cls = mod ? PyObject_GetAttrString(mod, "WeakSet") : NULL;
        Py_XDECREF(mod);
        self->others = cls ? PyObject_CallNoArgs(cls) : NULL;
        Py_XDECREF(cls);
        if (self->others == NULL)
            return NULL;
    }
    return PyObject_CallMethod(self->others, "add", "O", item);
}

static PyObject *
ServerClients_discard(PLServerClients *self, PyObject *item)
{
    if (pl_stream_server_member(item, (PyObject *)self)) {
        if (pl_stream_server_unlist(item) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    if (self->others == NULL)
        Py_RETURN_NONE;
    return PyObject_CallMethod(self->others, "discard", "O", item);
}

static PyObject *
ServerClients_copy(PLServerClients *self, PyObject *Py_UNUSED(ignored))
{
    return pl_server_clients_snapshot(self, 1);
}

static PyObject *
ServerClients_iter(PLServerClients *self)
{
    /* Over a snapshot: closing a member while iterating (close_clients)
     * changes the set under the walk otherwise. */
    PyObject *list = pl_server_clients_snapshot(self, 0);
    if (list == NULL)
        return NULL;
    PyObject *it = PyObject_GetIter(list);
    Py_DECREF(list);
    return it;
}

static Py_ssize_t
ServerClients_len(PLServerClients *self)
{
    return pl_server_clients_len((PyObject *)self);
}

static int
ServerClients_contains(PLServerClients *self, PyObject *item)
{
    if (pl_stream_server_member(item, (PyObject *)self))
        return 1;
    return self->others == NULL ? 0 : PySequence_Contains(self->others, item);
}

static PyObject *
ServerClients_repr(PLServerClients *self)
{
    Py_ssize_t n = pl_server_clients_len((PyObject *)self);
    return n < 0 ? NULL : PyUnicode_FromFormat("<pyloop ServerClients of %zd connections>", n);
}

static PyMethodDef ServerClients_methods[] = {
    {"add", (PyCFunction)ServerClients_add, METH_O, NULL},
    {"discard", (PyCFunction)ServerClients_discard, METH_O, NULL},
    {"copy", (PyCFunction)ServerClients_copy, METH_NOARGS, NULL},
    {NULL}
};

static PySequenceMethods ServerClients_as_sequence = {
    .sq_length = (lenfunc)ServerClients_len,
    .sq_contains = (objobjproc)ServerClients_contains,
};

static PyTypeObject PLServerClients_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyloop._core.ServerClients",
    .tp_doc = "ServerClients(loop): a server's connections (Server._clients, Python 3.13+)",
    .tp_basicsize = sizeof(PLServerClients),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_new = ServerClients_new,
    .tp_traverse = (traverseproc)ServerClients_traverse,
    .tp_clear = (inquiry)ServerClients_clear,
    .tp_dealloc = (destructor)ServerClients_dealloc,
    .tp_iter = (getiterfunc)ServerClients_iter,
    .tp_repr = (reprfunc)ServerClients_repr,
    .tp_as_sequence = &ServerClients_as_sequence,
    .tp_methods = ServerClients_methods,
};

int
pl_server_init_types(PyObject *module)
{
    if (PyType_Ready(&PLServerClients_Type) < 0)
        return -1;
    return PyModule_AddObjectRef(module, "ServerClients", (PyObject *)&PLServerClients_Type);
}
