/* The per-record path of TLS connections in C (see tls.c). */
#ifndef PL_TLS_H
#define PL_TLS_H

#include "loop.h"

/* Creates pyloop._core.TLSProtocol (none when Python has no ssl module). */
int pl_tls_init_type(PyObject *module);

/* 1 when `protocol` is a TLSProtocol whose get_buffer and buffer_updated are
 * TLSProtocol's own: the stream transport then reads into the loop's buffer
 * and hands the bytes over with pl_tls_data_in, instead of reading into the
 * 256 KiB buffer every connection's get_buffer() returns. */
int pl_tls_is_plain(PyObject *protocol);

/* buffer_updated for `n` bytes read into `buf` (copied into the incoming BIO
 * before any Python code runs): 0, or -1 with the error set. */
int pl_tls_data_in(PyObject *protocol, const char *buf, Py_ssize_t n);

#endif
