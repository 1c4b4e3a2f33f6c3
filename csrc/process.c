/* Spawning children: posix_spawn(3), so only the C library's code runs in
 * the child until exec and no Python code of the parent runs there.
 *
 * Why not libuv's uv_spawn: libuv 1.44 (Debian 12's) forks on Linux, and
 * fork copies the parent's page tables while the loop waits for the exec:
 * measured on this machine, uv_spawn of `true` from the benchmark process ran
 * at half the rate of the stdlib loop's vfork-based spawn, which no other
 * part of the path can make up. glibc's posix_spawn (2.24+) is
 * clone(CLONE_VM | CLONE_VFORK) with its own stack, reports a failed exec
 * (or file action) as its return value, and is the strategy libuv itself
 * takes where it has one (macOS). The child is reaped by the Python layer
 * (pyloop/_subprocess.py) through a pidfd; no SIGCHLD handler is involved.
 *
 * What the child gets, as subprocess.Popen gives it: the stdio fds dup2'ed
 * into place (through close-on-exec copies above the highest target, so no
 * dup2 overwrites a source another one still needs), SIGPIPE and SIGXFSZ
 * reset to SIG_DFL (Popen's restore_signals=True; every handled signal is
 * reset by exec anyway), the signal mask inherited, a new session when
 * asked, the cwd changed last, and with close_fds every fd above 2 closed
 * except the pass_fds. */
#include "process.h"
#include "errors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

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
 * /dev/null), anything else is the parent fd the child gets at that number.
 * Returns a PyMem array of N ints. */
static int *
pl_process_stdio(PyObject *seq, int *count)
{
    int *out = NULL;
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
        out[i] = fd < 0 ? -1 : (int)fd;
    }
    *count = (int)n;
cleanup:
    Py_DECREF(items);
    return out;
}

/* close_fds=True with pass_fds: no fd above 2 reaches the child unless it is
 * in pass_fds (stdio entries i >= 3 holding fd i). posix_spawn's closefrom
 * action cannot spare fds in the middle, so the inheritable ones are marked
 * close-on-exec for the duration of the spawn, with the GIL held throughout
 * (no Python thread can spawn meanwhile). Returns the fds marked (PyMem
 * array, -1 terminated) or NULL with an exception set. */
static int *
pl_process_hide_fds(const int *stdio, int count)
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
        if (fd < count && stdio[fd] == fd)
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

/* The file actions that put the child's fds in place. The copies made in
 * `tmp` (close-on-exec, numbered from `count` up) are the dup2 sources; the
 * caller closes them after the spawn. Returns a posix_spawn error number. */
static int
pl_process_file_actions(posix_spawn_file_actions_t *fa, const int *stdio, int count,
                        int *tmp, const char *cwd, int close_fds)
{
    int err = 0;
    for (int i = 0; i < count; i++) {
        if (stdio[i] < 0)
            continue;
        tmp[i] = fcntl(stdio[i], F_DUPFD_CLOEXEC, count);
        if (tmp[i] < 0)
            return errno;
    }
    for (int i = 0; i < count && err == 0; i++) {
        if (tmp[i] >= 0)
            err = posix_spawn_file_actions_adddup2(fa, tmp[i], i);
        else if (i <= 2)
            err = posix_spawn_file_actions_addopen(fa, i, "/dev/null",
                                                   i == 0 ? O_RDONLY : O_RDWR, 0);
    }
    /* With pass_fds (entries above 2) the caller hides the rest instead. */
    if (err == 0 && close_fds && count == 3)
        err = posix_spawn_file_actions_addclosefrom_np(fa, 3);
    if (err == 0 && cwd != NULL)
        err = posix_spawn_file_actions_addchdir_np(fa, cwd);
    return err;
}

PyObject *
pl_process_spawn(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *result = NULL;
    PyObject *keep = NULL;
    char **argv = NULL, **envp = NULL;
    int *stdio = NULL, *tmp = NULL, *hidden = NULL;
    int count = 0;
    const char *file, *cwd = NULL;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int fa_ready = 0, attr_ready = 0;
    int err;

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
    file = pl_process_fs_path(args[1], keep);
    if (file == NULL)
        goto cleanup;
    argv = pl_process_fs_array(args[2], "args must be a sequence", keep);
    if (argv == NULL)
        goto cleanup;
    if (argv[0] == NULL) {
        PyErr_SetString(PyExc_ValueError, "args must not be empty");
        goto cleanup;
    }
    if (args[3] != Py_None) {
        envp = pl_process_fs_array(args[3], "env must be a sequence", keep);
        if (envp == NULL)
            goto cleanup;
    }
    if (args[4] != Py_None) {
        cwd = pl_process_fs_path(args[4], keep);
        if (cwd == NULL)
            goto cleanup;
    }
    stdio = pl_process_stdio(args[5], &count);
    if (stdio == NULL)
        goto cleanup;
    if (strchr(file, '/') == NULL) {
        /* The Python layer found no such program on the child's PATH; exec
         * of a bare name would run a file of that name in the cwd instead. */
        errno = ENOENT;
        pl_error_set_errno();
        goto cleanup;
    }
    tmp = PyMem_Malloc((size_t)count * sizeof(int));
    if (tmp == NULL) {
        PyErr_NoMemory();
        goto cleanup;
    }
    for (int i = 0; i < count; i++)
        tmp[i] = -1;

    if ((err = posix_spawn_file_actions_init(&fa)) != 0)
        goto spawn_error;
    fa_ready = 1;
    if ((err = pl_process_file_actions(&fa, stdio, count, tmp, cwd, close_fds)) != 0)
        goto spawn_error;
    if ((err = posix_spawnattr_init(&attr)) != 0)
        goto spawn_error;
    attr_ready = 1;
    sigset_t dfl;
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGXFSZ);
    if ((err = posix_spawnattr_setsigdefault(&attr, &dfl)) != 0 ||
        (err = posix_spawnattr_setflags(
             &attr, POSIX_SPAWN_SETSIGDEF | (detached ? POSIX_SPAWN_SETSID : 0))) != 0)
        goto spawn_error;
    if (close_fds && count > 3) {
        hidden = pl_process_hide_fds(stdio, count);
        if (hidden == NULL)
            goto cleanup;
    }
    pid_t pid;
    /* The GIL stays held: posix_spawn returns once the child has exec'ed (or
     * failed to), and the fds hidden above must stay hidden until then. */
    err = posix_spawn(&pid, file, &fa, &attr, argv, envp != NULL ? envp : environ);
    if (err != 0)
        goto spawn_error;
    result = PyLong_FromLong((long)pid);
    goto cleanup;

spawn_error:
    errno = err;
    pl_error_set_errno();
cleanup:
    if (hidden != NULL)
        pl_process_unhide_fds(hidden);
    if (fa_ready)
        posix_spawn_file_actions_destroy(&fa);
    if (attr_ready)
        posix_spawnattr_destroy(&attr);
    for (int i = 0; tmp != NULL && i < count; i++) {
        if (tmp[i] >= 0)
            close(tmp[i]);
    }
    PyMem_Free(tmp);
    PyMem_Free(argv);
    PyMem_Free(envp);
    PyMem_Free(stdio);
    Py_XDECREF(keep);
    return result;
}
