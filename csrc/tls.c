/* The read path of TLS connections: asyncio.sslproto.SSLProtocol's
 * _do_read__copied, for pyloop/loop.py's _SSLProtocol.
 *
 * TLS runs through the stdlib's memory-BIO protocol (handshake, shutdown,
 * flow control and errors stay its own). Its read step drains the SSL
 * object with read(256 KiB) until SSLWantReadError: every record then costs
 * a 256 KiB bytes object shrunk to the record's size, plus one exception
 * raised and caught to learn that nothing more is buffered. Here the SSL
 * object reads into the loop's read buffer, the data is copied out at its
 * size, and the loop stops when neither the incoming BIO nor the SSL object
 * holds more bytes, so a complete record costs no exception. callgrind on
 * the TLS echo benchmark (1 KiB, server side): 67,600 instructions per
 * round trip before, see docs/performance.md for after. */
#include "tls.h"

/* ssl.SSLWantReadError and ssl.SSLSyscallError: asyncio's SSLAgainErrors;
 * and the names called per record, interned once. */
static PyObject *pl_tls_again_errors;
static PyObject *pl_tls_str_read, *pl_tls_str_pending;

static PyObject *
pl_tls_again(void)
{
    if (pl_tls_str_read == NULL) {
        pl_tls_str_read = PyUnicode_InternFromString("read");
        pl_tls_str_pending = PyUnicode_InternFromString("pending");
        if (pl_tls_str_read == NULL || pl_tls_str_pending == NULL)
            return NULL;
    }
    if (pl_tls_again_errors == NULL) {
        PyObject *ssl = PyImport_ImportModule("ssl");
        if (ssl == NULL)
            return NULL;
        PyObject *want = PyObject_GetAttrString(ssl, "SSLWantReadError");
        PyObject *sys = want ? PyObject_GetAttrString(ssl, "SSLSyscallError") : NULL;
        if (sys != NULL)
            pl_tls_again_errors = PyTuple_Pack(2, want, sys);
        Py_XDECREF(want);
        Py_XDECREF(sys);
        Py_DECREF(ssl);
    }
    return pl_tls_again_errors;
}

/* Bytes still buffered: in the incoming BIO (not yet decrypted) or in the SSL
 * object (decrypted, not yet read). -1 on error. */
static int
pl_tls_more(PyObject *reader, PyObject *incoming)
{
    PyObject *n = PyObject_GetAttr(incoming, pl_tls_str_pending);
    if (n == NULL)
        return -1;
    int more = PyObject_IsTrue(n);
    Py_DECREF(n);
    if (more != 0)
        return more;
    n = PyObject_CallMethodNoArgs(reader, pl_tls_str_pending);
    if (n == NULL)
        return -1;
    more = PyObject_IsTrue(n);
    Py_DECREF(n);
    return more;
}

PyObject *
Loop__ssl_read(PLLoop *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *result = NULL, *reader = NULL, *view = NULL, *first = NULL, *chunks = NULL;
    PyObject *size = NULL;
    int eof = 0;
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_ssl_read(sslobj, incoming)");
        return NULL;
    }
    PyObject *sslobj = args[0], *incoming = args[1];
    PyObject *again = pl_tls_again();
    if (again == NULL)
        return NULL;
    /* ssl.SSLObject wraps the _ssl object that does the work; call that one
     * directly when it is there (one Python frame less per read). */
    reader = PyObject_GetAttrString(sslobj, "_sslobj");
    if (reader == NULL) {
        PyErr_Clear();
        reader = Py_NewRef(sslobj);
    }
    char *buf = pl_loop_read_buf(self);
    if (buf == NULL) {
        PyErr_NoMemory();
        goto cleanup;
    }
    view = PyMemoryView_FromMemory(buf, PL_LOOP_READ_BUF_SIZE, PyBUF_WRITE);
    size = PyLong_FromLong(PL_LOOP_READ_BUF_SIZE);
    if (view == NULL || size == NULL)
        goto cleanup;
    for (;;) {
        PyObject *stack[3] = {reader, size, view};
        PyObject *r = PyObject_VectorcallMethod(pl_tls_str_read, stack,
                                                3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
        if (r == NULL) {
            if (!PyErr_ExceptionMatches(again))
                goto cleanup;
            PyErr_Clear();
            break;
        }
        Py_ssize_t n = PyLong_AsSsize_t(r);
        Py_DECREF(r);
        if (n < 0 || n > PL_LOOP_READ_BUF_SIZE) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_SystemError, "SSLObject.read() returned a bad count");
            goto cleanup;
        }
        if (n == 0) {
            eof = 1; /* close_notify */
            break;
        }
        PyObject *chunk = PyBytes_FromStringAndSize(buf, n);
        if (chunk == NULL)
            goto cleanup;
        if (first == NULL) {
            first = chunk;
        }
        else {
            if (chunks == NULL && (chunks = PyList_New(0)) == NULL) {
                Py_DECREF(chunk);
                goto cleanup;
            }
            int rc = PyList_Append(chunks, chunk);
            Py_DECREF(chunk);
            if (rc < 0)
                goto cleanup;
        }
        int more = pl_tls_more(reader, incoming);
        if (more < 0)
            goto cleanup;
        if (!more)
            break;
    }
    if (chunks != NULL) {
        if (PyList_Insert(chunks, 0, first) < 0)
            goto cleanup;
        PyObject *empty = PyBytes_FromStringAndSize(NULL, 0);
        PyObject *joined = empty ? pl_bytes_join(empty, chunks) : NULL;
        Py_XDECREF(empty);
        if (joined == NULL)
            goto cleanup;
        Py_SETREF(first, joined);
    }
    result = Py_BuildValue("(OO)", first ? first : Py_None, eof ? Py_True : Py_False);

cleanup:
    /* Only the _ssl read call saw the view of the loop's buffer, and it keeps
     * no reference: this frees it. */
    Py_XDECREF(view);
    Py_XDECREF(size);
    Py_XDECREF(first);
    Py_XDECREF(chunks);
    Py_XDECREF(reader);
    return result;
}
