/* Direct calls into OpenSSL for the TLS data path (tls.c).
 *
 * Every _ssl method the per-record path calls costs far more in Python's
 * machinery than in OpenSSL: MemoryBIO.pending is a getter returning an int
 * object, MemoryBIO.write wants a buffer object (a memoryview made for the
 * call), _SSLSocket.pending releases and re-takes the GIL around a function
 * that reads one field. callgrind put those at about 2,500 instructions of an
 * HTTPS request's 26,500. Here the same OpenSSL functions are called on the
 * same BIO and SSL objects, with the GIL held (the objects are used from the
 * loop's thread only).
 *
 * Two things must hold, and are checked before anything is called:
 *  - the functions are the ones _ssl itself calls: they are looked up with
 *    dlsym() through _ssl's own shared object (which searches the libraries
 *    it was linked with), and OpenSSL_version_num() must equal
 *    _ssl.OPENSSL_VERSION_NUMBER;
 *  - the object layouts: CPython's MemoryBIO is {PyObject_HEAD; BIO *bio;
 *    int eof_written} and _SSLSocket starts {PyObject_HEAD; PyObject
 *    *Socket; SSL *ssl}, unchanged from 3.5 through 3.15 (3.15.2's checked
 *    with ctypes: the SSL* at that offset has the two BIOs as rbio/wbio; the
 *    rest of _SSLSocket shrank, its head did not). They are private,
 *    so they are verified at run time: a MemoryBIO is written through its
 *    Python method and read back here, and an _SSLSocket's SSL must have the
 *    protocol's own two BIOs as its read and write BIO.
 * Free-threaded builds keep to _ssl's methods (they lock per object).
 * When anything differs, or PYLOOP_TLS_DIRECT=0 is set, the accessors return
 * NULL and tls.c calls the Python methods as before. */
#include "openssl.h"

#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    PyObject_HEAD
    pl_ossl_bio *bio;
    int eof_written;
} pl_ossl_membio_layout;

typedef struct {
    PyObject_HEAD
    PyObject *socket;
    pl_ossl_ssl *ssl;
} pl_ossl_sslsock_layout;

static struct {
    int on;
    PyTypeObject *membio_type;  /* _ssl.MemoryBIO */
    PyTypeObject *sslsock_type; /* _ssl._SSLSocket */
    size_t (*bio_ctrl_pending)(pl_ossl_bio *);
    int (*bio_write)(pl_ossl_bio *, const void *, int);
    int (*bio_read)(pl_ossl_bio *, void *, int);
    int (*ssl_pending)(const pl_ossl_ssl *);
    pl_ossl_bio *(*ssl_get_rbio)(const pl_ossl_ssl *);
    pl_ossl_bio *(*ssl_get_wbio)(const pl_ossl_ssl *);
    unsigned long (*version_num)(void);
    int (*ssl_read_ex)(pl_ossl_ssl *, void *, size_t, size_t *);
    int (*ssl_write_ex)(pl_ossl_ssl *, const void *, size_t, size_t *);
    int (*ssl_get_error)(const pl_ossl_ssl *, int);
    int (*ssl_get_shutdown)(const pl_ossl_ssl *);
    void (*err_clear_error)(void);
} pl_ossl;

/* OpenSSL's values (ssl.h), part of its ABI */
#define PL_OSSL_ERROR_WANT_READ 2
#define PL_OSSL_ERROR_WANT_WRITE 3
#define PL_OSSL_ERROR_ZERO_RETURN 6
#define PL_OSSL_RECEIVED_SHUTDOWN 2

/* dlsym into *slot; 0, or -1 when missing. */
static int
pl_ossl_sym(void *lib, const char *name, void *slot)
{
    void *f = dlsym(lib, name);
    if (f == NULL)
        return -1;
    memcpy(slot, &f, sizeof f); /* object pointer to function pointer */
    return 0;
}

/* Writes through the Python method, reads back directly: the layout check
 * of MemoryBIO. 1 when it matches, 0 when not, -1 on a Python error. */
static int
pl_ossl_check_membio(void)
{
    int ok = -1;
    PyObject *bio = PyObject_CallNoArgs((PyObject *)pl_ossl.membio_type);
    PyObject *r = bio ? PyObject_CallMethod(bio, "write", "y", "pyloop") : NULL;
    if (r == NULL)
        goto done;
    Py_DECREF(r);
    pl_ossl_membio_layout *m = (pl_ossl_membio_layout *)bio;
    ok = m->bio != NULL && m->eof_written == 0 && pl_ossl.bio_ctrl_pending(m->bio) == 6;
    if (!ok)
        goto done;
    r = PyObject_CallMethod(bio, "write_eof", NULL);
    if (r == NULL) {
        ok = -1;
        goto done;
    }
    Py_DECREF(r);
    ok = m->eof_written == 1;
done:
    Py_XDECREF(bio);
    return ok;
}

int
pl_ossl_init(void)
{
    PyObject *mod = NULL, *file = NULL, *version = NULL;
    void *lib = NULL;
    int rc = 0;
    pl_ossl.on = 0;
    if (PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x03100000)
        return 0; /* the layouts are known for 3.11 to 3.15 */
#ifdef Py_GIL_DISABLED
    /* without the GIL, _ssl serializes calls on an object with its own lock,
     * which these calls would not take */
    return 0;
#endif
    const char *env = getenv("PYLOOP_TLS_DIRECT");
    if (env != NULL && strcmp(env, "0") == 0)
        return 0;
    mod = PyImport_ImportModule("_ssl");
    if (mod == NULL)
        goto python_error;
    file = PyObject_GetAttrString(mod, "__file__");
    if (file == NULL || !PyUnicode_Check(file))
        goto python_error; /* built in: its OpenSSL is not ours to find */
    const char *path = PyUnicode_AsUTF8(file);
    if (path == NULL)
        goto python_error;
    lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
    if (lib == NULL)
        goto done;
    if (pl_ossl_sym(lib, "BIO_ctrl_pending", &pl_ossl.bio_ctrl_pending) < 0 ||
        pl_ossl_sym(lib, "BIO_write", &pl_ossl.bio_write) < 0 ||
        pl_ossl_sym(lib, "BIO_read", &pl_ossl.bio_read) < 0 ||
        pl_ossl_sym(lib, "SSL_pending", &pl_ossl.ssl_pending) < 0 ||
        pl_ossl_sym(lib, "SSL_get_rbio", &pl_ossl.ssl_get_rbio) < 0 ||
        pl_ossl_sym(lib, "SSL_get_wbio", &pl_ossl.ssl_get_wbio) < 0 ||
        pl_ossl_sym(lib, "OpenSSL_version_num", &pl_ossl.version_num) < 0 ||
        pl_ossl_sym(lib, "SSL_read_ex", &pl_ossl.ssl_read_ex) < 0 ||
        pl_ossl_sym(lib, "SSL_write_ex", &pl_ossl.ssl_write_ex) < 0 ||
        pl_ossl_sym(lib, "SSL_get_error", &pl_ossl.ssl_get_error) < 0 ||
        pl_ossl_sym(lib, "SSL_get_shutdown", &pl_ossl.ssl_get_shutdown) < 0 ||
        pl_ossl_sym(lib, "ERR_clear_error", &pl_ossl.err_clear_error) < 0)
        goto done;
    version = PyObject_GetAttrString(mod, "OPENSSL_VERSION_NUMBER");
    if (version == NULL)
        goto python_error;
    unsigned long want = PyLong_AsUnsignedLong(version);
    if (want == (unsigned long)-1 && PyErr_Occurred())
        goto python_error;
    if (pl_ossl.version_num() != want)
        goto done;
    Py_XSETREF(pl_ossl.membio_type, (PyTypeObject *)PyObject_GetAttrString(mod, "MemoryBIO"));
    Py_XSETREF(pl_ossl.sslsock_type, (PyTypeObject *)PyObject_GetAttrString(mod, "_SSLSocket"));
    if (pl_ossl.membio_type == NULL || pl_ossl.sslsock_type == NULL)
        goto python_error;
    if (!PyType_Check(pl_ossl.membio_type) || !PyType_Check(pl_ossl.sslsock_type) ||
        pl_ossl.membio_type->tp_basicsize < (Py_ssize_t)sizeof(pl_ossl_membio_layout) ||
        pl_ossl.sslsock_type->tp_basicsize < (Py_ssize_t)sizeof(pl_ossl_sslsock_layout))
        goto done;
    int ok = pl_ossl_check_membio();
    if (ok < 0)
        goto python_error;
    pl_ossl.on = ok;
    goto done;

python_error:
    /* no _ssl, or not as expected: stay off; only MemoryError propagates */
    if (PyErr_Occurred() && PyErr_ExceptionMatches(PyExc_MemoryError))
        rc = -1;
    else
        PyErr_Clear();
done:
    /* the handle only confirmed a library that stays loaded with _ssl */
    if (lib != NULL)
        dlclose(lib);
    Py_XDECREF(version);
    Py_XDECREF(file);
    Py_XDECREF(mod);
    return rc;
}

pl_ossl_bio *
pl_ossl_membio_get(PyObject *obj)
{
    if (!pl_ossl.on || obj == NULL || !Py_IS_TYPE(obj, pl_ossl.membio_type))
        return NULL;
    return ((pl_ossl_membio_layout *)obj)->bio;
}

int
pl_ossl_membio_eof_written(PyObject *obj)
{
    return ((pl_ossl_membio_layout *)obj)->eof_written;
}

pl_ossl_ssl *
pl_ossl_sslobj_get(PyObject *obj, pl_ossl_bio *rbio, pl_ossl_bio *wbio)
{
    if (!pl_ossl.on || obj == NULL || rbio == NULL || wbio == NULL ||
        !Py_IS_TYPE(obj, pl_ossl.sslsock_type))
        return NULL;
    pl_ossl_sslsock_layout *s = (pl_ossl_sslsock_layout *)obj;
    /* an SSLObject has no socket; its SSL reads and writes the two BIOs */
    if (s->socket != NULL || s->ssl == NULL || pl_ossl.ssl_get_rbio(s->ssl) != rbio ||
        pl_ossl.ssl_get_wbio(s->ssl) != wbio)
        return NULL;
    return s->ssl;
}

size_t
pl_ossl_bio_pending(pl_ossl_bio *bio)
{
    return pl_ossl.bio_ctrl_pending(bio);
}

int
pl_ossl_bio_write(pl_ossl_bio *bio, const void *data, int len)
{
    return pl_ossl.bio_write(bio, data, len);
}

int
pl_ossl_bio_read(pl_ossl_bio *bio, void *data, int len)
{
    return pl_ossl.bio_read(bio, data, len);
}

int
pl_ossl_ssl_pending(pl_ossl_ssl *ssl)
{
    return pl_ossl.ssl_pending(ssl);
}

int
pl_ossl_enabled(void)
{
    return pl_ossl.on;
}

/* What _ssl's read() and write() do with SSL_get_error() on a memory BIO
 * (no socket, so no waiting): WANT_READ and WANT_WRITE raise
 * SSLWantReadError/SSLWantWriteError, which asyncio's SSLProtocol swallows,
 * after PySSL_SetError cleared the error queue. Anything else is left as it
 * is, error queue included, for the caller to repeat the call through the
 * Python method: on an SSL object that failed, OpenSSL fails the same way
 * again without adding to the queue, so _ssl raises its own exception, from
 * the same error, with the same message. */
static Py_ssize_t
pl_ossl_outcome(pl_ossl_ssl *ssl, int *eof)
{
    int err = pl_ossl.ssl_get_error(ssl, 0);
    if (err == PL_OSSL_ERROR_WANT_READ || err == PL_OSSL_ERROR_WANT_WRITE) {
        pl_ossl.err_clear_error();
        return 0;
    }
    if (eof != NULL && err == PL_OSSL_ERROR_ZERO_RETURN &&
        pl_ossl.ssl_get_shutdown(ssl) == PL_OSSL_RECEIVED_SHUTDOWN) {
        *eof = 1; /* close_notify: read() returns 0 bytes, as _ssl's */
        return 0;
    }
    return -1;
}

Py_ssize_t
pl_ossl_ssl_read(pl_ossl_ssl *ssl, void *buf, size_t len, int *eof)
{
    size_t count = 0;
    *eof = 0;
    if (pl_ossl.ssl_read_ex(ssl, buf, len, &count))
        return (Py_ssize_t)count;
    return pl_ossl_outcome(ssl, eof);
}

Py_ssize_t
pl_ossl_ssl_write(pl_ossl_ssl *ssl, const void *buf, size_t len)
{
    size_t count = 0;
    if (pl_ossl.ssl_write_ex(ssl, buf, len, &count))
        return (Py_ssize_t)count;
    return pl_ossl_outcome(ssl, NULL);
}
