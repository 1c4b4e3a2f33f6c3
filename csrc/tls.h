/* The per-record path of TLS connections in C (see tls.c). */
#ifndef PL_TLS_H
#define PL_TLS_H

#include "loop.h"

/* Creates pyloop._core.TLSProtocol (none when Python has no ssl module). */
int pl_tls_init_type(PyObject *module);

/* It also registers the stream transport's raw-bytes-in hook (uvhandle.h):
 * a TLSProtocol whose get_buffer and buffer_updated are its own gets the
 * records read into the loop's buffer, copied into its incoming BIO before
 * any Python code runs, instead of reading into the 256 KiB buffer every
 * connection's get_buffer() returns. */

#endif
