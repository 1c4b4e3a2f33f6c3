/* libuv and errno failures turned into the Python exceptions asyncio raises. */
#ifndef PL_ERRORS_H
#define PL_ERRORS_H

#include "compat.h"

/* Raise the OSError subclass for a negative libuv error code; returns NULL. */
PyObject *pl_error_set_uv(int uverr);
/* Raise the OSError subclass for the current errno; returns NULL. */
PyObject *pl_error_set_errno(void);
/* -1 with OSError(EBADF) raised when `fd` is no longer open: closed behind
 * the back of the transport that owns it (os.close), which libuv would
 * otherwise keep quiet about until its next poll or never. */
int pl_error_check_fd(int fd);

#endif
