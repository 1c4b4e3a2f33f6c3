/* The loop: one pass of run_forever, the ready queue, and the wake-ups.
 *
 * The loop sleeps in libuv's own epoll_wait: our wake-up eventfd, the signal
 * wakeup socket and the add_reader epoll set are uv_poll watchers in libuv's
 * epoll set, and the next timer-heap deadline is a uv_timer. When the ready
 * queue is empty, one uv_run(UV_RUN_ONCE) pass waits and dispatches: one
 * system call per wake-up, as a plain libuv program makes. The GIL is
 * released only around the wait: a prepare callback (run just before libuv
 * polls) releases it and the first pyloop callback after the wake-up takes it
 * back (pl_loop_gil_ensure, at the top of every libuv callback), so no
 * callback pays for its own GIL round trip. With callbacks ready, a
 * uv_run(UV_RUN_NOWAIT) pass runs with the GIL held throughout, and only when
 * a libuv handle is active: a busy iteration without one makes no system
 * call.
 *
 * Watchers started outside uv_run (say uv_read_start from a ready-queue
 * callback) reach epoll only inside uv_run; as the wait now happens inside
 * uv_run, after libuv applied them, no flush pass is needed before it. */
#include "loop.h"
#include "accept.h"
#include "fs.h"
#include "dns.h"
#include "errors.h"
#include "module.h"
#include "monitor_hooks.h"
#include "pipe.h"
#include "poll.h"
#include "stream.h"
#include "task.h"
#include "timer.h"
#include "uvhandle.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <structmember.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* The longest single sleep, as the stdlib's MAXIMUM_SELECT_TIMEOUT: a far
 * deadline is re-evaluated once a day instead of overflowing a timespec. */
#define PL_MAX_SLEEP 86400.0

double
pl_loop_now(void)
{
    /* CLOCK_MONOTONIC is what time.monotonic() reads on Linux. */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double
pl_loop_time_override(PLLoop *loop)
{
    PyObject *r = PyObject_CallNoArgs(loop->time_override);
    if (r == NULL)
        return -1.0;
    double t = PyFloat_AsDouble(r);
    Py_DECREF(r);
    return t;
}

volatile unsigned long pl_fork_generation;

static void
pl__loop_atfork_child_cb(void)
{
    pl_fork_generation++;
}

static int
pl_loop_check_fork(PLLoop *loop)
{
    if (loop->fork_gen != pl_fork_generation) {
        PyErr_SetString(PyExc_RuntimeError,
                        "this pyloop event loop was created before os.fork() and cannot be "
                        "used in the child process; create a new loop in the child");
        return -1;
    }
    return 0;
}

int
pl_loop_check_closed(PLLoop *loop)
{
    if (loop->state != PL_LOOP_OPEN) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return -1;
    }
    if (loop->fork_gen != pl_fork_generation)
        return pl_loop_check_fork(loop);
    return 0;
}

int
pl_loop_check_thread(PLLoop *loop)
{
    if (!loop->running)
        return 0;
    if (PyThread_get_thread_ident() != loop->thread_id) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Non-thread-safe operation invoked on an event loop other "
                        "than the current one");
        return -1;
    }
    return 0;
}

int
pl_loop_check_callback_debug(PLLoop *loop, PyObject *callback, const char *meth)
{
    PyObject *r = PyObject_CallMethod((PyObject *)loop, "_check_callback", "Os", callback, meth);
    if (r == NULL)
        return -1;
    Py_DECREF(r);
    return 0;
}

void
pl_loop_stash_exception(PLLoop *loop)
{
    PyObject *exc = pl_err_fetch();
    if (loop->pending_exc == NULL)
        loop->pending_exc = exc;
    else
        Py_XDECREF(exc);
    uv_stop(&loop->uv);
}

/* After a uv_run pass: re-raise what a libuv callback stashed. */
static int
pl_loop_raise_pending(PLLoop *loop)
{
    if (loop->pending_exc == NULL)
        return 0;
    PyObject *exc = loop->pending_exc;
    loop->pending_exc = NULL;
    pl_err_restore(exc);
    return -1;
}

/* ---- ready queue ---------------------------------------------------------- */

static int
pl_loop_ready_grow(PLLoop *loop)
{
    size_t cap = loop->ready_cap ? loop->ready_cap * 2 : 256;
    PLHandle **buf = PyMem_Malloc(cap * sizeof(PLHandle *));
    if (buf == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    /* Linearise the ring into the new buffer. */
    for (size_t i = 0; i < loop->ready_len; i++)
        buf[i] = loop->ready[(loop->ready_head + i) & (loop->ready_cap - 1)];
    PyMem_Free(loop->ready);
    loop->ready = buf;
    loop->ready_head = 0;
    loop->ready_cap = cap;
    return 0;
}

int
pl_loop_ready_push(PLLoop *loop, PLHandle *h)
{
    if (loop->ready_len == loop->ready_cap && pl_loop_ready_grow(loop) < 0)
        return -1;
    if (loop->monitor != NULL)
        pl_monitor_on_push(loop, h);
    loop->ready[(loop->ready_head + loop->ready_len) & (loop->ready_cap - 1)] =
        (PLHandle *)Py_NewRef((PyObject *)h);
    loop->ready_len++;
    return 0;
}

static inline PLHandle *
pl_loop_ready_pop(PLLoop *loop)
{
    PLHandle *h = loop->ready[loop->ready_head];
    loop->ready_head = (loop->ready_head + 1) & (loop->ready_cap - 1);
    loop->ready_len--;
    return h;
}

static void
pl_loop_ready_clear(PLLoop *loop)
{
    /* Detach first: dropping a handle can run code that schedules more. */
    PLHandle **buf = loop->ready;
    size_t head = loop->ready_head, len = loop->ready_len, cap = loop->ready_cap;
    loop->ready = NULL;
    loop->ready_head = loop->ready_len = loop->ready_cap = 0;
    for (size_t i = 0; i < len; i++)
        Py_DECREF(buf[(head + i) & (cap - 1)]);
    PyMem_Free(buf);
}

/* ---- wake-ups -------------------------------------------------------------- */

static void
pl_loop_drain_fd(int fd)
{
    char buf[256];
    while (read(fd, buf, sizeof(buf)) > 0)
        ;
}

/* Signal numbers written by Python's C-level signal handler to the wakeup fd.
 * Python-level handlers run through PyErr_CheckSignals; handlers registered
 * with add_signal_handler are dispatched by the Python layer. */
static int
pl_loop_read_signals(PLLoop *self)
{
    char buf[256];
    ssize_t n;
    while ((n = read(self->sig_rfd, buf, sizeof(buf))) > 0) {
        if (!self->has_signal_handlers)
            continue;
        PyObject *data = PyBytes_FromStringAndSize(buf, n);
        if (data == NULL)
            return -1;
        PyObject *r = PyObject_CallMethod((PyObject *)self, "_process_self_data", "O", data);
        Py_DECREF(data);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    return 0;
}

/* ---- libuv passes --------------------------------------------------------- */

static void
pl__loop_prepare_cb(uv_prepare_t *handle)
{
    PLLoop *self = (PLLoop *)handle->loop->data;
    /* libuv polls right after the prepare callbacks: release the GIL only
     * for a pass that may block. */
    if (self->sleeping && self->gil_tstate == NULL) {
        if (self->monitor != NULL)
            pl_monitor_idle_begin(self);
        self->gil_tstate = PyEval_SaveThread();
    }
}

static void
pl__loop_deadline_cb(uv_timer_t *handle)
{
    /* Only ends the wait: the timer heap decides what is due. uv_run runs
     * due timers before it polls too, and libuv's clock can tick between
     * arming and that run: fired there, this timer no longer bounds the
     * poll, which would then wait with no deadline at all. uv_stop makes
     * that poll non-blocking (uv_run clears the flag when it returns). */
    pl_loop_gil_ensure(handle->loop);
    uv_stop(handle->loop);
}

static void
pl__loop_fd_poll_cb(uv_poll_t *handle, int status, int events)
{
    (void)status;
    (void)events;
    pl_loop_gil_ensure(handle->loop);
    PLLoop *self = (PLLoop *)handle->loop->data;
    /* Only noted here; pl_loop_after_pass does the work once libuv's pass
     * is over, so these fds run no Python code inside uv_run. An error
     * status still counts as readable: the read reports it. */
    if (handle == &self->wake_poll)
        self->wake_fired = 1;
    else if (handle == &self->sig_poll)
        self->sig_fired = 1;
    else
        self->poll_fired = 1;
}

static int
pl_loop_poll_start(PLLoop *self, uv_poll_t *p, int fd)
{
    int err = uv_poll_init(&self->uv, p, fd);
    if (err < 0)
        return err;
    pl_counters.handles_created++;
    err = uv_poll_start(p, UV_READABLE, pl__loop_fd_poll_cb);
    uv_unref((uv_handle_t *)p);
    return err;
}

/* The internal handles of PLLoop, unreferenced so that uv_loop_alive()
 * still means "a user handle or request is active". */
static int
pl_loop_uv_init_internal(PLLoop *self)
{
    int err = uv_prepare_init(&self->uv, &self->gil_prepare);
    if (err < 0)
        return err;
    pl_counters.handles_created++;
    uv_unref((uv_handle_t *)&self->gil_prepare);
    if ((err = uv_prepare_start(&self->gil_prepare, pl__loop_prepare_cb)) < 0)
        return err;
    /* No check handle takes the GIL back after the poll: every libuv
     * callback of ours starts with pl_loop_gil_ensure (the thread-pool work
     * functions, which run on other threads, touch no Python object), and
     * pl_loop_sleep takes it when uv_run returns, so a pass that ran none of
     * our callbacks costs nothing here. */
    if ((err = uv_timer_init(&self->uv, &self->deadline_timer)) < 0)
        return err;
    pl_counters.handles_created++;
    uv_unref((uv_handle_t *)&self->deadline_timer);
    if ((err = pl_loop_poll_start(self, &self->wake_poll, self->wake_fd)) < 0)
        return err;
    if ((err = pl_loop_poll_start(self, &self->sig_poll, self->sig_rfd)) < 0)
        return err;
    return pl_loop_poll_start(self, &self->epfd_poll, self->epfd);
}

/* Work noted by the internal watchers during a libuv pass. */
static int
pl_loop_after_pass(PLLoop *self)
{
    if (self->wake_fired) {
        self->wake_fired = 0;
        self->wake_pending = 0;
        pl_loop_drain_fd(self->wake_fd);
    }
    if (self->sig_fired) {
        self->sig_fired = 0;
        if (pl_loop_read_signals(self) < 0)
            return -1;
    }
    if (self->listen_fired) {
        self->listen_fired = 0;
        if (pl_poll_dispatch_listeners(self) < 0)
            return -1;
    }
    if (self->poll_fired) {
        self->poll_fired = 0;
        if (pl_poll_active(self) && pl_poll_dispatch(self) < 0)
            return -1;
    }
    return 0;
}

/* Nothing is ready: wait in libuv's epoll_wait for I/O, a wake-up or the
 * deadline of `first` (the earliest timer, not yet due; NULL: none), and
 * dispatch what woke us. */
static int
pl_loop_sleep(PLLoop *self, PLHandle *first)
{
    int armed = 0;
    if (first != NULL) {
        /* The timer only bounds the wait (uv_run(UV_RUN_ONCE) polls once
         * whether or not it fires): libuv waits `ms` from the moment it
         * polls, so the remaining time measured on our clock and rounded up
         * to whole milliseconds ends the wait at the deadline or just after.
         * Measured from libuv's truncated clock instead it would oversleep
         * by another millisecond on average. A wait that ends early (libuv's
         * clock ticked between here and its poll) is only a wasted pass:
         * the timer heap decides what is due. */
        uv_update_time(&self->uv);
        double now = pl_loop_time(self);
        if (now == -1.0 && PyErr_Occurred())
            return -1;
        double ms = ceil((first->when - now) * 1000.0);
        if (!(ms >= 1))
            ms = 1;
        if (ms > PL_MAX_SLEEP * 1000.0)
            ms = PL_MAX_SLEEP * 1000.0;
        uv_timer_start(&self->deadline_timer, pl__loop_deadline_cb, (uint64_t)ms, 0);
        armed = 1;
    }
    /* Referenced for the pass so that libuv waits even with no user handle
     * active (a wake-up or a signal then ends the wait). */
    uv_ref((uv_handle_t *)&self->wake_poll);
    self->sleeping = 1;
    uv_run(&self->uv, UV_RUN_ONCE);
    self->sleeping = 0;
    pl_loop_gil_ensure(&self->uv); /* nothing may have run after the prepare callback */
    uv_unref((uv_handle_t *)&self->wake_poll);
    if (armed)
        uv_timer_stop(&self->deadline_timer);

    if (pl_loop_raise_pending(self) < 0)
        return -1;
    /* Python-level signal handlers (SIGINT's KeyboardInterrupt among them)
     * run here when a signal woke us: the C-level handler writes to the
     * wakeup socket, which libuv watches (libuv itself retries an
     * interrupted epoll_wait). */
    if (PyErr_CheckSignals() < 0)
        return -1;
    return pl_loop_after_pass(self);
}

/* Wait for I/O, a wake-up or the next deadline, then dispatch libuv. */
static int
pl_loop_poll(PLLoop *self, int busy)
{
    PLHandle *first = NULL;
    if (self->monitor != NULL)
        pl_monitor_pass_begin(self);
    if (!busy) {
        first = pl_timer_peek(self);
        /* Past, or a NaN deadline: due now, no sleep. */
        if (first != NULL) {
            double now = pl_loop_time(self);
            if (now == -1.0 && PyErr_Occurred())
                return -1;
            if (!(first->when > now))
                busy = 1;
        }
    }
    if (!busy)
        return pl_loop_sleep(self, first);

    if (uv_loop_alive(&self->uv)) {
        /* The GIL stays held: `sleeping` is not set. */
        uv_run(&self->uv, UV_RUN_NOWAIT);
        if (pl_loop_raise_pending(self) < 0)
            return -1;
        return pl_loop_after_pass(self);
    }
    /* No libuv handle active: no uv_run and, without add_reader fds or
     * signal handlers, no system call at all. */
    if (pl_poll_active(self) && pl_poll_dispatch(self) < 0)
        return -1;
    if (self->has_signal_handlers && pl_loop_read_signals(self) < 0)
        return -1;
    return 0;
}

static int
pl_loop_run_handle_debug(PLLoop *self, PLHandle *h)
{
    double t0 = pl_loop_now();
    self->current_handle = h;
    int rc = pl_handle_run(h);
    self->current_handle = NULL;
    double dt = pl_loop_now() - t0;
    if (rc == 0 && dt >= self->slow_callback_duration && pl_state.slow_callback != NULL) {
        PyObject *r = PyObject_CallFunction(pl_state.slow_callback, "OOd", (PyObject *)self,
                                            (PyObject *)h, dt);
        if (r == NULL)
            return -1;
        Py_DECREF(r);
    }
    return rc;
}

int
pl_loop_run_handle(PLLoop *self, PLHandle *h)
{
    if (h->cancelled)
        return 0;
    PLMonitor *m = self->monitor;
    if (m != NULL) {
        pl_monitor_handle_begin(self, m, h);
        int rc = self->debug ? pl_loop_run_handle_debug(self, h) : pl_handle_run(h);
        /* Not if the callback disabled monitoring (a new monitor enabled
         * in it has m's address at most by chance, and then no start to
         * time from: pl_monitor_handle_end copes). */
        if (self->monitor == m)
            pl_monitor_handle_end(self, m, h);
        return rc;
    }
    return self->debug ? pl_loop_run_handle_debug(self, h) : pl_handle_run(h);
}

/* Run the timers due now, earliest first. On an error (KeyboardInterrupt
 * from a callback, say) the ones not run yet go to the ready queue, so the
 * next run_forever still runs them. */
static int
pl_loop_run_due_timers(PLLoop *self, unsigned long long seq_limit)
{
    double now = pl_loop_time(self);
    if (now == -1.0 && PyErr_Occurred())
        return -1;
    Py_ssize_t n = pl_timer_take_due(self, now, seq_limit);
    if (n < 0)
        return -1;
    if (n > 0 && self->monitor != NULL)
        pl_monitor_batch_begin(self, self->time_override == NULL ? now : -1.0, 1);
    int rc = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PLHandle *h = self->due[i];
        self->due[i] = NULL;
        if (rc == 0)
            rc = pl_loop_run_handle(self, h);
        else if (pl_loop_ready_push(self, h) < 0)
            PyErr_WriteUnraisable((PyObject *)h);
        Py_DECREF(h);
    }
    if (n > 0 && rc == 0 && self->monitor != NULL)
        pl_monitor_batch_end(self, 1);
    return rc;
}

/* Whether an iteration that begins with callbacks ready would find I/O if it
 * polled now, as the stdlib's iteration polls before it runs them: an event
 * in libuv's epoll set (poll(2) on its fd takes nothing from it), or work
 * libuv must do in its next pass anyway: watchers started since its last
 * pass (not in epoll yet), pending write completions, closing handles
 * (uv_backend_timeout() is 0 for those); with no libuv handle active, the
 * add_reader set and the signal fd themselves. The watcher queue is a two-pointer
 * list head in uv_loop_t, empty when it points at itself; that holds for
 * libuv's QUEUE (void *[2], up to 1.46) and struct uv__queue (1.47 on). */
static int
pl_loop_io_at_start(PLLoop *self)
{
    struct pollfd p[2];
    nfds_t n = 0;
    if (uv_loop_alive(&self->uv)) {
        void **watchers = (void **)&self->uv.watcher_queue;
        if (watchers[0] != (void *)watchers || uv_backend_timeout(&self->uv) == 0)
            return 1;
        p[n++] = (struct pollfd){.fd = uv_backend_fd(&self->uv), .events = POLLIN};
    }
    else {
        /* No libuv pass then (pl_loop_poll): only the add_reader set and
         * the signal wakeup fd are looked at, directly. */
        if (pl_poll_active(self))
            p[n++] = (struct pollfd){.fd = self->epfd, .events = POLLIN};
        if (self->has_signal_handlers)
            p[n++] = (struct pollfd){.fd = self->sig_rfd, .events = POLLIN};
        if (n == 0)
            return 0;
    }
    return poll(p, n, 0) != 0; /* an error: poll as before */
}

/* One iteration, in the stdlib's order: the callbacks that were ready when
 * it began, then the I/O callbacks, then the timers due (those scheduled
 * before the iteration began); whatever these schedule runs in the next
 * iteration. The stdlib polls first and queues its I/O callbacks behind the
 * ready ones; libuv runs I/O callbacks inside the poll, so the ready ones
 * run before it. What the poll would have found is decided before they run:
 * when nothing was there, I/O that arrives while they run waits for the next
 * iteration, behind what they schedule, as on the stdlib loop (and the libuv
 * pass is saved). When something was, the pass after them dispatches it and
 * whatever else came meanwhile on other fds (on the same fd the stdlib too
 * reads all that arrived by the time its callback runs). */
static int
pl_loop_run_once(PLLoop *self)
{
    unsigned long long timer_seq_before = self->timer_seq;
    size_t ntodo = self->ready_len;
    int io_at_start = 1;
    self->iteration++;
    if (ntodo > 0) {
        io_at_start = pl_loop_io_at_start(self);
        if (self->monitor != NULL)
            pl_monitor_batch_begin(self, -1.0, 0);
    }
    for (size_t i = 0; i < ntodo && self->ready_len > 0; i++) {
        PLHandle *h = pl_loop_ready_pop(self);
        int rc = pl_loop_run_handle(self, h);
        Py_DECREF(h);
        if (rc < 0)
            return -1;
    }
    if (ntodo > 0 && self->monitor != NULL)
        pl_monitor_batch_end(self, 0);
    /* The stdlib's poll happens before the ready callbacks: what it found
     * runs in this iteration even when one of them called stop(), and a
     * stop() from one of them makes the pass non-blocking. */
    if (io_at_start) {
        if (pl_loop_poll(self, self->ready_len > 0 || self->stopping) < 0)
            return -1;
        if (self->monitor != NULL) /* I/O callbacks ran, unmeasured */
            self->monitor->stale = 1;
    }
    if (self->heap_len > 0 && pl_loop_run_due_timers(self, timer_seq_before) < 0)
        return -1;
    return 0;
}

/* ---- Python methods --------------------------------------------------------- */

static PyObject *
Loop__run(PLLoop *self, PyObject *Py_UNUSED(ignored))
{
    if (pl_loop_check_closed(self) < 0)
        return NULL;
    if (self->running) {
        PyErr_SetString(PyExc_RuntimeError, "This event loop is already running");
        return NULL;
    }
    int rc = 0;
    self->running = 1;
    self->thread_id = PyThread_get_thread_ident();
    Py_INCREF(self); /* user code may drop every other reference */
    if (self->monitor != NULL)
        pl_monitor_run_begin(self);
    for (;;) {
        if (pl_loop_run_once(self) < 0) {
            rc = -1;
            break;
        }
        if (self->stopping)
            break;
    }
    if (self->monitor != NULL)
        pl_monitor_run_end(self);
    self->stopping = 0;
    self->running = 0;
    self->thread_id = 0;
    Py_DECREF(self);
    if (rc < 0)
        return NULL;
    Py_RETURN_NONE;
}

/* Backlog beyond which call_soon_threadsafe() from another thread waits for
 * the loop (each iteration runs at most this many callbacks more than were
 * queued when it began, however many threads add them), and the longest
 * wait per call, after which the callback is queued anyway: a loop thread
 * stuck in a callback waiting on the adding thread slows it, not deadlocks. */
#define PL_LOOP_THREADSAFE_BACKLOG 16384
#define PL_LOOP_THREADSAFE_MAX_WAIT 0.01

/* Threads adding callbacks faster than the loop runs them would grow the
 * ready queue without bound, and with it each iteration, so that timers and
 * I/O wait behind it. The stdlib's call_soon_threadsafe() lets go of the GIL
 * on every call (its self-pipe write), which leaves the loop thread its
 * share; this lets go of it only while the backlog is full. */
static void
pl_loop_threadsafe_throttle(PLLoop *self)
{
    if (!self->running || self->ready_len < PL_LOOP_THREADSAFE_BACKLOG ||
        PyThread_get_thread_ident() == self->thread_id)
        return;
    double deadline = pl_loop_now() + PL_LOOP_THREADSAFE_MAX_WAIT;
    while (self->running && self->state == PL_LOOP_OPEN &&
           self->ready_len >= PL_LOOP_THREADSAFE_BACKLOG &&
           pl_loop_now() < deadline) {
        Py_BEGIN_ALLOW_THREADS
        struct timespec pause = {0, 100000}; /* 0.1 ms */
        nanosleep(&pause, NULL);
        Py_END_ALLOW_THREADS
    }
}

/* The last kwnames tuple that was exactly ("context",) (a strong reference,
 * so its address cannot be reused by another object). The C Task passes the
 * same tuple on every step, and on 3.14 its "context" string is not the
 * interned one, so matching the tuple itself saves a string compare per step. */
static PyObject *pl_loop_context_kwnames;

/* call_soon(callback, *args, context=None) */
static PyObject *
pl_loop_call_soon_impl(PLLoop *self, const char *meth, PyObject *const *args,
                       Py_ssize_t nargs, PyObject *kwnames, int threadsafe)
{
    PyObject *callback = NULL, *context = NULL, *tuple;
    if (kwnames != NULL && kwnames == pl_loop_context_kwnames) {
        context = args[nargs];
    }
    else if (kwnames != NULL) {
        Py_ssize_t nk = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t i = 0; i < nk; i++) {
            PyObject *k = PyTuple_GET_ITEM(kwnames, i);
            if (k == pl_state.str_context ||
                PyUnicode_CompareWithASCIIString(k, "context") == 0) {
                context = args[nargs + i];
            }
            else if (nargs == 0 && PyUnicode_CompareWithASCIIString(k, "callback") == 0) {
                callback = args[nargs + i];
            }
            else {
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%S'",
                             meth, k);
                return NULL;
            }
        }
        if (nk == 1 && context != NULL)
            Py_XSETREF(pl_loop_context_kwnames, Py_NewRef(kwnames));
    }
    if (nargs > 0) {
        callback = args[0];
    }
    else if (callback == NULL) {
        PyErr_Format(PyExc_TypeError, "%s() missing 1 required positional argument: 'callback'",
                     meth);
        return NULL;
    }
    if (threadsafe)
        pl_loop_threadsafe_throttle(self);
    /* pl_loop_check_closed's two tests inline: this runs once per task step. */
    if ((self->state != PL_LOOP_OPEN || self->fork_gen != pl_fork_generation) &&
        pl_loop_check_closed(self) < 0)
        return NULL;
    if (self->debug && !threadsafe && pl_loop_check_thread(self) < 0)
        return NULL;
    /* The stdlib checks callability only in debug mode and otherwise fails
     * later in the exception handler; failing at the call site is clearer.
     * (The test is PyCallable_Check's own, without the call.) */
    if (self->debug) {
        if (pl_loop_check_callback_debug(self, callback, meth) < 0)
            return NULL;
    }
    else if (Py_TYPE(callback)->tp_call == NULL) {
        PyErr_Format(PyExc_TypeError, "a callable object was expected by %s(), got %R", meth,
                     callback);
        return NULL;
    }
    if (nargs <= 1) {
        static PyObject *no_args; /* the shared empty tuple, kept */
        if (no_args == NULL && (no_args = PyTuple_New(0)) == NULL)
            return NULL;
        tuple = Py_NewRef(no_args);
    }
    else {
        tuple = PyTuple_New(nargs - 1);
        if (tuple == NULL)
            return NULL;
        for (Py_ssize_t i = 1; i < nargs; i++)
            PyTuple_SET_ITEM(tuple, i - 1, Py_NewRef(args[i]));
    }
    PLHandle *h = pl_handle_new(&PLHandle_Type, self, callback, tuple, context);
    Py_DECREF(tuple);
    if (h == NULL)
        return NULL;
    PyObject *ts = NULL; /* what call_soon_threadsafe returns on 3.14+ */
    if (threadsafe && pl_handle_threadsafe_active() &&
        (ts = pl_handle_threadsafe_new(h)) == NULL) {
        Py_DECREF(h);
        return NULL;
    }
    if (pl_loop_ready_push(self, h) < 0) {
        Py_XDECREF(ts);
        Py_DECREF(h);
        return NULL;
    }
    if (threadsafe && !self->wake_pending) {
        /* Written with the GIL held, as the loop reads wake_pending with it;
         * one outstanding write is enough to end a sleep. */
        uint64_t one = 1;
        self->wake_pending = 1;
        if (write(self->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
            self->wake_pending = 0;
    }
    if (ts != NULL) {
        Py_DECREF(h); /* the ready queue keeps it */
        return ts;
    }
    return (PyObject *)h;
}

static PyObject *
Loop_call_soon(PLLoop *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    return pl_loop_call_soon_impl(self, "call_soon", args, nargs, kwnames, 0);
}

static PyObject *
Loop_call_soon_threadsafe(PLLoop *self, PyObject *const *args, Py_ssize_t nargs,
                          PyObject *kwnames)
{
    return pl_loop_call_soon_impl(self, "call_soon_threadsafe", args, nargs, kwnames, 1);
}

int
pl_loop_call_soon_c(PLLoop *loop, PyObject *callback, PyObject *args, PyObject *context)
{
    if (pl_loop_check_closed(loop) < 0)
        return -1;
    PLHandle *h = pl_handle_new(&PLHandle_Type, loop, callback, args, context);
    if (h == NULL)
        return -1;
    int rc = pl_loop_ready_push(loop, h);
    Py_DECREF(h);
    return rc;
}

static PyObject *
Loop_time(PLLoop *Py_UNUSED(self), PyObject *Py_UNUSED(ignored))
{
    return PyFloat_FromDouble(pl_loop_now());
}

static PyObject *
Loop_stop(PLLoop *self, PyObject *Py_UNUSED(ignored))
{
    self->stopping = 1;
    Py_RETURN_NONE;
}

static PyObject *
Loop_is_running(PLLoop *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->running);
}

static PyObject *
Loop_is_closed(PLLoop *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->state == PL_LOOP_CLOSED);
}

static PyObject *
Loop_get_debug(PLLoop *self, PyObject *Py_UNUSED(ignored))
{
    if (self->debug_obj != NULL)
        return Py_NewRef(self->debug_obj);
    return PyBool_FromLong(self->debug);
}

/* The stdlib's get_debug() returns the very object set_debug() was given;
 * the C core tests the flag, taken (and any __bool__ error raised) now. */
static PyObject *
Loop__set_debug_flag(PLLoop *self, PyObject *arg)
{
    int v = PyObject_IsTrue(arg);
    if (v < 0)
        return NULL;
    self->debug = (char)v;
    Py_XSETREF(self->debug_obj, PyBool_Check(arg) ? NULL : Py_NewRef(arg));
    Py_RETURN_NONE;
}

/* _set_time_override(f or None): Loop.__setattr__/__delattr__ of the Python
 * layer report a `time` set on (or deleted from) the instance. */
static PyObject *
Loop__set_time_override(PLLoop *self, PyObject *f)
{
    Py_XSETREF(self->time_override, f == Py_None ? NULL : Py_NewRef(f));
    Py_RETURN_NONE;
}

static PyObject *
Loop_create_future(PLLoop *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *stack[1] = {(PyObject *)self};
    return PyObject_Vectorcall(pl_state.future_type, stack, 0, pl_state.kwnames_loop);
}

static void
pl__loop_walk_close_cb(uv_handle_t *handle, void *arg)
{
    (void)arg;
    /* What is left once the transports were closed through their owners
     * (pl_uvh_close_all): the loop's own handles. */
    if (!uv_is_closing(handle))
        uv_close(handle, NULL);
}

static void
pl__loop_own_close_cb(uv_handle_t *handle)
{
    pl_loop_gil_ensure(handle->loop);
    pl_counters.handles_freed++;
}

/* The loop's own handles, closed with a callback that counts them. One
 * libuv never initialised (init failed before it) has no loop: tp_alloc
 * zeroed the struct. */
static void
pl_loop_close_own(PLLoop *self)
{
    uv_handle_t *own[] = {
        (uv_handle_t *)&self->gil_prepare, (uv_handle_t *)&self->deadline_timer,
        (uv_handle_t *)&self->wake_poll, (uv_handle_t *)&self->sig_poll,
        (uv_handle_t *)&self->epfd_poll,
    };
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
        if (own[i]->loop == &self->uv && !uv_is_closing(own[i]))
            uv_close(own[i], pl__loop_own_close_cb);
}

/* Close every handle (ours included), run their close callbacks, close
 * libuv. Before our fds are closed: libuv must not watch a closed fd. */
static int
pl_loop_uv_teardown(PLLoop *self)
{
    pl_uvh_close_all(self);
    pl_poll_listeners_close(self);
    pl_loop_close_own(self);
    uv_walk(&self->uv, pl__loop_walk_close_cb, NULL);
    /* fs requests still queued in the thread pool would keep uv_run busy
     * until a worker got to them: take them out; running ones finish. */
    pl_fs_cancel_all(self);
    pl_dns_cancel_all(self);
    uv_run(&self->uv, UV_RUN_DEFAULT);
    return uv_loop_close(&self->uv);
}

/* The C half of close(): drop queued work, close libuv, release the fds. */
static PyObject *
Loop__close(PLLoop *self, PyObject *Py_UNUSED(ignored))
{
    if (self->running) {
        PyErr_SetString(PyExc_RuntimeError, "Cannot close a running event loop");
        return NULL;
    }
    if (self->state != PL_LOOP_OPEN)
        Py_RETURN_NONE;
    self->state = PL_LOOP_CLOSED;
    pl_loop_ready_clear(self);
    pl_timer_clear(self);

    int err = 0;
    if (self->fork_gen == pl_fork_generation)
        err = pl_loop_uv_teardown(self);
    /* else: a forked child's copy. Its epoll set is shared with the parent,
     * so closing libuv handles here would unregister the parent's fds; the
     * child leaves libuv alone and only drops its own fd copies. */
    pl_poll_close(self);
    close(self->wake_fd);
    close(self->sig_rfd);
    close(self->sig_wfd);
    self->wake_fd = self->sig_rfd = self->sig_wfd = -1;
    if (err != 0) {
        PyErr_Format(PyExc_RuntimeError, "libuv loop did not close cleanly: %s",
                     uv_strerror(err));
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
Loop_get_thread_id(PLLoop *self, void *Py_UNUSED(c))
{
    if (!self->running)
        Py_RETURN_NONE;
    return PyLong_FromUnsignedLong(self->thread_id);
}

static PyObject *
Loop_get_closed(PLLoop *self, void *Py_UNUSED(c))
{
    return PyBool_FromLong(self->state == PL_LOOP_CLOSED);
}

static PyObject *
Loop_get_stopping(PLLoop *self, void *Py_UNUSED(c))
{
    return PyBool_FromLong(self->stopping);
}

static PyObject *
Loop_get_debug_attr(PLLoop *self, void *Py_UNUSED(c))
{
    return PyBool_FromLong(self->debug);
}

static PyObject *
Loop_get_current_handle(PLLoop *self, void *Py_UNUSED(c))
{
    return Py_NewRef(self->current_handle ? (PyObject *)self->current_handle : Py_None);
}

static PyObject *
Loop_get_ready_count(PLLoop *self, void *Py_UNUSED(c))
{
    return PyLong_FromSize_t(self->ready_len);
}

static PyObject *
Loop_get_timer_count(PLLoop *self, void *Py_UNUSED(c))
{
    return PyLong_FromSsize_t(self->heap_len);
}

static PyObject *
Loop_get_signal_fd(PLLoop *self, void *Py_UNUSED(c))
{
    return PyLong_FromLong(self->sig_wfd);
}

static PyObject *
Loop_get_has_signal_handlers(PLLoop *self, void *Py_UNUSED(c))
{
    return PyBool_FromLong(self->has_signal_handlers);
}

static int
Loop_set_has_signal_handlers(PLLoop *self, PyObject *v, void *Py_UNUSED(c))
{
    int b = v ? PyObject_IsTrue(v) : 0;
    if (b < 0)
        return -1;
    self->has_signal_handlers = (char)b;
    return 0;
}

/* ---- type slots ------------------------------------------------------------- */

static PyObject *
Loop_new(PyTypeObject *type, PyObject *Py_UNUSED(args), PyObject *Py_UNUSED(kw))
{
    PLLoop *self = (PLLoop *)type->tp_alloc(type, 0);
    int sv[2] = {-1, -1};
    if (self == NULL)
        return NULL;
    self->state = PL_LOOP_INIT;
    self->wake_fd = self->sig_rfd = self->sig_wfd = self->epfd = -1;
    self->accept_fd = self->accept_dupfd = -1;
    self->slow_callback_duration = 0.1;
    self->fork_gen = pl_fork_generation;

    self->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->wake_fd < 0)
        goto error_errno;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        goto error_errno;
    self->sig_rfd = sv[0];
    self->sig_wfd = sv[1];
    if (pl_poll_init(self) < 0)
        goto error;
    int err = uv_loop_init(&self->uv);
    if (err < 0) {
        pl_error_set_uv(err);
        goto error;
    }
    self->uv.data = self;
    err = pl_loop_uv_init_internal(self);
    if (err < 0) {
        pl_loop_uv_teardown(self);
        pl_error_set_uv(err);
        goto error;
    }
    self->state = PL_LOOP_OPEN;
    return (PyObject *)self;

error_errno:
    pl_error_set_errno();
error:
    Py_DECREF(self);
    return NULL;
}

static int
Loop_traverse(PLLoop *self, visitproc visit, void *arg)
{
    if (self->state == PL_LOOP_OPEN) {
        /* The transports' open handles belong to this loop: what libuv holds
         * on their behalf is the loop's, so that a loop dropped without
         * close() and its open transports are one collectable cycle. The
         * handle list only changes with the GIL held. */
        int rc = pl_uvh_traverse_all(self, visit, arg);
        if (rc != 0)
            return rc;
    }
    for (size_t i = 0; i < self->ready_len; i++)
        Py_VISIT((PyObject *)self->ready[(self->ready_head + i) & (self->ready_cap - 1)]);
    for (Py_ssize_t i = 0; i < self->heap_len; i++)
        Py_VISIT((PyObject *)self->heap[i]);
    Py_VISIT(self->task_factory);
    Py_VISIT(self->debug_obj);
    Py_VISIT(self->pollers);
    Py_VISIT(self->time_override);
    Py_VISIT((PyObject *)self->monitor);
    return 0;
}

static int
Loop_clear(PLLoop *self)
{
    pl_loop_ready_clear(self);
    pl_timer_clear(self);
    Py_CLEAR(self->task_factory);
    Py_CLEAR(self->debug_obj);
    Py_CLEAR(self->pollers);
    Py_CLEAR(self->time_override);
    Py_CLEAR(self->monitor);
    return 0;
}

static void
Loop_finalize(PLLoop *self)
{
    if (self->state != PL_LOOP_OPEN)
        return;
    PyObject *exc = pl_err_fetch();
    PyObject *r;
    if (PyErr_ResourceWarning((PyObject *)self, 1, "unclosed event loop %R", self) < 0)
        PyErr_WriteUnraisable((PyObject *)self);
    if (!self->running) {
        r = PyObject_CallMethod((PyObject *)self, "close", NULL);
        if (r == NULL)
            PyErr_WriteUnraisable((PyObject *)self);
        else
            Py_DECREF(r);
    }
    if (exc != NULL)
        pl_err_restore(exc);
}

static void
Loop_dealloc(PLLoop *self)
{
    if (PyObject_CallFinalizerFromDealloc((PyObject *)self) < 0)
        return; /* resurrected */
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL)
        PyObject_ClearWeakRefs((PyObject *)self);
    Loop_clear(self);
    if (self->state == PL_LOOP_OPEN && self->fork_gen == pl_fork_generation) {
        /* close() failed or was impossible; release what we can. */
        pl_loop_uv_teardown(self);
    }
    PyMem_Free(self->read_buf);
    self->read_buf = NULL;
    PyMem_Free(self->udp_buf);
    self->udp_buf = NULL;
    PyMem_Free(self->due);
    self->due = NULL;
    Py_CLEAR(self->spare_bytes);
    pl_poll_close(self);
    Py_CLEAR(self->pending_exc);
    if (self->wake_fd >= 0)
        close(self->wake_fd);
    if (self->sig_rfd >= 0)
        close(self->sig_rfd);
    if (self->sig_wfd >= 0)
        close(self->sig_wfd);
    /* A heap subclass's type reference is dropped by subtype_dealloc. */
    Py_TYPE(self)->tp_free((PyObject *)self);
}

#define FASTKW (METH_FASTCALL | METH_KEYWORDS)

static PyMethodDef Loop_methods[] = {
    {"call_soon", PL_METH(Loop_call_soon), FASTKW,
     "call_soon($self, callback, *args, context=None)\n--\n\n"
     "Arrange for a callback to be called as soon as possible."},
    {"call_soon_threadsafe", PL_METH(Loop_call_soon_threadsafe), FASTKW,
     "call_soon_threadsafe($self, callback, *args, context=None)\n--\n\n"
     "Like call_soon(), but thread-safe."},
    {"call_later", PL_METH(Loop_call_later), FASTKW,
     "call_later($self, delay, callback, *args, context=None)\n--\n\n"
     "Arrange for a callback to be called at a given time."},
    {"call_at", PL_METH(Loop_call_at), FASTKW,
     "call_at($self, when, callback, *args, context=None)\n--\n\n"
     "Like call_later(), but uses an absolute time."},
    {"time", PL_METH(Loop_time), METH_NOARGS,
     "time($self)\n--\n\nReturn the time according to the event loop's clock."},
    {"stop", PL_METH(Loop_stop), METH_NOARGS, "stop($self)\n--\n\nStop running the event loop."},
    {"is_running", PL_METH(Loop_is_running), METH_NOARGS,
     "is_running($self)\n--\n\nReturns True if the event loop is running."},
    {"is_closed", PL_METH(Loop_is_closed), METH_NOARGS,
     "is_closed($self)\n--\n\nReturns True if the event loop was closed."},
    {"get_debug", PL_METH(Loop_get_debug), METH_NOARGS, "get_debug($self)\n--\n\n"},
    {"create_future", PL_METH(Loop_create_future), METH_NOARGS,
     "create_future($self)\n--\n\nCreate a Future object attached to the loop."},
    {"create_task", PL_METH(Loop_create_task), FASTKW,
     PL_CREATE_TASK_SIG "Schedule a coroutine object; return a Task."},
    {"set_task_factory", PL_METH(Loop_set_task_factory), METH_O,
     "set_task_factory($self, factory)\n--\n\nSet the factory loop.create_task() uses (None: the default)."},
    {"get_task_factory", PL_METH(Loop_get_task_factory), METH_NOARGS,
     "get_task_factory($self)\n--\n\nReturn the task factory, or None."},
    {"_set_debug_flag", PL_METH(Loop__set_debug_flag), METH_O, NULL},
    {"_set_time_override", PL_METH(Loop__set_time_override), METH_O, NULL},
    {"_run", PL_METH(Loop__run), METH_NOARGS, NULL},
    {"_add_reader", PL_METH(Loop__add_reader), METH_FASTCALL, NULL},
    {"_add_writer", PL_METH(Loop__add_writer), METH_FASTCALL, NULL},
    {"_remove_reader", PL_METH(Loop__remove_reader), METH_O, NULL},
    {"_remove_writer", PL_METH(Loop__remove_writer), METH_O, NULL},
    {"_new_stream_transport", PL_METH(Loop__new_stream_transport), METH_FASTCALL, NULL},
    {"_accept_serve", PL_METH(Loop__accept_serve), METH_FASTCALL, NULL},
    {"_accept_connection", PL_METH(Loop__accept_connection), METH_FASTCALL, NULL},
    {"_fd_transport", PL_METH(Loop__fd_transport), METH_O, NULL},
    {"_open_streams", PL_METH(Loop__open_streams), METH_NOARGS, NULL},
    {"_set_fd_transport", PL_METH(Loop__set_fd_transport), METH_FASTCALL, NULL},
    {"_pipe_read", PL_METH(Loop__pipe_read), METH_O, NULL},
    {"_new_write_pipe_transport", PL_METH(Loop__new_write_pipe_transport), METH_FASTCALL, NULL},
    {"_new_read_pipe_transport", PL_METH(Loop__new_read_pipe_transport), METH_FASTCALL, NULL},
    {"_close", PL_METH(Loop__close), METH_NOARGS, NULL},
    /* pyloop.Loop overrides close(); this one serves the bare C type. */
    {"close", PL_METH(Loop__close), METH_NOARGS, "close($self)\n--\n\nClose the loop."},
    {NULL}
};

static PyMemberDef Loop_members[] = {
    {"slow_callback_duration", T_DOUBLE, offsetof(PLLoop, slow_callback_duration), 0, NULL},
    {NULL}
};

static PyGetSetDef Loop_getset[] = {
    {"_thread_id", (getter)Loop_get_thread_id, NULL, NULL, NULL},
    {"_closed", (getter)Loop_get_closed, NULL, NULL, NULL},
    {"_stopping", (getter)Loop_get_stopping, NULL, NULL, NULL},
    {"_debug", (getter)Loop_get_debug_attr, NULL, NULL, NULL},
    {"_current_handle", (getter)Loop_get_current_handle, NULL, NULL, NULL},
    {"_ready_count", (getter)Loop_get_ready_count, NULL, NULL, NULL},
    {"_timer_count", (getter)Loop_get_timer_count, NULL, NULL, NULL},
    {"_signal_wakeup_fd", (getter)Loop_get_signal_fd, NULL, NULL, NULL},
    {"_task_factory", (getter)Loop_get_task_factory, NULL, NULL, NULL},
    {"_has_signal_handlers", (getter)Loop_get_has_signal_handlers,
     (setter)Loop_set_has_signal_handlers, NULL, NULL},
    {NULL}
};

PyTypeObject PLLoop_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyloop._core.Loop",
    .tp_basicsize = sizeof(PLLoop),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .tp_doc = "The C core of pyloop's event loop (use pyloop.Loop).",
    .tp_new = Loop_new,
    .tp_dealloc = (destructor)Loop_dealloc,
    .tp_finalize = (destructor)Loop_finalize,
    .tp_traverse = (traverseproc)Loop_traverse,
    .tp_clear = (inquiry)Loop_clear,
    .tp_methods = Loop_methods,
    .tp_members = Loop_members,
    .tp_getset = Loop_getset,
    .tp_weaklistoffset = offsetof(PLLoop, weakreflist),
};

int
pl_loop_init_type(PyObject *module)
{
    if (PyType_Ready(&PLLoop_Type) < 0)
        return -1;
    static int atfork_done;
    if (!atfork_done) {
        if (pthread_atfork(NULL, NULL, pl__loop_atfork_child_cb) != 0) {
            PyErr_SetString(PyExc_RuntimeError, "pthread_atfork failed");
            return -1;
        }
        atfork_done = 1;
    }
    return PyModule_AddObjectRef(module, "Loop", (PyObject *)&PLLoop_Type);
}

/* The bytes for data_received and datagram_received. Protocols often drop
 * it before returning (an echo writes it out at once, a parser copies it
 * into its buffer): a
 * bytes object nobody else references is then refilled for the next read
 * of the same size instead of being freed and allocated again. Nobody can
 * tell: with a reference count of one it is unreachable from Python. */
PyObject *
pl_loop_bytes_take(PLLoop *loop, const char *base, Py_ssize_t n)
{
    PyObject *b = loop->spare_bytes;
    if (b != NULL && PyBytes_GET_SIZE(b) == n) {
        loop->spare_bytes = NULL;
        memcpy(PyBytes_AS_STRING(b), base, (size_t)n);
        pl_bytes_reset_hash(b);
        return b;
    }
    return PyBytes_FromStringAndSize(base, n);
}

/* Steals `b`. Sizes 0 and 1 are shared singletons, never refilled. */
void
pl_loop_bytes_give_back(PLLoop *loop, PyObject *b)
{
    if (Py_REFCNT(b) == 1 && PyBytes_CheckExact(b) && PyBytes_GET_SIZE(b) > 1)
        Py_XSETREF(loop->spare_bytes, b);
    else
        Py_DECREF(b);
}

char *
pl_loop_read_buf(PLLoop *loop)
{
    if (loop->read_buf == NULL)
        loop->read_buf = PyMem_Malloc(PL_LOOP_READ_BUF_SIZE);
    return loop->read_buf;
}
