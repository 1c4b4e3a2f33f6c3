/* Error translation. libuv reports -errno on Unix, so one mapping serves both. */
#include "errors.h"

#include <errno.h>
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
