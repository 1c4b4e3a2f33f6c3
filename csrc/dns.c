/* Name resolution without an executor: every lookup is one libuv work request
 * (uv_queue_work) whose worker calls the C library's getaddrinfo(3) or
 * getnameinfo(3) without the GIL; pl__dns_after_cb converts the answer on the
 * loop thread and resolves the request's asyncio.Future.
 *
 * Why uv_queue_work and not uv_getaddrinfo/uv_getnameinfo (the same thread
 * pool, the same one request per lookup): the answers must be the socket
 * module's, and libuv's wrappers are not that. uv_getaddrinfo runs the host
 * through libuv's own IDNA encoder (bytes hosts with non-ASCII bytes would be
 * rewritten, hosts over 255 bytes refused), refuses host=None with port=None
 * itself (the C library answers EAI_NONAME), and both abort() the process on
 * an EAI_* code libuv does not know (glibc's AI_IDN errors), which a Python
 * caller could reach through `flags`. Calling the C library ourselves keeps
 * the exact EAI_* code, and errno for EAI_SYSTEM read on the worker thread.
 *
 * The arguments are converted on the loop thread exactly as socketmodule.c
 * converts them (host: str through the "idna" codec, bytes as is, None; port:
 * int, str, bytes or None; family/type/proto/flags as C ints), so the errors
 * raised for bad arguments are the socket module's too. The bytes/str objects
 * the worker reads are held by the request until it completes.
 *
 * Lifetime: as csrc/fs.c. While libuv owns a request it holds a reference to
 * itself, the loop and the Future; pl_dns_req_release() drops them once. */
#include "dns.h"
#include "sockaddr.h"
#include "module.h"
#include "task.h"

#include <errno.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <uv.h>

typedef enum { PL_DNS_ADDRINFO, PL_DNS_NAMEINFO } pl_dns_kind;

/* A ring of the pending lookups (for loop teardown), its head a sentinel. */
typedef struct pl_dns_link {
    struct pl_dns_link *prev, *next;
} pl_dns_link;

typedef struct PLDnsReq {
    PyObject_HEAD
    uv_work_t work;
    pl_dns_kind kind;
    char pending;            /* libuv owns the request: the references below are held */
    PLLoop *loop;
    PyObject *future;
    PyObject *host_obj;      /* bytes whose buffer `host` points into (idna result or the caller's) */
    PyObject *port_obj;      /* str or bytes whose buffer `port` points into */
    const char *host;        /* NULL: no host */
    const char *port;        /* NULL: no port */
    char port_buf[32];       /* an int port, formatted as socketmodule.c does ("%ld") */
    struct addrinfo hints;
    struct addrinfo *res;    /* getaddrinfo's answer, freed by release */
    struct sockaddr_storage sa; /* getnameinfo's address */
    socklen_t salen;
    int ni_flags;
    int rc;                  /* the C library's return code */
    int sys_errno;           /* errno after EAI_SYSTEM, read on the worker */
    char *names;             /* getnameinfo's host and service buffers (NI_MAXHOST + NI_MAXSERV) */
    pl_dns_link link;        /* in pl_dns_pending while pending */
} PLDnsReq;

#define PL_DNS_SERV_LEN 32   /* NI_MAXSERV: what socketmodule.c gives getnameinfo for the service */

static PyTypeObject *PLDnsReq_Type;
static pl_dns_link pl_dns_pending = {&pl_dns_pending, &pl_dns_pending}; /* with the GIL only */
static PyObject *pl_dns_gaierror;            /* socket.gaierror */
static PyObject *pl_dns_address_family;      /* socket.AddressFamily */
static PyObject *pl_dns_socket_kind;         /* socket.SocketKind */
static PyObject *pl_dns_family_cache;        /* {int: AddressFamily member or the int} */
static PyObject *pl_dns_kind_cache;          /* {int: SocketKind member or the int} */
static PyObject *pl_dns_str_done, *pl_dns_str_set_result, *pl_dns_str_set_exception;
static PyObject *pl_dns_empty;

/* ---- the worker (no GIL: touches only the request's C fields) --------------- */

static void
pl__dns_work_cb(uv_work_t *work)
{
    PLDnsReq *self = (PLDnsReq *)((char *)work - offsetof(PLDnsReq, work));
    if (self->kind == PL_DNS_ADDRINFO)
        self->rc = getaddrinfo(self->host, self->port, &self->hints, &self->res);
    else
        self->rc = getnameinfo((struct sockaddr *)&self->sa, self->salen, self->names, NI_MAXHOST,
                               self->names + NI_MAXHOST, PL_DNS_SERV_LEN, self->ni_flags);
    if (self->rc == EAI_SYSTEM)
        self->sys_errno = errno;
}

/* ---- conversions on the loop thread -------------------------------------- */

/* socket.getaddrinfo() turns family and type into the IntEnum members when
 * there is one, the int otherwise. Members are singletons: a cache per value
 * gives the same objects without calling the enum class every time. */
static PyObject *
pl_dns_intenum(PyObject *cache, PyObject *enum_type, int value)
{
    PyObject *key = PyLong_FromLong(value), *member = NULL;
    if (key == NULL)
        return NULL;
    member = PyDict_GetItemWithError(cache, key);
    if (member != NULL) {
        Py_INCREF(member);
        goto cleanup;
    }
    if (PyErr_Occurred())
        goto cleanup;
    member = PyObject_CallOneArg(enum_type, key);
    if (member == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_ValueError))
            goto cleanup;
        PyErr_Clear();
        member = Py_NewRef(key);
    }
    if (PyDict_SetItem(cache, key, member) < 0)
        Py_CLEAR(member);
cleanup:
    Py_DECREF(key);
    return member;
}

/* getaddrinfo's list: [(family, type, proto, canonname, sockaddr), ...]. */
static PyObject *
pl_dns_addrinfo_list(const struct addrinfo *res)
{
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return NULL;
    for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        PyObject *family = NULL, *kind = NULL, *proto = NULL, *canon = NULL, *addr = NULL;
        PyObject *item = NULL;
        int rc = -1;
        family = pl_dns_intenum(pl_dns_family_cache, pl_dns_address_family, ai->ai_family);
        if (family == NULL)
            goto next;
        kind = pl_dns_intenum(pl_dns_kind_cache, pl_dns_socket_kind, ai->ai_socktype);
        if (kind == NULL)
            goto next;
        proto = PyLong_FromLong(ai->ai_protocol);
        if (proto == NULL)
            goto next;
        canon = ai->ai_canonname != NULL ? PyUnicode_FromString(ai->ai_canonname)
                                         : Py_NewRef(pl_dns_empty);
        if (canon == NULL)
            goto next;
        addr = pl_sockaddr_to_py(ai->ai_addr, ai->ai_addrlen);
        if (addr == NULL)
            goto next;
        item = PyTuple_Pack(5, family, kind, proto, canon, addr);
        if (item == NULL)
            goto next;
        rc = PyList_Append(list, item);
    next:
        Py_XDECREF(family);
        Py_XDECREF(kind);
        Py_XDECREF(proto);
        Py_XDECREF(canon);
        Py_XDECREF(addr);
        Py_XDECREF(item);
        if (rc < 0) {
            Py_DECREF(list);
            return NULL;
        }
    }
    return list;
}

/* The exception the socket module raises for a failed lookup: OSError from
 * errno for EAI_SYSTEM, socket.gaierror(code, gai_strerror(code)) otherwise. */
static PyObject *
pl_dns_error(int code, int sys_errno)
{
    if (code == EAI_SYSTEM) {
        errno = sys_errno;
        PyErr_SetFromErrno(PyExc_OSError);
        return NULL;
    }
    PyObject *args = Py_BuildValue("(is)", code, gai_strerror(code));
    if (args != NULL) {
        PyErr_SetObject(pl_dns_gaierror, args);
        Py_DECREF(args);
    }
    return NULL;
}

/* The lookup's outcome as a value, or NULL with its exception set. */
static PyObject *
pl_dns_outcome(PLDnsReq *self)
{
    if (self->rc != 0)
        return pl_dns_error(self->rc, self->sys_errno);
    if (self->kind == PL_DNS_ADDRINFO)
        return pl_dns_addrinfo_list(self->res);
    return Py_BuildValue("(ss)", self->names, self->names + NI_MAXHOST);
}

/* ---- completion ----------------------------------------------------------- */

/* The one function that gives back what a request held. */
static void
pl_dns_req_release(PLDnsReq *self)
{
    if (self->res != NULL) {
        freeaddrinfo(self->res);
        self->res = NULL;
    }
    PyMem_Free(self->names);
    self->names = NULL;
    Py_CLEAR(self->host_obj);
    Py_CLEAR(self->port_obj);
    Py_CLEAR(self->future);
    Py_CLEAR(self->loop);
    if (!self->pending)
        return;
    self->pending = 0;
    self->link.prev->next = self->link.next;
    self->link.next->prev = self->link.prev;
    self->link.prev = self->link.next = &self->link;
    pl_counters.requests_freed++;
    Py_DECREF(self); /* the reference libuv's ownership stood for */
}

/* Resolve the Future unless it is done already (cancelled while a worker ran
 * the lookup: the answer is dropped). -1 with an exception set on failure. */
static int
pl_dns_settle(PLDnsReq *self)
{
    PyObject *done = PyObject_CallMethodNoArgs(self->future, pl_dns_str_done);
    if (done == NULL)
        return -1;
    int delivered = done == Py_True;
    Py_DECREF(done);
    if (delivered)
        return 0;
    PyObject *method = pl_dns_str_set_result, *arg = pl_dns_outcome(self);
    if (arg == NULL) {
        /* A failed lookup, or a failed conversion (memory, a canonical name
         * that is not UTF-8): the awaiting task gets the error. */
        method = pl_dns_str_set_exception;
        arg = pl_err_fetch();
        if (arg == NULL)
            return 0; /* nothing raised after all: nothing to deliver */
    }
    PyObject *r = PyObject_CallMethodOneArg(self->future, method, arg);
    Py_DECREF(arg);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

static void
pl__dns_after_cb(uv_work_t *work, int status)
{
    pl_loop_gil_ensure(work->loop);
    PLDnsReq *self = (PLDnsReq *)((char *)work - offsetof(PLDnsReq, work));
    /* UV_ECANCELED: taken out of the pool before a worker ran it (the Future
     * was cancelled, or the loop is closing): nothing to deliver. A closed
     * loop has nobody to deliver to either. */
    if (status == 0 && self->loop->state == PL_LOOP_OPEN && pl_dns_settle(self) < 0) {
        if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt) ||
            PyErr_ExceptionMatches(PyExc_SystemExit))
            pl_loop_stash_exception(self->loop);
        else
            PyErr_WriteUnraisable((PyObject *)self);
    }
    pl_dns_req_release(self);
}

/* ---- submission ----------------------------------------------------------- */

static PLDnsReq *
pl_dns_req_new(PLLoop *loop, pl_dns_kind kind)
{
    if (pl_loop_check_closed(loop) < 0 || pl_loop_check_uv_thread(loop) < 0)
        return NULL;
    PLDnsReq *self = PyObject_New(PLDnsReq, PLDnsReq_Type);
    if (self == NULL)
        return NULL;
    memset((char *)self + offsetof(PLDnsReq, work), 0, sizeof(*self) - offsetof(PLDnsReq, work));
    self->kind = kind;
    self->loop = (PLLoop *)Py_NewRef((PyObject *)loop);
    return self;
}

/* Hand a prepared request to libuv (prepared < 0: its preparation failed,
 * an exception is set). Consumes the caller's reference; returns a new
 * reference to the request, or NULL. */
static PyObject *
pl_dns_req_submit(PLDnsReq *self, int prepared)
{
    PyObject *result = NULL, *stack[1] = {(PyObject *)self->loop};
    int err;
    if (prepared < 0)
        goto cleanup;
    /* Future() binds to the running loop as Future(loop=...) does, without
     * the keyword's dict and parse, when that loop is this one. */
    self->future = pl_task_loop_is_current(self->loop)
                       ? PyObject_Vectorcall(pl_state.future_type, NULL, 0, NULL)
                       : PyObject_Vectorcall(pl_state.future_type, stack, 0, pl_state.kwnames_loop);
    if (self->future == NULL)
        goto cleanup;
    err = uv_queue_work(&self->loop->uv, &self->work, pl__dns_work_cb, pl__dns_after_cb);
    if (err < 0) {
        PyErr_Format(PyExc_RuntimeError, "libuv refused the lookup: %s", uv_strerror(err));
        goto cleanup;
    }
    /* libuv accepted the request: from here it owns a reference to us. */
    self->pending = 1;
    Py_INCREF(self);
    pl_counters.requests_created++;
    self->link.next = pl_dns_pending.next;
    self->link.prev = &pl_dns_pending;
    pl_dns_pending.next->prev = &self->link;
    pl_dns_pending.next = &self->link;
    result = Py_NewRef((PyObject *)self);
cleanup:
    if (result == NULL)
        pl_dns_req_release(self);
    Py_DECREF(self);
    return result;
}

static int pl_dns_addrinfo_args(PLDnsReq *self, PyObject *host, PyObject *port,
                                const char *port_text);

/* dns_getaddrinfo(loop, host, port, family, type, proto, flags) -> request,
 * or None for arguments left to socket.getaddrinfo */
static PyObject *
pl_dns_getaddrinfo(PyObject *Py_UNUSED(m), PyObject *args)
{
    PyObject *loop, *host, *port;
    int family, socktype, proto, flags;
    char port_buf[32] = "";
    PLDnsReq *self;

    if (!PyArg_ParseTuple(args, "O!OOiiii:getaddrinfo", &PLLoop_Type, &loop, &host, &port, &family,
                          &socktype, &proto, &flags))
        return NULL;
    /* Only the argument types every supported Python converts alike; the
     * rest (ints beyond a C long, bools and other int subclasses, objects with
     * __index__, which 3.14 accepts and 3.11 refuses, ...) go to the running
     * Python's own socket.getaddrinfo: None tells the caller so. */
    if (!(host == Py_None || PyUnicode_Check(host) || PyBytes_Check(host)) ||
        !(port == Py_None || PyUnicode_Check(port) || PyBytes_Check(port) ||
          PyLong_CheckExact(port)))
        Py_RETURN_NONE;
    if (PyLong_CheckExact(port)) {
        int overflow;
        long value = PyLong_AsLongAndOverflow(port, &overflow);
        if (overflow)
            Py_RETURN_NONE;
        if (value == -1 && PyErr_Occurred())
            return NULL;
        snprintf(port_buf, sizeof(port_buf), "%ld", value);
    }
    self = pl_dns_req_new((PLLoop *)loop, PL_DNS_ADDRINFO);
    if (self == NULL)
        return NULL;
    self->hints.ai_family = family;
    self->hints.ai_socktype = socktype;
    self->hints.ai_protocol = proto;
    self->hints.ai_flags = flags;
    if (PySys_Audit("socket.getaddrinfo", "OOiii", host, port, family, socktype, proto) < 0)
        return pl_dns_req_submit(self, -1);
    return pl_dns_req_submit(self, pl_dns_addrinfo_args(self, host, port, port_buf));
}

/* Whether the "idna" codec would give back an ASCII host as it is: every
 * label but the last 1 to 63 characters long, the last under 64 (the codec's
 * ASCII shortcut on every supported Python; any other host goes through the
 * codec, which raises its own version's error or encodes). The codec is
 * Python code: skipping it is most of a lookup's cost on the loop thread. */
static int
pl_dns_idna_is_identity(PyObject *host)
{
    if (!PyUnicode_IS_ASCII(host))
        return 0;
    const char *c = (const char *)PyUnicode_DATA(host);
    Py_ssize_t n = PyUnicode_GET_LENGTH(host), label = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (c[i] != '.') {
            label++;
            continue;
        }
        if (label == 0 || label >= 64)
            return 0;
        label = 0;
    }
    return label < 64;
}

/* Where the worker finds host and port: C strings inside objects the
 * request holds until it completes. 0, or -1 with an exception set. */
static int
pl_dns_addrinfo_args(PLDnsReq *self, PyObject *host, PyObject *port, const char *port_text)
{
    if (PyUnicode_Check(host) && pl_dns_idna_is_identity(host)) {
        self->host_obj = Py_NewRef(host);
        self->host = (const char *)PyUnicode_DATA(host);
    }
    else if (PyUnicode_Check(host)) {
        self->host_obj = PyUnicode_AsEncodedString(host, "idna", NULL);
        if (self->host_obj == NULL)
            return -1;
        self->host = PyBytes_AS_STRING(self->host_obj);
    }
    else if (PyBytes_Check(host)) {
        self->host_obj = Py_NewRef(host);
        self->host = PyBytes_AS_STRING(host);
    }
    if (PyLong_CheckExact(port)) {
        memcpy(self->port_buf, port_text, sizeof(self->port_buf));
        self->port = self->port_buf;
    }
    else if (PyUnicode_Check(port)) {
        /* the UTF-8 buffer lives in the str object, held while pending */
        self->port = PyUnicode_AsUTF8(port);
        if (self->port == NULL)
            return -1;
        self->port_obj = Py_NewRef(port);
    }
    else if (PyBytes_Check(port)) {
        self->port_obj = Py_NewRef(port);
        self->port = PyBytes_AS_STRING(port);
    }
    return 0;
}

/* The socket module's getnameinfo first turns (host, port[, flowinfo,
 * scope_id]) into a sockaddr with a numeric-only getaddrinfo (no lookup, so
 * it runs here, on the loop thread); the lookup proper goes to the pool. */
static int
pl_dns_nameinfo_address(PLDnsReq *self, PyObject *sa)
{
    const char *hostp;
    int port;
    unsigned int flowinfo = 0, scope_id = 0;
    char pbuf[32];
    struct addrinfo hints, *res = NULL;
    int rc = -1, err;

    if (!PyTuple_Check(sa)) {
        PyErr_SetString(PyExc_TypeError, "getnameinfo() argument 1 must be a tuple");
        return -1;
    }
    if (!PyArg_ParseTuple(sa, "si|II;getnameinfo(): illegal sockaddr argument", &hostp, &port,
                          &flowinfo, &scope_id))
        return -1;
    if (flowinfo > 0xfffff) {
        PyErr_SetString(PyExc_OverflowError, "getnameinfo(): flowinfo must be 0-1048575.");
        return -1;
    }
    if (PySys_Audit("socket.getnameinfo", "(O)", sa) < 0)
        return -1;
    snprintf(pbuf, sizeof(pbuf), "%d", port);
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM; /* a numeric service needs a socket type */
    hints.ai_flags = AI_NUMERICHOST; /* never a lookup on the loop thread */
    Py_BEGIN_ALLOW_THREADS
    err = getaddrinfo(hostp, pbuf, &hints, &res);
    Py_END_ALLOW_THREADS
    if (err != 0) {
        pl_dns_error(err, errno);
        goto cleanup;
    }
    if (res->ai_next != NULL) {
        PyErr_SetString(PyExc_OSError, "sockaddr resolved to multiple addresses");
        goto cleanup;
    }
    if (res->ai_family == AF_INET && PyTuple_GET_SIZE(sa) != 2) {
        PyErr_SetString(PyExc_OSError, "IPv4 sockaddr must be 2 tuple");
        goto cleanup;
    }
    if (res->ai_addrlen > sizeof(self->sa)) {
        PyErr_SetString(PyExc_OSError, "getnameinfo(): address too long");
        goto cleanup;
    }
    memcpy(&self->sa, res->ai_addr, res->ai_addrlen);
    self->salen = (socklen_t)res->ai_addrlen;
    if (res->ai_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&self->sa;
        in6->sin6_flowinfo = htonl(flowinfo);
        in6->sin6_scope_id = scope_id;
    }
    rc = 0;
cleanup:
    if (res != NULL)
        freeaddrinfo(res);
    return rc;
}

/* dns_getnameinfo(loop, sockaddr, flags) -> request */
static PyObject *
pl_dns_getnameinfo(PyObject *Py_UNUSED(m), PyObject *args)
{
    PyObject *loop, *sa;
    int flags;
    PLDnsReq *self;

    if (!PyArg_ParseTuple(args, "O!Oi:getnameinfo", &PLLoop_Type, &loop, &sa, &flags))
        return NULL;
    self = pl_dns_req_new((PLLoop *)loop, PL_DNS_NAMEINFO);
    if (self == NULL)
        return NULL;
    self->ni_flags = flags;
    if (pl_dns_nameinfo_address(self, sa) < 0)
        return pl_dns_req_submit(self, -1);
    self->names = PyMem_Malloc(NI_MAXHOST + PL_DNS_SERV_LEN);
    if (self->names == NULL)
        PyErr_NoMemory();
    return pl_dns_req_submit(self, self->names == NULL ? -1 : 0);
}

void
pl_dns_cancel_all(PLLoop *loop)
{
    for (pl_dns_link *l = pl_dns_pending.next; l != &pl_dns_pending; l = l->next) {
        PLDnsReq *r = (PLDnsReq *)((char *)l - offsetof(PLDnsReq, link));
        if (r->loop == loop)
            uv_cancel((uv_req_t *)&r->work);
    }
}

/* ---- the request type ------------------------------------------------------- */

static PyObject *
PLDnsReq_cancel(PLDnsReq *self, PyObject *Py_UNUSED(ignored))
{
    /* Still queued: out of the pool (the after-callback sees UV_ECANCELED).
     * Already running: the worker finishes, pl_dns_settle drops the answer. */
    if (self->pending && pl_loop_check_uv_thread(self->loop) == 0 &&
        uv_cancel((uv_req_t *)&self->work) == 0)
        Py_RETURN_TRUE;
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_FALSE;
}

static PyObject *
PLDnsReq_get_pending(PLDnsReq *self, void *Py_UNUSED(c))
{
    return PyBool_FromLong(self->pending);
}

static PyObject *
PLDnsReq_get_future(PLDnsReq *self, void *Py_UNUSED(c))
{
    if (self->future == NULL)
        Py_RETURN_NONE;
    return Py_NewRef(self->future);
}

static void
PLDnsReq_dealloc(PLDnsReq *self)
{
    /* Only reached when not pending: libuv's reference keeps it alive. */
    PyTypeObject *tp = Py_TYPE(self);
    pl_dns_req_release(self);
    PyObject_Free(self);
    Py_DECREF(tp); /* instances of a heap type own a reference to it */
}

static PyMethodDef PLDnsReq_methods[] = {
    {"cancel", (PyCFunction)PLDnsReq_cancel, METH_NOARGS,
     "cancel($self)\n--\n\nTake the lookup out of the pool if no worker has started it."},
    {NULL}
};

static PyGetSetDef PLDnsReq_getset[] = {
    {"future", (getter)PLDnsReq_get_future, NULL, NULL, NULL},
    {"pending", (getter)PLDnsReq_get_pending, NULL, NULL, NULL},
    {NULL}
};

static PyType_Slot PLDnsReq_slots[] = {
    {Py_tp_dealloc, PLDnsReq_dealloc},
    {Py_tp_methods, PLDnsReq_methods},
    {Py_tp_getset, PLDnsReq_getset},
    {Py_tp_doc, "A pending name lookup (made by pyloop._core.dns_* only)."},
    {0, NULL}
};

static PyType_Spec PLDnsReq_spec = {
    .name = "pyloop._core.DnsRequest",
    .basicsize = sizeof(PLDnsReq),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = PLDnsReq_slots,
};

static PyMethodDef pl_dns_methods[] = {
    {"dns_getaddrinfo", pl_dns_getaddrinfo, METH_VARARGS,
     "dns_getaddrinfo(loop, host, port, family, type, proto, flags)\n--\n\n"
     "Start socket.getaddrinfo() on libuv's thread pool; a request with .future."},
    {"dns_getnameinfo", pl_dns_getnameinfo, METH_VARARGS,
     "dns_getnameinfo(loop, sockaddr, flags)\n--\n\n"
     "Start socket.getnameinfo() on libuv's thread pool; a request with .future."},
    {NULL}
};

int
pl_dns_init(PyObject *module)
{
    PyObject *socket_mod = PyImport_ImportModule("socket");
    int rc = -1;
    if (socket_mod == NULL)
        return -1;
    pl_dns_gaierror = PyObject_GetAttrString(socket_mod, "gaierror");
    pl_dns_address_family = PyObject_GetAttrString(socket_mod, "AddressFamily");
    pl_dns_socket_kind = PyObject_GetAttrString(socket_mod, "SocketKind");
    pl_dns_family_cache = PyDict_New();
    pl_dns_kind_cache = PyDict_New();
    pl_dns_str_done = PyUnicode_InternFromString("done");
    pl_dns_str_set_result = PyUnicode_InternFromString("set_result");
    pl_dns_str_set_exception = PyUnicode_InternFromString("set_exception");
    pl_dns_empty = PyUnicode_FromString("");
    if (!pl_dns_gaierror || !pl_dns_address_family || !pl_dns_socket_kind || !pl_dns_family_cache ||
        !pl_dns_kind_cache || !pl_dns_str_done || !pl_dns_str_set_result ||
        !pl_dns_str_set_exception || !pl_dns_empty)
        goto cleanup;
    PLDnsReq_Type = (PyTypeObject *)PyType_FromSpec(&PLDnsReq_spec);
    if (PLDnsReq_Type == NULL)
        goto cleanup;
    if (PyModule_AddFunctions(module, pl_dns_methods) < 0)
        goto cleanup;
    rc = 0;
cleanup:
    Py_DECREF(socket_mod);
    return rc;
}
