/* The per-record path of TLS connections in C (see tls.c). */
#ifndef PL_TLS_H
#define PL_TLS_H

#include "loop.h"

/* Creates pyloop._core.TLSProtocol (none when Python has no ssl module). */
int pl_tls_init_type(PyObject *module);

#endif
