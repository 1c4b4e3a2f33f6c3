/* The hot read path of TLS connections (see tls.c). */
#ifndef PL_TLS_H
#define PL_TLS_H

#include "loop.h"

/* loop._ssl_read(sslobj, incoming) -> (data or None, eof) */
PyObject *Loop__ssl_read(PLLoop *self, PyObject *const *args, Py_ssize_t nargs);

#endif
