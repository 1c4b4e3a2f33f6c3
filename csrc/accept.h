/* Accepting connections on a listening socket (the stdlib's sock.accept()
 * loop of _accept_connection, without a socket.accept() wrapper per call). */
#ifndef PL_ACCEPT_H
#define PL_ACCEPT_H

#include "loop.h"

PyObject *Loop__accept_batch(PLLoop *self, PyObject *const *args, Py_ssize_t nargs);

#endif
