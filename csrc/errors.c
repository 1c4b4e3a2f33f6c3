/* Error translation. libuv reports -errno on Unix, so one mapping serves both. */
#include "errors.h"

#include <errno.h>
#include <fcntl.h>
#include <uv.h>

PyObject *
pl_error_set_uv(int uverr)
{
    /* PyErr_SetFromErrno picks the OSError subclass (ConnectionResetError,
     * FileNotFoundError, ...) from errno, exactly as socket calls do. */
    errno = -uverr;
    return PyErr_SetFromErrno(PyExc_OSError);
}

PyObject *
pl_error_set_errno(void)
{
    return PyErr_SetFromErrno(PyExc_OSError);
}

int
pl_error_check_fd(int fd)
{
    if (fd >= 0 && fcntl(fd, F_GETFD) >= 0)
        return 0;
    if (fd >= 0 && errno != EBADF)
        return 0; /* not ours to judge */
    errno = EBADF;
    pl_error_set_errno();
    return -1;
}
