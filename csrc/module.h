/* Module-wide state: Python-level helpers installed by pyloop/__init__.py and
 * cached objects. One interpreter, one copy (single-phase init). */
#ifndef PL_MODULE_H
#define PL_MODULE_H

#include "compat.h"

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

/* Counters of libuv handles and requests created and freed, for the tests. */
typedef struct {
    long long handles_created;
    long long handles_freed;
    long long requests_created;
    long long requests_freed;
} pl_counters_t;

extern pl_counters_t pl_counters;

#endif
