/* The read path of pyloop's pipe transports (pyloop/loop.py's
 * _ReadPipeTransport, the stdlib's _UnixReadPipeTransport otherwise).
 *
 * The stdlib reads a pipe with os.read(fd, 256 KiB): every read allocates
 * 256 KiB, which glibc serves with mmap, and shrinks it to what arrived
 * (mremap), and the next data_received frees it (munmap); a pipe holds at
 * most 64 KiB by default, so that is three system calls and fresh zeroed
 * pages for every read. strace of the pipe_cat benchmark counted one
 * mmap, mremap and munmap per read. Reading into the loop's own buffer and
 * copying out what arrived costs one small allocation instead. */
#include "pipe.h"
#include "errors.h"

#include <errno.h>
#include <unistd.h>

PyObject *
Loop__pipe_read(PLLoop *self, PyObject *fdobj)
{
    int fd = PyObject_AsFileDescriptor(fdobj);
    if (fd < 0)
        return NULL;
    char *buf = pl_loop_read_buf(self);
    if (buf == NULL)
        return PyErr_NoMemory();
    ssize_t n;
    /* Without the GIL released: the fd is non-blocking, so read() returns at
     * once, and the buffer is the loop's, used by one caller at a time. */
    do {
        n = read(fd, buf, PL_LOOP_READ_BUF_SIZE);
    } while (n < 0 && errno == EINTR && PyErr_CheckSignals() == 0);
    if (n < 0)
        return PyErr_Occurred() ? NULL : pl_error_set_errno();
    return PyBytes_FromStringAndSize(buf, n);
}
