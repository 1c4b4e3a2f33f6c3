/* Server._clients on Python 3.13+: the set of a server's connections that
 * close_clients()/abort_clients() reach and wait_closed() waits on, without a
 * weak reference per connection (see server.c). */
#ifndef PL_SERVER_H
#define PL_SERVER_H

#include "loop.h"

int pl_server_init_types(PyObject *module);

/* 1 when `o` is pyloop's set, else 0. */
int pl_server_clients_check(PyObject *o);
/* Move the count of transports attached in C by `delta` (+1 attach, -1
 * detach): 0, or 1 when `o` is not pyloop's set or the count would go below
 * zero (the caller then takes the Python path). Never an error. */
int pl_server_clients_count(PyObject *o, int delta);
/* len(set): the count plus the members added from Python; -1 with the error
 * set. */
Py_ssize_t pl_server_clients_len(PyObject *o);

#endif
