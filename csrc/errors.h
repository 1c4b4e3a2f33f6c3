/* libuv and errno failures turned into the Python exceptions asyncio raises. */
#ifndef PL_ERRORS_H
#define PL_ERRORS_H

#include "compat.h"

/* Raise the OSError subclass for a negative libuv error code; returns NULL. */
PyObject *pl_error_set_uv(int uverr);
/* Raise the OSError subclass for the current errno; returns NULL. */
PyObject *pl_error_set_errno(void);

#endif
