/* Accepting connections on a listening socket and setting up their
 * transports (the stdlib's _accept_connection and its task per connection). */
#ifndef PL_ACCEPT_H
#define PL_ACCEPT_H

#include "loop.h"

PyObject *Loop__accept_serve(PLLoop *self, PyObject *const *args, Py_ssize_t nargs);
PyObject *Loop__accept_connection(PLLoop *self, PyObject *const *args, Py_ssize_t nargs);

/* socket.socket (borrowed), or NULL with the error set. */
PyObject *pl_accept_socket_class(void);

#endif
