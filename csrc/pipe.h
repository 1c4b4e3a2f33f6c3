/* Pipe transports: the stdlib's own (asyncio.unix_events) on the loop's
 * poller, with their read path here in C (see pipe.c). */
#ifndef PL_PIPE_H
#define PL_PIPE_H

#include "loop.h"

/* loop._pipe_read(fd) -> bytes: os.read(fd, 256 KiB) without the 256 KiB. */
PyObject *Loop__pipe_read(PLLoop *self, PyObject *fdobj);

#endif
