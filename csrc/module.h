/* Module-wide state: Python-level helpers installed by pyloop/__init__.py and
 * cached objects. One interpreter, one copy (single-phase init). */
#ifndef PL_MODULE_H
#define PL_MODULE_H

#include "compat.h"

#include <uv.h>

typedef struct {
    PyObject *handle_error;   /* (handle, exc) -> None: builds the context, calls the handler */
    PyObject *handle_repr;    /* (handle) -> str */
    PyObject *extract_stack;  /* () -> list: source traceback of the caller */
    PyObject *slow_callback;  /* (loop, handle, seconds) -> None: debug warning */
    PyObject *future_type;    /* asyncio.Future */
    PyObject *task_type;      /* asyncio.Task */
    PyObject *buffered_protocol_type; /* asyncio.BufferedProtocol */
    PyObject *logger;         /* asyncio.log.logger */
    PyObject *str_loop;       /* "loop" */
    PyObject *str_context;    /* "context" */
    PyObject *str_callback;   /* "callback" */
    PyObject *str_datagram_received; /* "datagram_received" */
    PyObject *kwnames_loop;   /* ("loop",) */
} pl_module_state;

extern pl_module_state pl_state;

/* The kinds of transport the counters tell apart. */
typedef enum {
    PL_TRANSPORT_TCP,
    PL_TRANSPORT_UNIX,
    PL_TRANSPORT_UDP,
    PL_TRANSPORT_TLS,        /* the TLS protocol of a connection (tls.c) */
    PL_TRANSPORT_PIPE,       /* read and write pipes (pyloop/loop.py) */
    PL_TRANSPORT_SUBPROCESS, /* pyloop/_subprocess.py */
    PL_TRANSPORT_NKINDS
} pl_transport_kind;

/* Counters of every libuv handle and request (the loop's own handles
 * included) and of the transports of each kind, created and freed, for the
 * tests: after loop.close() and a collection each pair must be equal. A C
 * transport counts as freed when its handle's close callback ran, a Python
 * one when the object went away (a weak reference's callback, module.c). */
typedef struct {
    long long handles_created;
    long long handles_freed;
    long long requests_created;
    long long requests_freed;
    long long transports_created[PL_TRANSPORT_NKINDS];
    long long transports_freed[PL_TRANSPORT_NKINDS];
} pl_counters_t;

extern pl_counters_t pl_counters;

/* The kind of a transport's libuv handle: a TCP handle, the libuv pipe an
 * AF_UNIX stream socket becomes, or a UDP handle. */
static inline pl_transport_kind
pl_counters_stream_kind(const void *handle)
{
    uv_handle_type t = ((const uv_handle_t *)handle)->type;
    return t == UV_TCP ? PL_TRANSPORT_TCP : t == UV_UDP ? PL_TRANSPORT_UDP : PL_TRANSPORT_UNIX;
}

#endif
