/* The event loop object: uv_loop_t, ready queue, timer heap, wake-ups. */
#ifndef PL_LOOP_H
#define PL_LOOP_H

#include "compat.h"
#include <uv.h>
#include "handle.h"
#include "monitor.h"

struct PLUVHandle;

typedef enum {
    PL_LOOP_INIT = 0, /* allocated, uv loop not yet initialised */
    PL_LOOP_OPEN,     /* usable */
    PL_LOOP_CLOSED    /* close() ran; only queries work */
} pl_loop_state;

typedef struct PLLoop {
    PyObject_HEAD
    PyObject *weakreflist;
    pl_loop_state state;
    char running;
    char stopping;
    char debug;
    char has_signal_handlers; /* set from Python: drain signal bytes each pass */
    PyObject *time_override;  /* a `time` set on the instance (loop.time = f), else NULL */
    char wake_pending;        /* an eventfd write is outstanding (GIL-protected) */
    char sleeping;            /* this uv_run pass may block: release the GIL before polling */
    char wake_fired;          /* set during a pass by the internal watchers below */
    char sig_fired;
    char poll_fired;
    unsigned long thread_id;  /* valid while running */
    unsigned long fork_gen;   /* pl_fork_generation when created */
    double slow_callback_duration;
    unsigned long long iteration; /* run_once passes so far */

    /* ready queue: ring buffer of PLHandle*, capacity a power of two */
    PLHandle **ready;
    size_t ready_head;
    size_t ready_len;
    size_t ready_cap;

    /* timers: binary min-heap ordered by (when, seq) */
    PLHandle **heap;
    Py_ssize_t heap_len;
    Py_ssize_t heap_cap;
    unsigned long long timer_seq;
    PLHandle **due;           /* scratch: the timers one pass runs */
    Py_ssize_t due_cap;

    PLHandle *current_handle; /* borrowed; debug mode only */
    PLMonitor *monitor;       /* pyloop.monitor's figures; NULL when off */
    struct PLUVHandle *uvh_open; /* open libuv-backed transports (uvhandle.c) */
    PyObject *task_factory;   /* NULL: the stdlib Task */
    PyObject *debug_obj;      /* what set_debug() was given, get_debug() returns; NULL: `debug` */

    int wake_fd;    /* eventfd written by call_soon_threadsafe */
    int sig_rfd;    /* socketpair: Python's signal wakeup fd writes to sig_wfd */
    int sig_wfd;

    int epfd;                 /* add_reader/add_writer epoll set */
    PyObject *pollers;        /* fd -> [mask, reader, writer] */
    /* Listening sockets served by _accept_connection, each on a uv_poll_t of
     * its own in libuv's set (poll.c); the fd and our duplicate of it while
     * one's reader runs (accept.c accepts from the duplicate), else -1. */
    struct PLPollListener *listeners;
    char listen_fired;
    int accept_fd, accept_dupfd;
    char *read_buf;           /* shared by stream reads (one read at a time) */
    char *udp_buf;            /* shared by UDP reads: recvmmsg chunks (udp.c) */
    PyObject *spare_bytes;    /* a data_received bytes nobody kept, reused for the next read */
    PyObject *pending_exc;    /* KeyboardInterrupt/SystemExit from a libuv callback */

    /* Non-NULL while the GIL is released inside a blocking uv_run pass. */
    PyThreadState *gil_tstate;

    uv_loop_t uv;
    /* Internal handles, all unreferenced (they never keep libuv alive on
     * their own): the GIL release/re-take around libuv's poll, our own fds
     * watched from libuv's epoll set, and the timer-heap deadline. */
    uv_prepare_t gil_prepare;
    uv_poll_t wake_poll;
    uv_poll_t sig_poll;
    uv_poll_t epfd_poll;
    uv_timer_t deadline_timer;
} PLLoop;

extern PyTypeObject PLLoop_Type;

/* Append a handle to the ready queue (steals nothing; takes a reference). */
int pl_loop_ready_push(PLLoop *loop, PLHandle *h);

/* callback(*args) on the next pass in `context` (NULL: a copy of the
 * current one): loop.call_soon for C code. -1 with the error set (the loop
 * is closed: RuntimeError, as from call_soon). */
int pl_loop_call_soon_c(PLLoop *loop, PyObject *callback, PyObject *args, PyObject *context);

/* Run one handle now (skipped when cancelled; timed in debug mode).
 * -1 only for what must stop the loop (KeyboardInterrupt, SystemExit). */
int pl_loop_run_handle(PLLoop *loop, PLHandle *h);

/* Raise RuntimeError('Event loop is closed') and return -1 when closed. */
int pl_loop_check_closed(PLLoop *loop);

int pl_loop_init_type(PyObject *module);

/* Debug mode: the stdlib's full callback check (coroutines and coroutine
 * functions refused), done by the Python layer's _check_callback. */
int pl_loop_check_callback_debug(PLLoop *loop, PyObject *callback, const char *meth);

/* Bumped in the child after fork(): a loop from before the fork is unusable
 * there (its epoll set is shared with the parent). */
extern volatile unsigned long pl_fork_generation;

double pl_loop_now(void);

/* The loop's clock: time.monotonic(), or what a `time` set on the instance
 * returns (the stdlib's loop asks self.time(), so tests and libraries that
 * replace it move the timers). -1.0 with an exception set on failure. */
double pl_loop_time_override(PLLoop *loop);
static inline double
pl_loop_time(PLLoop *loop)
{
    return loop->time_override == NULL ? pl_loop_now() : pl_loop_time_override(loop);
}

/* Every pyloop libuv callback begins with this. A pass of uv_run that may
 * block releases the GIL just before libuv polls (the prepare callback in
 * loop.c); whichever of our callbacks runs first after the wake-up takes it
 * back, so the GIL is never re-taken per callback and no Python API runs
 * without it. */
static inline void
pl_loop_gil_ensure(uv_loop_t *uv)
{
    PLLoop *loop = (PLLoop *)uv->data;
    if (loop->gil_tstate != NULL) {
        PyThreadState *ts = loop->gil_tstate;
        loop->gil_tstate = NULL;
        PyEval_RestoreThread(ts);
        if (loop->monitor != NULL)
            pl_monitor_idle_end(loop);
    }
}

/* Called with KeyboardInterrupt/SystemExit set inside a libuv callback: keep
 * it for run_forever to raise and stop libuv's pass. Clears the error. */
void pl_loop_stash_exception(PLLoop *loop);

/* A caller holding the GIL while the loop thread is inside a blocking uv_run
 * pass without it (between the prepare callback and the first callback) is
 * another thread, and libuv is not thread-safe: touching a handle now would
 * race with libuv's own bookkeeping, which the GIL no longer serialises.
 * Every method that calls libuv checks this first (one load). */
static inline int
pl_loop_check_uv_thread(PLLoop *loop)
{
    if (loop->gil_tstate != NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Non-thread-safe operation invoked on an event loop other "
                        "than the current one");
        return -1;
    }
    return 0;
}

/* The loop's read buffer (PL_LOOP_READ_BUF_SIZE bytes, allocated on first
 * use, NULL when that fails), shared by every read that copies its data out
 * before Python code runs: stream read callbacks and _pipe_read. */
#define PL_LOOP_READ_BUF_SIZE (256 * 1024) /* as the stdlib's max_size */
char *pl_loop_read_buf(PLLoop *loop);

/* A bytes object of `n` bytes copied from `base`, refilled from the loop's
 * spare one when it has that size; give_back (stealing `b`) keeps `b` as the
 * spare when nothing else references it. See loop.c. */
PyObject *pl_loop_bytes_take(PLLoop *loop, const char *base, Py_ssize_t n);
void pl_loop_bytes_give_back(PLLoop *loop, PyObject *b);

#endif
