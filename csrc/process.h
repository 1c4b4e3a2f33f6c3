/* Child processes started with posix_spawn (see process.c for why not uv_spawn). */
#ifndef PL_PROCESS_H
#define PL_PROCESS_H

#include "loop.h"

/* _core._spawn(loop, file, args, env, cwd, stdio, detached, close_fds) -> pid */
PyObject *pl_process_spawn(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

#endif
