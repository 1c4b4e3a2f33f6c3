/* The base of every libuv-backed transport (stream, UDP): what they share
 * lives here once. A transport's struct starts with PL_UVHANDLE_HEAD (as
 * every libuv handle starts with UV_HANDLE_FIELDS), so a PLUVHandle pointer
 * reaches the common fields of any of them; what differs per kind is in a
 * pl_uvh_ops table the loop and this file call through. */
#ifndef PL_UVHANDLE_H
#define PL_UVHANDLE_H

#include "loop.h"
#include "monitor_hooks.h"

typedef enum {
    PL_UVH_INIT = 0, /* allocated; no socket attached yet */
    PL_UVH_OPEN,     /* attached; reads and writes allowed */
    PL_UVH_CLOSING,  /* uv_close called, close callback pending */
    PL_UVH_CLOSED    /* released (the libuv handle's memory freed) */
} pl_uvh_state;

struct PLUVHandle;

typedef struct {
    /* loop.close() under this open transport: no protocol callbacks any
     * more, only release the handle (and with it the self-reference). */
    void (*close_for_loop)(struct PLUVHandle *h);
    /* References libuv's pending requests hold on the transport. */
    size_t (*pending_refs)(struct PLUVHandle *h);
    /* Drop the connection with `exc` (NULL: none), connection_lost on the
     * next pass: the stdlib's _force_close. -1 with an error set. */
    int (*force_close)(struct PLUVHandle *h, PyObject *exc);
    /* What get_write_buffer_size() reports, which flow control compares. */
    Py_ssize_t (*write_size)(struct PLUVHandle *h);
    /* 1 when the fd was closed behind the transport's back (os.close): the
     * transport was dropped with OSError(EBADF); 0 while it is open. */
    int (*check_fd)(struct PLUVHandle *h);
    /* Start receiving (a no-op unless open, not paused, not closing), and
     * stop (close(), a lost connection). */
    int (*start_reading)(struct PLUVHandle *h);
    void (*stop_reading)(struct PLUVHandle *h);
    /* pause_reading()/resume_reading() after the common checks, with
     * `paused` already updated. -1 with the error set. */
    void (*pause)(struct PLUVHandle *h);
    int (*resume)(struct PLUVHandle *h);
    /* The kind's own object references, as offsets in its struct (-1 ends
     * the list): traversed and cleared by the base. */
    const Py_ssize_t *fields;
    /* Anything else tp_clear must let go of (NULL: nothing). */
    void (*release)(struct PLUVHandle *h);
    /* The transport kind the counters file it under (module.h's
     * pl_transport_kind); NULL: the kind its libuv handle's type says. */
    int (*counter_kind)(struct PLUVHandle *h);
} pl_uvh_ops;

/* The raw-bytes-in hook: a protocol that takes bytes read into the loop's
 * shared buffer straight from C (TLS records into the incoming BIO), in
 * place of data_received/get_buffer. 0, or -1 with the error set. */
typedef int (*pl_uvh_raw_in_fn)(PyObject *protocol, const char *buf, Py_ssize_t n);
/* Given a protocol, the hook that takes its bytes, or NULL for none. */
typedef pl_uvh_raw_in_fn (*pl_uvh_raw_in_probe)(PyObject *protocol);

#define PL_UVHANDLE_HEAD                                                                    \
    PyObject_HEAD                                                                           \
    /* Same offset as asyncio.BaseTransport's `_extra` slot: the transport                \
     * types are real subclasses of asyncio's and the slot is shared. */                   \
    PyObject *extra;                                                                        \
    PLLoop *loop;                                                                           \
    const pl_uvh_ops *ops;                                                                  \
    void *uvh;            /* the libuv handle (PyMem), freed in its close callback */       \
    PyObject *protocol;                                                                     \
    PyObject *sock;       /* the Python socket whose fd the transport uses */              \
    PyObject *context;    /* the contextvars context protocol callbacks run in */          \
    PyObject *server;     /* `_server`, as the stdlib's transports keep it */              \
    PyObject *dict;       /* 3.11: instance attributes (3.12+: a managed dict) */        \
    PyObject *weakreflist;                                                                  \
    struct PLUVHandle *open_prev; /* the loop's list of open libuv handles */              \
    struct PLUVHandle *open_next;                                                           \
    pl_uvh_state state;                                                                     \
    int conn_lost;        /* as asyncio: > 0 once the connection is lost */                 \
    char closing;         /* close()/abort() called or connection lost */                  \
    char paused;          /* pause_reading() in effect */                                   \
    char reading;         /* the libuv read (or poller registration) is active */          \
    char protocol_connected;                                                                \
    char protocol_paused; /* pause_writing() was called */                                  \
    /* The transport's own steps (connection_lost after close()) are scheduled              \
     * in `context` when the creator gave one (3.15's stream transports keep              \
     * it), else in a copy of the context current then, as the stdlib's. */               \
    char context_given;                                                                     \
    Py_ssize_t high_water;                                                                  \
    Py_ssize_t low_water;

typedef struct PLUVHandle {
    PL_UVHANDLE_HEAD
} PLUVHandle;

#if PL_MANAGED_DICT
#define PL_UVH_DICT_MEMBER
#else
#define PL_UVH_DICT_MEMBER \
    {"__dictoffset__", T_PYSSIZET, offsetof(PLUVHandle, dict), READONLY, NULL},
#endif
/* Type flags every transport type has. */
#define PL_UVH_TPFLAGS (Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | PL_MANAGED_DICT_FLAG)

/* Members every transport type lists (weak references, instance dict, the
 * stdlib transports' private state libraries read). */
#define PL_UVH_MEMBERS                                                                      \
    {"__weaklistoffset__", T_PYSSIZET, offsetof(PLUVHandle, weakreflist), READONLY, NULL},  \
    PL_UVH_DICT_MEMBER                                                                      \
    {"_loop", T_OBJECT, offsetof(PLUVHandle, loop), READONLY, NULL},                        \
    {"_protocol", T_OBJECT, offsetof(PLUVHandle, protocol), READONLY, NULL},                \
    {"_context", T_OBJECT, offsetof(PLUVHandle, context), READONLY, NULL},                  \
    {"_server", T_OBJECT, offsetof(PLUVHandle, server), 0, NULL},                           \
    {"_closing", T_BOOL, offsetof(PLUVHandle, closing), READONLY, NULL},                    \
    {"_paused", T_BOOL, offsetof(PLUVHandle, paused), READONLY, NULL},                      \
    {"_conn_lost", T_INT, offsetof(PLUVHandle, conn_lost), READONLY, NULL},                 \
    {"_protocol_paused", T_BOOL, offsetof(PLUVHandle, protocol_paused), READONLY, NULL},    \
    {"_high_water", T_PYSSIZET, offsetof(PLUVHandle, high_water), READONLY, NULL},          \
    {"_low_water", T_PYSSIZET, offsetof(PLUVHandle, low_water), READONLY, NULL}

/* Methods every transport type lists, implemented once here. */
PyObject *pl_uvh_get_extra_info(PyObject *self, PyObject *args, PyObject *kwds);
PyObject *pl_uvh_get_protocol(PyObject *self, PyObject *ignored);
PyObject *pl_uvh_is_closing(PyObject *self, PyObject *ignored);
PyObject *pl_uvh_abort(PyObject *self, PyObject *ignored);
PyObject *pl_uvh_force_close_meth(PyObject *self, PyObject *exc);
PyObject *pl_uvh_get_write_buffer_size(PyObject *self, PyObject *ignored);
PyObject *pl_uvh_get_write_buffer_limits(PyObject *self, PyObject *ignored);
PyObject *pl_uvh_set_write_buffer_limits(PyObject *self, PyObject *args, PyObject *kwds);
PyObject *pl_uvh_get_sock(PyObject *self, void *closure);
PyObject *pl_uvh_is_reading(PyObject *self, PyObject *ignored);
PyObject *pl_uvh_pause_reading(PyObject *self, PyObject *ignored);
PyObject *pl_uvh_resume_reading(PyObject *self, PyObject *ignored);
PyObject *pl_uvh_start_reading_meth(PyObject *self, PyObject *ignored);
PyObject *pl_uvh_close_meth(PyObject *self, PyObject *ignored);
PyObject *pl_uvh_repr(PyObject *self);
PyObject *pl_uvh_tp_new(PyTypeObject *type, PyObject *args, PyObject *kwds);
void pl_uvh_dealloc(PyObject *self);

#define PL_UVH_METHODS                                                                      \
    {"get_extra_info", PL_METH(pl_uvh_get_extra_info), METH_VARARGS | METH_KEYWORDS, NULL}, \
    {"get_protocol", pl_uvh_get_protocol, METH_NOARGS, NULL},                               \
    {"is_closing", pl_uvh_is_closing, METH_NOARGS, NULL},                                   \
    {"abort", pl_uvh_abort, METH_NOARGS, NULL},                                             \
    {"_force_close", pl_uvh_force_close_meth, METH_O, NULL},                                \
    {"get_write_buffer_size", pl_uvh_get_write_buffer_size, METH_NOARGS, NULL},             \
    {"get_write_buffer_limits", pl_uvh_get_write_buffer_limits, METH_NOARGS, NULL},         \
    {"set_write_buffer_limits", PL_METH(pl_uvh_set_write_buffer_limits),                    \
     METH_VARARGS | METH_KEYWORDS, NULL},                                                   \
    {"close", pl_uvh_close_meth, METH_NOARGS, NULL},                                        \
    {"is_reading", pl_uvh_is_reading, METH_NOARGS, NULL},                                   \
    {"pause_reading", pl_uvh_pause_reading, METH_NOARGS, NULL},                             \
    {"resume_reading", pl_uvh_resume_reading, METH_NOARGS, NULL},                           \
    {"_start_reading", pl_uvh_start_reading_meth, METH_NOARGS, NULL}

/* A transport type's spec `var` (named `qualname`, instances `ctype`): the
 * base's slots with the kind's methods, members and getset tables. */
#define PL_UVH_TYPE_SPEC(var, qualname, ctype, methods, members, getset)                    \
    static PyType_Slot var##_slots[] = {                                                    \
        {Py_tp_new, pl_uvh_tp_new},   {Py_tp_dealloc, pl_uvh_dealloc},                       \
        {Py_tp_traverse, pl_uvh_traverse}, {Py_tp_clear, pl_uvh_clear},                     \
        {Py_tp_repr, pl_uvh_repr},    {Py_tp_methods, (methods)},                           \
        {Py_tp_members, (members)},   {Py_tp_getset, (getset)},                              \
        {0, NULL}};                                                                         \
    static PyType_Spec var = {.name = (qualname), .basicsize = sizeof(ctype),               \
                              .flags = PL_UVH_TPFLAGS, .slots = var##_slots}

#define PL_UVH_GETSET {"_sock", pl_uvh_get_sock, NULL, NULL, NULL}

/* A transport type as a subclass of asyncio's classes named in `bases`
 * (NULL-terminated), after checking that `extra` sits where they keep
 * `_extra`; added to the module under `name`. NULL with the error set. */
PyObject *pl_uvh_make_type(PyObject *module, PyType_Spec *spec, const char *const *bases,
                           const char *name);

/* The first steps of every transport's creation: a new instance of `type`
 * on `loop` with its ops, extra dict, default water marks and the context
 * its protocol callbacks will run in (`context`, or a copy of the current
 * one when None/NULL; anything else but a Context is a TypeError). NULL with
 * the error set. */
PLUVHandle *pl_uvh_new(PyTypeObject *type, PLLoop *loop, const pl_uvh_ops *ops,
                       PyObject *extra, PyObject *context);

/* sock.fileno() as a valid descriptor, or -1 with ValueError/the error. */
int pl_uvh_sock_fd(PyObject *sock);

/* `uvh`, initialised on the loop by the caller (and counted), now owned by
 * `h`: open, on the loop's list, holding a reference to `h` until its close
 * callback ran. */
void pl_uvh_attach(PLUVHandle *h, uv_handle_t *uvh);
/* An initialised libuv handle that never got attached (its open failed):
 * closed and freed, without touching any transport. */
void pl_uvh_discard(uv_handle_t *uvh);
/* uv_close the open handle (the socket object detached first: libuv closes
 * the fd). A no-op unless open. */
void pl_uvh_close(PLUVHandle *h);

/* The loop's side: close every open transport (loop.close()), and visit
 * the references libuv holds on their behalf (the loop's tp_traverse). */
void pl_uvh_close_all(PLLoop *loop);
int pl_uvh_traverse_all(PLLoop *loop, visitproc visit, void *arg);

/* tp_traverse / tp_clear of every transport type: the common fields and
 * the kind's (ops->fields, ops->release); pl_uvh_dealloc calls tp_clear. */
int pl_uvh_traverse(PyObject *self, visitproc visit, void *arg);
int pl_uvh_clear(PyObject *self);

/* After submitting a libuv request (`req`, PyMem-allocated) with result
 * `err`: on failure the request is freed and the error raised (-1); on
 * success it is counted (0), and the caller takes the references it needs. */
int pl_uvh_req_started(void *req, int err);

/* A write request of a stream-like kind: `len` bytes inside `owner`, with
 * references to its transport and to `owner` until its callback ran. */
typedef struct {
    uv_write_t req;
    PLUVHandle *h;    /* strong */
    PyObject *owner;  /* strong: the bytes object the buffer points into */
    size_t len;
} pl_uvh_write_req;

/* uv_write `len` bytes at `base` (inside `owner`) on the transport's libuv
 * stream, completed by `cb`: 0 with the request counted and its references
 * taken (the kind adds it to its own queue figures), -1 with the error set. */
int pl_uvh_write_start(PLUVHandle *h, PyObject *owner, char *base, size_t len, uv_write_cb cb);
/* First thing in that callback: the request released (its bytes counted as
 * written when `status` is 0); its transport, whose reference the caller
 * drops when done, and its length in *len. */
PLUVHandle *pl_uvh_write_finish(uv_write_t *ureq, int status, size_t *len);

/* Run `self.<name>(arg)` (no argument when arg is NULL) on the next loop
 * pass, as the stdlib's transports schedule their own steps: in the
 * transport's context when one was given at creation, else in a copy of the
 * current one. -1 with the error set. */
int pl_uvh_call_soon(PLUVHandle *h, const char *name, PyObject *arg);

/* The interned string for `name`, a string literal (new reference; NULL
 * with the error set): what the per-connection lookups by name use. */
PyObject *pl_uvh_name(const char *name);

/* Around protocol calls made from a libuv callback: the transport's context
 * entered, as the stdlib runs them in the handle that captured it. */
static inline int
pl_uvh_enter(PLUVHandle *h)
{
    if (h->context == NULL)
        return 0;
    if (PyContext_Enter(h->context) < 0) {
        /* Entered already further up: it is the current one. */
        PyErr_Clear();
        return 0;
    }
    return 1;
}

static inline void
pl_uvh_exit(PLUVHandle *h, int entered)
{
    if (entered && PyContext_Exit(h->context) < 0)
        PyErr_WriteUnraisable((PyObject *)h);
    /* every libuv callback that runs protocol code ends here: where
     * pyloop.monitor times it (a slow data_received is a slow callback) */
    if (h->loop->monitor != NULL)
        pl_monitor_io_end(h->loop, (PyObject *)h);
}

/* Error routing, the stdlib's policies:
 * - report: the current exception goes to the loop's exception handler with
 *   `message`, the transport and its protocol; the transport stays open.
 * - fatal (_fatal_error): reported unless it is an OSError (the peer's
 *   doing: logged in debug mode only), then the connection is dropped with
 *   it through ops->force_close.
 * - callback_error: what protocol code raised inside a libuv callback:
 *   KeyboardInterrupt/SystemExit stop the loop (run_forever re-raises
 *   them), anything else is fatal.
 * Each clears the current exception. */
void pl_uvh_report(PLUVHandle *h, const char *message);
void pl_uvh_fatal(PLUVHandle *h, const char *message);
void pl_uvh_callback_error(PLUVHandle *h, const char *message);

/* A write to a lost connection: not an error, as in the stdlib, but logged
 * with `message` (the stdlib's words for the kind) once it keeps happening.
 * 0, or -1 when logging raised. */
int pl_uvh_lost_write(PLUVHandle *h, const char *message);
/* The protocol's connection_lost(exc) if it was connected: NULL, or what it
 * raised (fetched, for pl_uvh_lost_finish once the teardown ran). */
PyObject *pl_uvh_call_lost(PLUVHandle *h, PyObject *exc);
/* The end of _call_connection_lost: `r` is the teardown's last call's
 * result. connection_lost's error `err` is raised first (a failed `r` then
 * goes to the unraisable hook), else `r`'s; None when neither failed. */
PyObject *pl_uvh_lost_finish(PLUVHandle *h, PyObject *r, PyObject *err);

/* Flow control against the water marks with `size` queued: the protocol's
 * pause_writing()/resume_writing(), whose ordinary exceptions go to the
 * exception handler. -1 only with KeyboardInterrupt/SystemExit set (the
 * caller raises it, or stashes it inside a libuv callback). */
int pl_uvh_maybe_pause(PLUVHandle *h, Py_ssize_t size);
int pl_uvh_maybe_resume(PLUVHandle *h, Py_ssize_t size);

/* After starting libuv's reads with result `err`: `reading` set, or -1 with
 * the error raised. */
int pl_uvh_reading_started(PLUVHandle *h, int err);

/* The ops table of a kind whose functions follow the naming convention
 * pl_<kind>_op_<slot>. */
#define PL_UVH_OPS(k)                                                                    \
    {                                                                                       \
        .fields = pl_##k##_fields, .release = pl_##k##_op_release,                          \
        .close_for_loop = pl_##k##_op_close_for_loop,                                 \
        .pending_refs = pl_##k##_op_pending_refs, .force_close = pl_##k##_op_force_close, \
        .write_size = pl_##k##_op_write_size, .check_fd = pl_##k##_op_check_fd,       \
        .start_reading = pl_##k##_op_start_reading,                                   \
        .stop_reading = pl_##k##_op_stop_reading, .pause = pl_##k##_op_pause,         \
        .resume = pl_##k##_op_resume,                                                    \
    }

/* The raw-bytes-in hooks (at most a few: TLS registers one at import). */
int pl_uvh_register_raw_in(pl_uvh_raw_in_probe probe);
pl_uvh_raw_in_fn pl_uvh_raw_in_for(PyObject *protocol);

#endif
