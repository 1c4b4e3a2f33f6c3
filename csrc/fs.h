/* pyloop.fs's C core: one libuv fs request (or one compound thread-pool job)
 * per call, run on libuv's thread pool, its completion resolving an
 * asyncio.Future. */
#ifndef PL_FS_H
#define PL_FS_H

#include "compat.h"
#include "loop.h"

int pl_fs_init_types(PyObject *module);
extern PyMethodDef pl_fs_methods[];

/* Loop teardown: cancel this loop's fs requests still queued in the pool,
 * closes excepted (the ones running finish on their own); uv_run then sees
 * them complete. */
void pl_fs_cancel_all(PLLoop *loop);

#endif
