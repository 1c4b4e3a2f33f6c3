/* Direct calls into the OpenSSL that the interpreter's _ssl module uses, on
 * the BIO and SSL objects inside its MemoryBIO and _SSLSocket (see
 * openssl.c). Every function here is only called with the GIL held. */
#ifndef PL_OPENSSL_H
#define PL_OPENSSL_H

#include <Python.h>

/* Opaque: OpenSSL's BIO and SSL (no OpenSSL headers are needed to build). */
typedef struct pl_ossl_bio pl_ossl_bio;
typedef struct pl_ossl_ssl pl_ossl_ssl;

/* Resolves the functions and checks the object layouts; after a failure of
 * any kind (no _ssl, another OpenSSL, PYLOOP_TLS_DIRECT=0) the accessors
 * below return NULL and every caller keeps to the Python methods. Returns
 * -1 only on a Python error that is not about ssl (MemoryError). */
int pl_ossl_init(void);
/* 1 when the direct calls are on (pyloop._core._tls_direct, for tests). */
int pl_ossl_enabled(void);

/* The BIO inside `obj` when it is exactly an _ssl.MemoryBIO, else NULL. */
pl_ossl_bio *pl_ossl_membio_get(PyObject *obj);
/* The MemoryBIO's write_eof() was called (its write() then raises). */
int pl_ossl_membio_eof_written(PyObject *obj);
/* The SSL inside `obj` when it is exactly an _ssl._SSLSocket over the two
 * given BIOs (SSLContext.wrap_bio(incoming, outgoing)), else NULL. */
pl_ossl_ssl *pl_ossl_sslobj_get(PyObject *obj, pl_ossl_bio *rbio, pl_ossl_bio *wbio);

/* BIO_ctrl_pending, BIO_write, BIO_read, SSL_pending, as OpenSSL's own. */
size_t pl_ossl_bio_pending(pl_ossl_bio *bio);
int pl_ossl_bio_write(pl_ossl_bio *bio, const void *data, int len);
int pl_ossl_bio_read(pl_ossl_bio *bio, void *data, int len);
int pl_ossl_ssl_pending(pl_ossl_ssl *ssl);

/* SSL_read_ex into buf: the count read (> 0); 0 when OpenSSL wants more
 * records first (the SSLWantReadError _ssl would raise) or, with *eof set,
 * when close_notify came; -1 for any other outcome, which the caller gets
 * by making the same call through the _SSLSocket's read() (see openssl.c). */
Py_ssize_t pl_ossl_ssl_read(pl_ossl_ssl *ssl, void *buf, size_t len, int *eof);
/* SSL_write_ex of all of buf: len, 0 when OpenSSL wants to read first, -1
 * for any other outcome (the same call through write() then raises). */
Py_ssize_t pl_ossl_ssl_write(pl_ossl_ssl *ssl, const void *buf, size_t len);

#endif
