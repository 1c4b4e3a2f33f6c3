/* Spawning children with libuv (uv_spawn: fork, then only libuv's C code
 * runs in the child until exec, so no Python code of the parent runs there).
 *
 * Only the spawn is libuv's. The uv_process_t is closed as soon as uv_spawn
 * returns, and the Python layer (pyloop/_subprocess.py) reaps the child
 * through a pidfd, the same way as the children it starts with
 * subprocess.Popen. Keeping the handle until the child exits would leave
 * reaping to libuv's SIGCHLD handler, which any signal.signal(SIGCHLD, ...)
 * (add_signal_handler, the stdlib's child watchers) silently replaces, and
 * whose removal resets SIGCHLD to SIG_DFL instead of to the handler that was
 * there before. So the SIGCHLD disposition is saved before uv_spawn and put
 * back once the handle is closed. */
#include "process.h"
#include "errors.h"
#include "module.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

static void
pl__process_close_cb(uv_handle_t *handle)
{
    pl_loop_gil_ensure(handle->loop);
    PyMem_Free(handle);
    pl_counters.handles_freed++;
}

static PyObject *
pl_process_tuple(PyObject *seq, const char *what)
{
    if (PyUnicode_Check(seq) || PyBytes_Check(seq) || !PySequence_Check(seq)) {
        PyErr_SetString(PyExc_TypeError, what);
        return NULL;
    }
    return PySequence_Tuple(seq);
}

/* Convert a sequence of str/bytes/path-like objects to a NULL-terminated
 * char* array. The bytes objects the pointers refer to are appended to
 * `keep`; the array is PyMem-allocated. */
static char **
pl_process_fs_array(PyObject *seq, const char *what, PyObject *keep)
{
    char **out = NULL;
    /* A tuple copy: __fspath__ may run Python code that mutates a list. */
    PyObject *items = pl_process_tuple(seq, what);
    if (items == NULL)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(items);
    out = PyMem_Calloc((size_t)n + 1, sizeof(char *));
    if (out == NULL) {
        PyErr_NoMemory();
        goto cleanup;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *b = NULL;
        if (!PyUnicode_FSConverter(PyTuple_GET_ITEM(items, i), &b) ||
            PyList_Append(keep, b) < 0) {
            Py_XDECREF(b);
            PyMem_Free(out);
            out = NULL;
            goto cleanup;
        }
        out[i] = PyBytes_AS_STRING(b);
        Py_DECREF(b); /* `keep` holds it */
    }
cleanup:
    Py_DECREF(items);
    return out;
}

/* One path-like object to a char* kept alive by `keep`. */
static const char *
pl_process_fs_path(PyObject *obj, PyObject *keep)
{
    PyObject *b = NULL;
    if (!PyUnicode_FSConverter(obj, &b))
        return NULL;
    int rc = PyList_Append(keep, b);
    Py_DECREF(b);
    return rc < 0 ? NULL : PyBytes_AS_STRING(b);
}

/* stdio: one int per child fd 0..N-1: -1 leaves the fd alone (fds 0-2:
 * libuv opens /dev/null), anything else is the parent fd the child gets
 * at that number. */
static uv_stdio_container_t *
pl_process_stdio(PyObject *seq, int *count)
{
    uv_stdio_container_t *out = NULL;
    PyObject *items = pl_process_tuple(seq, "stdio must be a sequence of ints");
    if (items == NULL)
        return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(items);
    if (n < 3 || n > 65536) {
        PyErr_SetString(PyExc_ValueError, "stdio needs 3 to 65536 entries");
        goto cleanup;
    }
    out = PyMem_Calloc((size_t)n, sizeof(*out));
    if (out == NULL) {
        PyErr_NoMemory();
        goto cleanup;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        long fd = PyLong_AsLong(PyTuple_GET_ITEM(items, i));
        if (!(fd == -1 && PyErr_Occurred()) && (fd > INT_MAX || fd < INT_MIN))
            PyErr_SetString(PyExc_OverflowError, "fd out of range");
        if (PyErr_Occurred()) {
            PyMem_Free(out);
            out = NULL;
            goto cleanup;
        }
        if (fd < 0) {
            out[i].flags = UV_IGNORE;
        }
        else {
            out[i].flags = UV_INHERIT_FD;
            out[i].data.fd = (int)fd;
        }
    }
    *count = (int)n;
cleanup:
    Py_DECREF(items);
    return out;
}

/* close_fds=True as Popen means it: no fd above 2 reaches the child unless
 * it is in pass_fds (stdio entries i >= 3 holding fd i). libuv's child only
 * closes what is close-on-exec, so the inheritable ones are marked so for the
 * duration of uv_spawn, with the GIL held throughout (no Python thread can
 * spawn meanwhile). Returns the fds marked (PyMem array, -1 terminated) or
 * NULL with an exception set. */
static int *
pl_process_hide_fds(const uv_stdio_container_t *stdio, int count)
{
    size_t n = 0, cap = 16;
    int *marked = PyMem_Malloc(cap * sizeof(int));
    DIR *dir = NULL;
    if (marked == NULL) {
        PyErr_NoMemory();
        goto cleanup;
    }
    dir = opendir("/proc/self/fd");
    if (dir == NULL) {
        pl_error_set_errno();
        PyMem_Free(marked);
        marked = NULL;
        goto cleanup;
    }
    struct dirent *ent;
    while ((ent = readdir(dir)) != NULL) {
        char *end;
        long fd = strtol(ent->d_name, &end, 10);
        if (*end != '\0' || end == ent->d_name || fd <= 2 || fd == dirfd(dir) ||
            fd > INT_MAX)
            continue;
        if (fd < count && stdio[fd].flags == UV_INHERIT_FD && stdio[fd].data.fd == fd)
            continue; /* in pass_fds */
        int flags = fcntl((int)fd, F_GETFD);
        if (flags < 0 || (flags & FD_CLOEXEC))
            continue;
        if (n + 1 == cap) {
            int *more = PyMem_Realloc(marked, cap * 2 * sizeof(int));
            if (more == NULL)
                break; /* cannot remember it, so leave it alone */
            marked = more;
            cap *= 2;
        }
        if (fcntl((int)fd, F_SETFD, flags | FD_CLOEXEC) == 0)
            marked[n++] = (int)fd;
    }
cleanup:
    if (dir != NULL)
        closedir(dir);
    if (marked != NULL)
        marked[n] = -1;
    return marked;
}

static void
pl_process_unhide_fds(int *marked)
{
    for (int *p = marked; p != NULL && *p >= 0; p++) {
        int flags = fcntl(*p, F_GETFD);
        if (flags >= 0)
            fcntl(*p, F_SETFD, flags & ~FD_CLOEXEC);
    }
    PyMem_Free(marked);
}

PyObject *
pl_process_spawn(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *result = NULL;
    PyObject *keep = NULL;
    char **argv = NULL, **envp = NULL;
    uv_stdio_container_t *stdio = NULL;
    int *hidden = NULL;
    uv_process_options_t opts = {0};

    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError,
                        "_spawn(loop, file, args, env, cwd, stdio, detached, close_fds)");
        return NULL;
    }
    if (!PyObject_TypeCheck(args[0], &PLLoop_Type)) {
        PyErr_SetString(PyExc_TypeError, "_spawn() needs a pyloop loop");
        return NULL;
    }
    PLLoop *loop = (PLLoop *)args[0];
    if (pl_loop_check_closed(loop) < 0 || pl_loop_check_uv_thread(loop) < 0)
        return NULL;
    int detached = PyObject_IsTrue(args[6]);
    if (detached < 0)
        return NULL;
    int close_fds = PyObject_IsTrue(args[7]);
    if (close_fds < 0)
        return NULL;
    keep = PyList_New(0);
    if (keep == NULL)
        return NULL;
    opts.file = pl_process_fs_path(args[1], keep);
    if (opts.file == NULL)
        goto cleanup;
    argv = pl_process_fs_array(args[2], "args must be a sequence", keep);
    if (argv == NULL)
        goto cleanup;
    if (argv[0] == NULL) {
        PyErr_SetString(PyExc_ValueError, "args must not be empty");
        goto cleanup;
    }
    opts.args = argv;
    if (args[3] != Py_None) {
        envp = pl_process_fs_array(args[3], "env must be a sequence", keep);
        if (envp == NULL)
            goto cleanup;
        opts.env = envp;
    }
    if (args[4] != Py_None) {
        opts.cwd = pl_process_fs_path(args[4], keep);
        if (opts.cwd == NULL)
            goto cleanup;
    }
    stdio = pl_process_stdio(args[5], &opts.stdio_count);
    if (stdio == NULL)
        goto cleanup;
    opts.stdio = stdio;
    opts.flags = detached ? UV_PROCESS_DETACHED : 0;
    opts.exit_cb = NULL; /* the handle is closed before the child can exit */

    if (close_fds) {
        hidden = pl_process_hide_fds(stdio, opts.stdio_count);
        if (hidden == NULL)
            goto cleanup;
    }
    uv_process_t *uvh = PyMem_Malloc(sizeof(*uvh));
    if (uvh == NULL) {
        PyErr_NoMemory();
        goto cleanup;
    }
    struct sigaction old_chld;
    sigaction(SIGCHLD, NULL, &old_chld);
    /* The GIL stays held: uv_spawn waits for the exec (or its failure), and
     * no other thread may change SIGCHLD until the disposition is back. */
    int err = uv_spawn(&loop->uv, uvh, &opts);
    pl_counters.handles_created++; /* uv_spawn initialises the handle even when it fails */
    int pid = err == 0 ? uvh->pid : -1;
    uvh->data = NULL;
    /* Closing takes the handle off libuv's child list and stops libuv's
     * SIGCHLD watcher now; the memory is freed in the close callback. */
    uv_close((uv_handle_t *)uvh, pl__process_close_cb);
    sigaction(SIGCHLD, &old_chld, NULL);
    if ((old_chld.sa_flags & SA_SIGINFO) ||
        (old_chld.sa_handler != SIG_DFL && old_chld.sa_handler != SIG_IGN)) {
        /* A SIGCHLD that arrived while libuv's handler was installed went to
         * libuv; hand the installed handler one of its own (a spurious
         * SIGCHLD is harmless, a lost one can leave a zombie behind). */
        kill(getpid(), SIGCHLD);
    }
    if (err < 0) {
        pl_error_set_uv(err);
        goto cleanup;
    }
    result = PyLong_FromLong(pid);

cleanup:
    if (hidden != NULL)
        pl_process_unhide_fds(hidden);
    PyMem_Free(argv);
    PyMem_Free(envp);
    PyMem_Free(stdio);
    Py_XDECREF(keep);
    return result;
}
