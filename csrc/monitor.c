/* pyloop.monitor's C half: utilization, the delay histogram, slow callbacks
 * and per-task figures, recorded at the loop's measuring points (see
 * monitor.h for the thread-safety argument), read by pyloop/monitor.py.
 *
 * Clock readings are the cost that matters: a clock_gettime costs about as
 * much as a short callback (25-30 ns of vDSO code on the machines measured,
 * docs/performance.md), so callbacks are timed by batch, not one by one:
 *
 * - Batch mode (the default). The loop reads the clock at most once per
 *   batch of callbacks (the ready ones of an iteration, the timers due), at
 *   its end; that reading is also the start of the next batch unless a
 *   libuv pass ran in between (`stale`). A batch that ended within the tick
 *   of the latest reading has its end read only when something needs it
 *   (`end_pending`): before the next libuv pass, or at the next reading; so
 *   a loop that runs callbacks without I/O reads the clock about once a
 *   tick. Every callback of a batch starts, as far as the figures go, at
 *   the latest reading. A callback that ends in a later tick
 *   than the reading's reads the clock (it may have run long), which times
 *   it from the latest reading and gives the callbacks after it in the batch
 *   a fresh start. The tick is the kernel's coarse clock read on the loop
 *   thread (CLOCK_MONOTONIC_COARSE: the time of the kernel's last timer
 *   tick, 1/HZ apart: 4 ms on the machine measured, 1-10 ms by kernel
 *   configuration; on x86-64 its words are read in place from the vDSO's
 *   data page once found there, pl_monitor_vvar_find), so monitoring starts
 *   no thread; a build may take the
 *   CPU's cycle counter instead, or a ticker thread of 5 ms ticks where
 *   neither exists (monitor.h). So a callback's figures are exact when it
 *   ran alone in its batch and within one tick of the truth otherwise: its
 *   duration may include quick callbacks that ran just before it in the
 *   same batch, its start may be up to a tick early.
 *   A handle queued during a batch counts from the batch's end (the
 *   earliest its queueing is known to be over): it is stamped with a
 *   stand-in for that end, resolved when it runs (monitor.h). Per callback
 *   that is a store when it is queued and, at its end, the stamp compared
 *   with the run's (a count) and the tick's words compared with the
 *   reading's: no clock read, no call, nothing at its start.
 * - Precise mode (per-task figures on, or a slow threshold under
 *   PL_MONITOR_BATCH_MIN): every callback is timed, one reading per callback
 *   (a callback run right after another one in the same batch starts where
 *   that one ended), and a handle queued while a callback runs is stamped
 *   with that callback's end.
 * - Protocol code that a transport's libuv callback runs (data_received and
 *   the like, inside libuv's pass) is timed at the callback's end
 *   (pl_monitor_io_end, from uvhandle.h's pl_uvh_exit) as a batch's callback
 *   is, from the latest reading (the poll's wake-up, or the end of the one
 *   before it in the pass); in precise mode each reads the clock. It has no
 *   delay (nothing queued it) and is not counted in `callbacks`.
 *
 * With the coarse clock as the tick, a clock reading is its own tick: the
 * coarse clock is the monotonic clock's value at the kernel's last tick, so
 * it passes a reading only once a tick came after it. A new reading then
 * needs no coarse read; only callback ends read it (monitor_hooks.h). */
#include "monitor.h"
#include "loop.h"
#include "module.h"
#include "monitor_hooks.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <math.h>
#include <pthread.h>
#include <time.h>
#include <structmember.h>

/* The Python function that builds (and logs) a slow-callback record:
 * (loop, handle, task or None, seconds, started) -> record. */
static PyObject *pl_monitor_slow_hook;
static PyObject *pl_monitor_str_done;
static PyObject *pl_monitor_str_self;

double
pl_monitor_now(void)
{
    return pl_loop_now();
}

/* ---- the tick ------------------------------------------------------------------- */

/* Batch mode's sense of time passing (monitor.c's top, monitor.h). From the
 * coarse clock or a cycle counter there is nothing to run: the loop thread
 * reads it itself, and a fork() child reads it as its parent did. Without
 * either, a thread ticks. */
#ifdef PL_MONITOR_THREADLESS_TICK

#if defined(PL_MONITOR_COARSE_TICK)
int (*pl_monitor_coarse_gettime)(clockid_t, struct timespec *) = clock_gettime;

/* The vDSO's clock_gettime itself, called directly: glibc's wrapper in
 * front of it (its clock-id checks and the indirect call it makes anyway)
 * is about half of a coarse read, which the loop makes after every callback
 * (3.9 ns through glibc, 2.1 ns direct, on the machine of
 * docs/performance.md). vdso(7) names the symbol per architecture; where it
 * is missing (no vDSO, as under valgrind) glibc's stays. */
static void
pl_monitor_tick_init(void)
{
#if defined(__x86_64__)
    const char *name = "__vdso_clock_gettime";
#elif defined(__aarch64__)
    const char *name = "__kernel_clock_gettime";
#else
    const char *name = NULL;
#endif
    void *vdso = name != NULL ? dlopen("linux-vdso.so.1", RTLD_NOW | RTLD_NOLOAD) : NULL;
    if (vdso == NULL)
        return;
    void *f = dlsym(vdso, name);
    struct timespec ts;
    if (f != NULL && ((int (*)(clockid_t, struct timespec *))f)(CLOCK_MONOTONIC_COARSE, &ts) == 0)
        pl_monitor_coarse_gettime = (int (*)(clockid_t, struct timespec *))f;
    /* the vDSO stays mapped for the process's life: no dlclose needed, and
     * the handle only counts a reference */
    dlclose(vdso);
}
#define PL_MONITOR_TICK_SOURCE "coarse_clock"

#if defined(__x86_64__) && defined(__linux__)
/* The coarse clock's own words in the vDSO's data page, found once; NULL:
 * the loop calls the vDSO (monitor.h). Why: the call after every callback,
 * not the vDSO's few loads, was most of what monitoring cost the call_soon
 * row (docs/performance.md, sixth pass). */
const volatile uint64_t *pl_monitor_vvar_coarse;
static int pl_monitor_vvar_looked;

/* The first page of the [vvar] mapping, or 0. */
static uintptr_t
pl_monitor_vvar_page(void)
{
    FILE *f = fopen("/proc/self/maps", "re");
    if (f == NULL)
        return 0;
    char line[256];
    uintptr_t lo = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        /* "[vvar]" itself, not "[vvar_vclock]" (6.13+: the clock pages) */
        if (strstr(line, " [vvar]\n") != NULL) {
            unsigned long a;
            if (sscanf(line, "%lx-", &a) == 1)
                lo = (uintptr_t)a;
            break;
        }
    }
    fclose(f);
    return lo;
}

/* Finds the coarse clock's (seconds, nanoseconds) in the page the vDSO
 * reads it from. The layout is the kernel's private business, so nothing
 * is assumed: the page is copied through a pipe (a page that cannot be read
 * fails the write with EFAULT instead of killing the process), searched for
 * the one pair equal to what the vDSO returned just before and after the
 * copy, and the pair found must then follow the vDSO's answers. Anything
 * else (no [vvar], a time namespace's page, two candidates, another CPU
 * architecture) leaves the vDSO call. pl_monitor_vvar_check keeps checking
 * it against the real clock for the process's life. */
static void
pl_monitor_vvar_find(void)
{
    if (pl_monitor_vvar_looked)
        return;
    pl_monitor_vvar_looked = 1;
    const char *env = getenv("PYLOOP_MONITOR_VVAR");
    if (env != NULL && strcmp(env, "0") == 0)
        return;
    uintptr_t page = pl_monitor_vvar_page();
    if (page == 0)
        return;
    enum { PAGE = 4096 };
    uint64_t *copy = PyMem_Malloc(PAGE);
    int fds[2] = {-1, -1};
    if (copy == NULL || pipe2(fds, O_CLOEXEC) != 0)
        goto done;
    for (int attempt = 0; attempt < 3; attempt++) {
        struct timespec before, after;
        pl_monitor_coarse_gettime(CLOCK_MONOTONIC_COARSE, &before);
        if (write(fds[1], (const void *)page, PAGE) != PAGE || read(fds[0], copy, PAGE) != PAGE)
            goto done;
        pl_monitor_coarse_gettime(CLOCK_MONOTONIC_COARSE, &after);
        if (before.tv_sec != after.tv_sec || before.tv_nsec != after.tv_nsec)
            continue; /* a tick during the copy: again */
        size_t found = 0, hits = 0;
        for (size_t i = 0; i + 1 < PAGE / sizeof(uint64_t); i++) {
            if (copy[i] == (uint64_t)before.tv_sec && copy[i + 1] == (uint64_t)before.tv_nsec) {
                found = i;
                hits++;
            }
        }
        if (hits != 1)
            goto done;
        const volatile uint64_t *w = (const volatile uint64_t *)page + found;
        pl_monitor_coarse_gettime(CLOCK_MONOTONIC_COARSE, &after);
        uint64_t s = w[0], ns = w[1];
        struct timespec last;
        pl_monitor_coarse_gettime(CLOCK_MONOTONIC_COARSE, &last);
        /* read between two vDSO answers: equal to one of them */
        if ((s == (uint64_t)after.tv_sec && ns == (uint64_t)after.tv_nsec) ||
            (s == (uint64_t)last.tv_sec && ns == (uint64_t)last.tv_nsec))
            pl_monitor_vvar_coarse = w;
        goto done;
    }
done:
    if (fds[0] >= 0) {
        close(fds[0]);
        close(fds[1]);
    }
    PyMem_Free(copy);
}

/* After a wait of the poll (`t`: the clock just read, pl_monitor_clock's
 * seconds): the words found must still be the coarse clock, at most a few
 * ticks behind and never ahead. If they stopped moving (a kernel that
 * moved them, a process restored on another machine) the loop would never
 * see a tick, and no slow callback: the vDSO call takes over for good. */
void
pl_monitor_vvar_check(double t)
{
    const volatile uint64_t *w = pl_monitor_vvar_coarse;
    if (w == NULL)
        return;
    double coarse = (double)w[0] + (double)w[1] * 1e-9;
    if (!(coarse <= t + 1e-3 && coarse >= t - 1.0))
        pl_monitor_vvar_coarse = NULL;
}
#else
static void
pl_monitor_vvar_find(void)
{
}
#endif
#elif defined(__aarch64__)
unsigned int pl_monitor_tick_shift = 15; /* 1.4 ms at 24 MHz, a common rate */

/* The shift that makes a tick 1-2 ms at the counter's rate, which the
 * architecture publishes (CNTFRQ_EL0): no calibration. */
static void
pl_monitor_tick_init(void)
{
    uint64_t freq;
    __asm__ __volatile__("mrs %0, cntfrq_el0" : "=r"(freq));
    if (freq < 1000) /* firmware left it unset: keep the guess */
        return;
    unsigned int shift = 0;
    while (shift < 40 && (UINT64_C(1) << (shift + 1)) <= freq / 500)
        shift++;
    pl_monitor_tick_shift = shift;
}
#define PL_MONITOR_TICK_SOURCE "cntvct_el0"
#else
static void
pl_monitor_tick_init(void)
{
}
#define PL_MONITOR_TICK_SOURCE "rdtsc"
#endif

static int
pl_monitor_ticker_retain(void)
{
#if defined(PL_MONITOR_COARSE_TICK)
    /* the first monitor looks for the in-place read, not the import */
    pl_monitor_vvar_find();
#endif
    return 0;
}

static void
pl_monitor_ticker_release(void)
{
}

#else /* !PL_MONITOR_THREADLESS_TICK: the ticker thread */

#define PL_MONITOR_TICK_SOURCE "thread"

static void
pl_monitor_tick_init(void)
{
}

/* One thread for every monitor of the process, running while one exists. It
 * takes no GIL, so a callback that blocks while holding the GIL is still
 * seen to run across ticks. */
unsigned long pl_monitor_tick;
static int pl_monitor_live;    /* monitors alive (atomic) */
static int pl_monitor_ticking; /* the thread runs (atomic) */
static int pl_monitor_atfork_done;

static void *
pl__monitor_ticker_main(void *arg)
{
    (void)arg;
    const struct timespec period = {0, PL_MONITOR_TICK_NS};
    for (;;) {
        while (__atomic_load_n(&pl_monitor_live, __ATOMIC_ACQUIRE) > 0) {
            nanosleep(&period, NULL);
            __atomic_add_fetch(&pl_monitor_tick, 1, __ATOMIC_RELAXED);
        }
        __atomic_store_n(&pl_monitor_ticking, 0, __ATOMIC_RELEASE);
        /* A monitor made while this thread was leaving: stay, unless another
         * thread has been started for it meanwhile. */
        int expected = 0;
        if (__atomic_load_n(&pl_monitor_live, __ATOMIC_ACQUIRE) == 0 ||
            !__atomic_compare_exchange_n(&pl_monitor_ticking, &expected, 1, 0,
                                         __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return NULL;
    }
}

/* The child of fork() has no ticker thread: the next monitor starts one. */
static void
pl__monitor_atfork_child(void)
{
    pl_monitor_ticking = 0;
}

/* A new monitor: the thread runs from now. 0, or -1 when no thread could be
 * started (the monitor then times every callback: monitor->precise). */
static int
pl_monitor_ticker_retain(void)
{
    __atomic_add_fetch(&pl_monitor_live, 1, __ATOMIC_ACQ_REL); /* released in dealloc */
    if (!pl_monitor_atfork_done) {
        if (pthread_atfork(NULL, NULL, pl__monitor_atfork_child) != 0)
            return -1;
        pl_monitor_atfork_done = 1;
    }
    int expected = 0;
    if (!__atomic_compare_exchange_n(&pl_monitor_ticking, &expected, 1, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE))
        return 0;
    pthread_t th;
    pthread_attr_t attr;
    int err = pthread_attr_init(&attr);
    if (err == 0) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        pthread_attr_setstacksize(&attr, 64 * 1024);
        err = pthread_create(&th, &attr, pl__monitor_ticker_main, NULL);
        pthread_attr_destroy(&attr);
    }
    if (err != 0) {
        __atomic_store_n(&pl_monitor_ticking, 0, __ATOMIC_RELEASE);
        return -1;
    }
    return 0;
}

/* A monitor gone: with none left the thread leaves. */
static void
pl_monitor_ticker_release(void)
{
    __atomic_sub_fetch(&pl_monitor_live, 1, __ATOMIC_ACQ_REL);
}

#endif /* PL_MONITOR_THREADLESS_TICK */

static int pl_monitor_ticker_failed;

/* Batch mode or precise mode for `m`'s current settings. */
static void
pl_monitor_set_mode(PLMonitor *m)
{
    char precise = m->per_task || m->slow_threshold < PL_MONITOR_BATCH_MIN ||
                   pl_monitor_ticker_failed;
    if (precise != m->precise) {
        /* Either way the next callback starts from a new reading. */
        pl_monitor_run_flush(m);
        m->chain = 0;
        m->stale = 1;
        m->end_pending = 0; /* batch mode's (what it queued keeps its stand-in) */
        /* A callback running under precise mode had its delay recorded at
         * its start; batch mode counts it at its end, with no delay. */
        if (m->cur_active == 2 && !precise)
            m->run_key = PL_MONITOR_RUN_NODELAY;
        m->cur_active = 0;
    }
    m->precise = precise;
}

/* ---- batch mode ------------------------------------------------------------------ */

void
pl_monitor_run_flush(PLMonitor *m)
{
    m->run_key = PL_MONITOR_RUN_NONE; /* the next callback starts a run */
    if (m->run_n == 0)
        return;
    m->callbacks += m->run_n;
    if (m->run_record) {
        double d = m->run_start - m->run_when;
        if (!(d > 0.0)) /* NaN deadlines too */
            d = 0.0;
        pl_monitor_hist_record_n(m, d, m->run_n);
    }
    m->run_n = 0;
}

void
pl_monitor_run_new(PLMonitor *m, PLHandle *h)
{
    if (m->run_key == PL_MONITOR_RUN_NODELAY) {
        m->callbacks++;
        m->run_key = PL_MONITOR_RUN_NONE;
        return;
    }
    pl_monitor_run_flush(m);
    m->run_key = pl_monitor_bits(h->when);
    m->run_n = 1;
    m->run_start = m->stamp;
    /* A plain handle queued while monitoring was off has no stamp (0):
     * counted, no delay. */
    m->run_record = h->is_timer || h->when != 0.0;
    if (m->run_record)
        m->run_when = pl_monitor_queued_at(m, h);
}

/* A callback timed from the latest reading (batch mode's, or a protocol
 * callback's): read the clock, make that the new reading, and return how
 * long since the old one (its start in *start). `alone`: nothing else ran
 * since the reading, so that is the callback's own duration; otherwise it
 * is an upper bound, within a tick or so (monitor.c's top), which may be
 * mostly the quick callbacks before it: the longest callback takes it only
 * when it is slow anyway. */
static double
pl_monitor_time_from_stamp(PLMonitor *m, int alone, double *start)
{
    *start = m->stamp;
    double end = pl_monitor_clock();
    double dur = end - *start;
    if (dur > m->busy_longest && (alone || dur >= m->slow_threshold))
        m->busy_longest = dur;
    pl_monitor_restamp(m, end);
    return dur;
}

void
pl_monitor_tick_end(PLLoop *loop, PLHandle *h)
{
    PLMonitor *m = loop->monitor;
    double start;
    double dur = pl_monitor_time_from_stamp(
        m, m->callbacks + m->run_n - m->callbacks_at_stamp == 1, &start);
    if (dur >= m->slow_threshold) {
        pl_monitor_handle_end_cold(loop, h, dur, start);
        /* its Python code took time of its own */
        if (loop->monitor != NULL)
            pl_monitor_restamp(loop->monitor, pl_monitor_clock());
    }
}

/* ---- TaskStats -------------------------------------------------------------- */

typedef struct {
    PyObject_HEAD
    unsigned long long steps;
    unsigned long long tasks; /* finished tasks summed here (0 for a live one) */
    double total;
    double longest;
    double waited;
    PyObject *name; /* the task's name when first seen (live) */
    PyObject *coro; /* coroutine qualified name */
    PyObject *ref;  /* weak reference to the live task; NULL when summed */
} PLTaskStats;

static void
TaskStats_dealloc(PLTaskStats *s)
{
    Py_XDECREF(s->name);
    Py_XDECREF(s->coro);
    Py_XDECREF(s->ref);
    Py_TYPE(s)->tp_free((PyObject *)s);
}

static PyObject *
TaskStats_get_task(PLTaskStats *s, void *Py_UNUSED(c))
{
    if (s->ref == NULL)
        Py_RETURN_NONE;
    return pl_weakref_get(s->ref);
}

static PyMemberDef TaskStats_members[] = {
    {"steps", T_ULONGLONG, offsetof(PLTaskStats, steps), READONLY, NULL},
    {"tasks", T_ULONGLONG, offsetof(PLTaskStats, tasks), READONLY, NULL},
    {"total", T_DOUBLE, offsetof(PLTaskStats, total), READONLY, NULL},
    {"longest", T_DOUBLE, offsetof(PLTaskStats, longest), READONLY, NULL},
    {"waited", T_DOUBLE, offsetof(PLTaskStats, waited), READONLY, NULL},
    {"name", T_OBJECT, offsetof(PLTaskStats, name), READONLY, NULL},
    {"coro", T_OBJECT, offsetof(PLTaskStats, coro), READONLY, NULL},
    {NULL}
};

static PyGetSetDef TaskStats_getset[] = {
    {"task", (getter)TaskStats_get_task, NULL, NULL, NULL},
    {NULL}
};

static PyTypeObject PLTaskStats_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyloop._core.TaskStats",
    .tp_basicsize = sizeof(PLTaskStats),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Per-task figures a monitored loop keeps (pyloop.monitor.tasks()).",
    .tp_dealloc = (destructor)TaskStats_dealloc,
    .tp_members = TaskStats_members,
    .tp_getset = TaskStats_getset,
};

static PLTaskStats *
pl_monitor_taskstats_new(void)
{
    /* No tp_new: Python cannot make one, only the monitor does. */
    PLTaskStats *s = PyObject_New(PLTaskStats, &PLTaskStats_Type);
    if (s == NULL)
        return NULL;
    s->steps = s->tasks = 0;
    s->total = s->longest = s->waited = 0.0;
    s->name = s->coro = s->ref = NULL;
    return s;
}

/* ---- histogram ------------------------------------------------------------- */

/* The microsecond values of bucket `i`: [lower, upper). */
static void
pl_monitor_hist_range(size_t i, uint64_t *lower, uint64_t *upper)
{
    if (i < PL_MONITOR_HIST_EXACT) {
        *lower = i;
        *upper = i + 1;
        return;
    }
    size_t k = i - PL_MONITOR_HIST_EXACT;
    int shift = (int)(k / PL_MONITOR_HIST_SUB) + 1;
    uint64_t mant = PL_MONITOR_HIST_SUB + k % PL_MONITOR_HIST_SUB;
    *lower = mant << shift;
    *upper = (mant + 1) << shift;
}

static uint64_t
pl_monitor_hist_upper(size_t i)
{
    uint64_t lower, upper;
    pl_monitor_hist_range(i, &lower, &upper);
    return upper;
}

/* The mean and the standard deviation from the buckets, each counted at its
 * middle (kept within the exact min and max, so a histogram of one value
 * gives that value): the precision of the buckets, and no sums to keep up
 * per callback. */
static void
pl_monitor_hist_moments(PLMonitor *m, double *mean, double *sd)
{
    double n = (double)m->hist_count, sum = 0.0, sumsq = 0.0;
    for (size_t i = 0; i < PL_MONITOR_HIST_BUCKETS; i++) {
        if (m->hist[i] == 0)
            continue;
        uint64_t lower, upper;
        pl_monitor_hist_range(i, &lower, &upper);
        double v = (double)(lower + upper) * 0.5e-6;
        if (v < m->hist_min)
            v = m->hist_min;
        if (v > m->hist_max)
            v = m->hist_max;
        sum += v * (double)m->hist[i];
        sumsq += v * v * (double)m->hist[i];
    }
    *mean = sum / n;
    double var = sumsq / n - *mean * *mean;
    *sd = var > 0.0 ? sqrt(var) : 0.0;
}

static void
pl_monitor_hist_reset(PLMonitor *m)
{
    memset(m->hist, 0, sizeof(m->hist));
    m->hist_count = 0;
    m->hist_min = INFINITY; /* the record path compares without a count test */
    m->hist_max = 0.0;
    /* the pending run's delays go; its callbacks still count */
    m->callbacks += m->run_n;
    m->run_n = 0;
    /* Batch mode counts a callback at its end: one running now (any Python
     * code on the loop thread during a batch is) began before the reset,
     * and its delay goes too. */
    m->run_key = m->batch_active && !m->precise ? PL_MONITOR_RUN_NODELAY : PL_MONITOR_RUN_NONE;
}

/* ---- measuring points -------------------------------------------------------- */

/* Close the span in progress (idle or active) at `t`. */
static inline void
pl_monitor_span_end(PLMonitor *m, double t)
{
    if (m->in_idle)
        m->idle += t - m->mark;
    else if (m->in_run)
        m->active += t - m->mark;
    m->mark = t;
}

void
pl_monitor_run_begin(PLLoop *loop)
{
    PLMonitor *m = loop->monitor;
    double t = pl_loop_now();
    m->mark = m->push_stamp = t;
    pl_monitor_restamp(m, t);
    m->in_run = 1;
    m->in_idle = 0;
    m->chain = 0;
}

void
pl_monitor_run_end(PLLoop *loop)
{
    PLMonitor *m = loop->monitor;
    double t = pl_monitor_clock();
    pl_monitor_span_end(m, t);
    /* what the last batch queued counts from here, not from the next run */
    if (m->end_pending)
        pl_monitor_end_settle(m, t);
    m->in_run = 0;
    m->in_idle = 0;
    m->batch_active = 0; /* a batch left by an exception */
}

/* Called just before the GIL is released for a wait that may block. */
void
pl_monitor_idle_begin(PLLoop *loop)
{
    PLMonitor *m = loop->monitor;
    pl_monitor_span_end(m, pl_monitor_clock());
    m->in_idle = 1;
}

/* Called just after the GIL is taken back. */
void
pl_monitor_idle_end(PLLoop *loop)
{
    PLMonitor *m = loop->monitor;
    double t = pl_monitor_clock();
    pl_monitor_span_end(m, t);
#if defined(PL_MONITOR_VVAR_TICK)
    pl_monitor_vvar_check(t);
#endif
    /* handles queued by the I/O callbacks of this pass count from here; the
     * next batch reads the clock again (they ran in between) */
    pl_monitor_restamp(m, t);
    m->push_stamp = t;
    m->stale = 1;
    m->in_idle = 0;
    m->chain = 0;
}

/* The task a handle's callback steps: the stdlib C Task schedules its step
 * as a TaskStepMethWrapper and its wake-up as a builtin method bound to the
 * task; both expose the task as __self__. New reference or NULL. */
/* "TaskStepMethWrapper" (3.11-3.13) or "_asyncio.TaskStepMethWrapper" (3.14). */
static PyTypeObject *pl_monitor_step_type; /* found by name once */

static int
pl_monitor_is_step_wrapper(PyTypeObject *t)
{
    if (pl_monitor_step_type != NULL)
        return t == pl_monitor_step_type;
    const char *dot = strrchr(t->tp_name, '.');
    if (strcmp(dot != NULL ? dot + 1 : t->tp_name, "TaskStepMethWrapper") != 0)
        return 0;
    pl_monitor_step_type = (PyTypeObject *)Py_NewRef((PyObject *)t);
    return 1;
}

static PyObject *
pl_monitor_task_of(PyObject *cb)
{
    PyObject *self = NULL;
    if (cb == NULL)
        return NULL;
    if (PyCFunction_Check(cb)) {
        self = PyCFunction_GET_SELF(cb);
        Py_XINCREF(self);
    }
    else if (pl_monitor_is_step_wrapper(Py_TYPE(cb))) {
        self = PyObject_GetAttr(cb, pl_monitor_str_self);
        if (self == NULL)
            PyErr_Clear();
    }
    else if (PyMethod_Check(cb)) {
        /* A Python Task subclass's bound methods. */
        self = Py_NewRef(PyMethod_GET_SELF(cb));
    }
    if (self != NULL && !PyObject_TypeCheck(self, (PyTypeObject *)pl_state.task_type))
        Py_CLEAR(self);
    return self;
}

static PyObject *
pl_monitor_coro_name(PyObject *task)
{
    PyObject *coro = PyObject_CallMethod(task, "get_coro", NULL);
    PyObject *name = NULL;
    if (coro == NULL)
        goto cleanup;
    name = PyObject_GetAttrString(coro, "__qualname__");
    if (name == NULL || !PyUnicode_Check(name)) {
        PyErr_Clear();
        Py_XDECREF(name);
        name = PyUnicode_FromString(Py_TYPE(coro)->tp_name);
    }
cleanup:
    Py_XDECREF(coro);
    if (name == NULL)
        PyErr_Clear();
    return name;
}

/* Whether the weak reference `ref` points at `obj` (no reference taken:
 * only the address is compared). */
static inline int
pl_monitor_weakref_is(PyObject *ref, PyObject *obj)
{
    return ((PyWeakReference *)ref)->wr_object == obj;
}

/* the stdlib C Task's done(), an unbound method descriptor (NULL: not found) */
static PyObject *pl_monitor_task_done_meth;

/* task.done(): 1, 0, or -1 with an exception set. For the stdlib C Task the
 * method's C function is called directly (no attribute lookup). */
static int
pl_monitor_task_is_done(PyObject *task)
{
    PyObject *r;
    if (pl_monitor_task_done_meth != NULL && Py_TYPE(task) == (PyTypeObject *)pl_state.task_type)
        r = PyObject_Vectorcall(pl_monitor_task_done_meth, &task, 1, NULL);
    else
        r = PyObject_CallMethodNoArgs(task, pl_monitor_str_done);
    if (r == NULL)
        return -1;
    int done = PyObject_IsTrue(r);
    Py_DECREF(r);
    return done;
}

static inline size_t
pl_monitor_task_slot(PyObject *task)
{
    return ((uintptr_t)task >> 4) & (PL_MONITOR_TASK_CACHE - 1);
}

/* The figures of a live task, made when it is first seen. New reference, or
 * NULL with an exception set. */
static PLTaskStats *
pl_monitor_task_stats(PLMonitor *m, PyObject *task)
{
    size_t slot = pl_monitor_task_slot(task);
    PLTaskStats *st = (PLTaskStats *)m->task_cache_stats[slot];
    if (m->task_cache_key[slot] == task && pl_monitor_weakref_is(st->ref, task))
        return (PLTaskStats *)Py_NewRef((PyObject *)st);
    PyObject *key = PyLong_FromVoidPtr(task);
    if (key == NULL)
        return NULL;
    st = (PLTaskStats *)PyDict_GetItemWithError(m->tasks, key);
    /* Same address, different task: the one recorded was collected. */
    if (st != NULL && !pl_monitor_weakref_is(st->ref, task))
        st = NULL;
    if (st != NULL) {
        Py_INCREF(st);
    }
    else if (!PyErr_Occurred()) {
        st = pl_monitor_taskstats_new();
        if (st != NULL) {
            st->ref = PyWeakref_NewRef(task, NULL);
            st->name = PyObject_CallMethod(task, "get_name", NULL);
            st->coro = pl_monitor_coro_name(task);
            if (st->ref == NULL || st->name == NULL || st->coro == NULL ||
                PyDict_SetItem(m->tasks, key, (PyObject *)st) < 0)
                Py_CLEAR(st);
        }
    }
    Py_DECREF(key);
    if (st != NULL) {
        m->task_cache_key[slot] = task;
        m->task_cache_stats[slot] = (PyObject *)st;
    }
    return st;
}

/* Add one step to the task's figures; a finished task's go to the summary of
 * its coroutine name. -1 with an exception set on failure. */
static int
pl_monitor_task_step(PLMonitor *m, PyObject *task, double dur, double delay)
{
    int rc = -1;
    PLTaskStats *st = pl_monitor_task_stats(m, task), *sum = NULL;
    PyObject *key = NULL;
    if (st == NULL)
        goto cleanup;
    st->steps++;
    st->total += dur;
    if (dur > st->longest)
        st->longest = dur;
    if (delay > 0.0)
        st->waited += delay;

    int done = pl_monitor_task_is_done(task);
    if (done < 0)
        goto cleanup;
    if (done) {
        sum = (PLTaskStats *)PyDict_GetItemWithError(m->finished, st->coro);
        if (sum != NULL) {
            Py_INCREF(sum);
        }
        else {
            if (PyErr_Occurred())
                goto cleanup;
            sum = pl_monitor_taskstats_new();
            if (sum == NULL)
                goto cleanup;
            sum->coro = Py_NewRef(st->coro);
            sum->name = Py_NewRef(st->coro);
            if (PyDict_SetItem(m->finished, st->coro, (PyObject *)sum) < 0)
                goto cleanup;
        }
        sum->tasks++;
        sum->steps += st->steps;
        sum->total += st->total;
        sum->waited += st->waited;
        if (st->longest > sum->longest)
            sum->longest = st->longest;
        size_t slot = pl_monitor_task_slot(task);
        if (m->task_cache_key[slot] == task)
            m->task_cache_key[slot] = NULL;
        key = PyLong_FromVoidPtr(task);
        if (key == NULL || PyDict_DelItem(m->tasks, key) < 0)
            goto cleanup;
    }
    rc = 0;
cleanup:
    Py_XDECREF(key);
    Py_XDECREF(st);
    Py_XDECREF(sum);
    return rc;
}

static int
pl_monitor_record_slow(PLLoop *loop, PLMonitor *m, PyObject *what, PyObject *task, double dur,
                       double start)
{
    m->slow_total++;
    if (pl_monitor_slow_hook == NULL)
        return 0;
    PyObject *rec = PyObject_CallFunction(pl_monitor_slow_hook, "OOOdd", (PyObject *)loop, what,
                                          task ? task : Py_None, dur, start);
    if (rec == NULL)
        return -1;
    Py_XSETREF(m->slow_ring[m->slow_next], rec);
    m->slow_next = (m->slow_next + 1) % PL_MONITOR_SLOW_RING;
    return 0;
}

/* The rare part of the end of a callback (monitor_hooks.h calls it for a
 * slow callback or with per-task figures on): Python code, which may even
 * turn monitoring off. */
void
pl_monitor_handle_end_cold(PLLoop *loop, PLHandle *h, double dur, double start)
{
    PLMonitor *m = loop->monitor;
    /* the delay the histogram got (0 for a handle without a stamp) */
    double delay = h->is_timer || h->when != 0.0 ? start - pl_monitor_queued_at(m, h) : 0.0;
    PyObject *exc = pl_err_fetch();
    PyObject *task = pl_monitor_task_of(h->callback);
    Py_INCREF(m);
    if (dur >= m->slow_threshold &&
        pl_monitor_record_slow(loop, m, (PyObject *)h, task, dur, start) < 0)
        PyErr_WriteUnraisable((PyObject *)h);
    if (m->per_task && task != NULL && pl_monitor_task_step(m, task, dur, delay) < 0)
        PyErr_WriteUnraisable((PyObject *)h);
    m->chain = 0; /* that Python code took time of its own */
    Py_DECREF(m);
    Py_XDECREF(task);
    if (exc != NULL)
        pl_err_restore(exc);
}

/* The rare part of the end of a transport's libuv callback (monitor_hooks.h,
 * pl_monitor_io_end): a tick went by while it ran, or precise mode. It is
 * timed from the latest reading, as a batch's callbacks are: the wake-up of
 * the poll, or the end of what ran before it in the same libuv pass. */
void
pl_monitor_io_end_cold(PLLoop *loop, PyObject *transport)
{
    PLMonitor *m = loop->monitor;
    double start;
    /* what ran before it in the pass counts too: never known to be alone */
    double dur = pl_monitor_time_from_stamp(m, 0, &start);
    m->chain = 0;
    if (dur < m->slow_threshold)
        return;
    PyObject *exc = pl_err_fetch();
    Py_INCREF(m);
    if (pl_monitor_record_slow(loop, m, transport, NULL, dur, start) < 0)
        PyErr_WriteUnraisable(transport);
    Py_DECREF(m);
    if (exc != NULL)
        pl_err_restore(exc);
    /* the record's Python code took time of its own */
    if (loop->monitor != NULL)
        pl_monitor_restamp(loop->monitor, pl_monitor_clock());
}

/* ---- Monitor type ------------------------------------------------------------ */

static int
Monitor_traverse(PLMonitor *m, visitproc visit, void *arg)
{
    for (size_t i = 0; i < PL_MONITOR_SLOW_RING; i++)
        Py_VISIT(m->slow_ring[i]);
    Py_VISIT(m->tasks);
    Py_VISIT(m->finished);
    return 0;
}

static int
Monitor_clear(PLMonitor *m)
{
    memset(m->task_cache_key, 0, sizeof(m->task_cache_key));
    for (size_t i = 0; i < PL_MONITOR_SLOW_RING; i++)
        Py_CLEAR(m->slow_ring[i]);
    Py_CLEAR(m->tasks);
    Py_CLEAR(m->finished);
    return 0;
}

static void
Monitor_dealloc(PLMonitor *m)
{
    PyObject_GC_UnTrack(m);
    pl_monitor_ticker_release(); /* the ticker thread, if any, may stop */
    Monitor_clear(m);
    Py_TYPE(m)->tp_free((PyObject *)m);
}

/* (idle, active) seconds so far, the span in progress included. */
static PyObject *
Monitor_utilization(PLMonitor *m, PyObject *Py_UNUSED(ignored))
{
    double t = pl_loop_now();
    double idle = m->idle, active = m->active;
    if (m->in_run) {
        if (m->in_idle)
            idle += t - m->mark;
        else
            active += t - m->mark;
    }
    return Py_BuildValue("(dd)", idle, active);
}

/* (count, min, max, mean, stddev) in seconds. */
static PyObject *
Monitor_histogram(PLMonitor *m, PyObject *Py_UNUSED(ignored))
{
    double mean = 0.0, sd = 0.0;
    double lo = 0.0;
    pl_monitor_run_flush(m);
    if (m->hist_count > 0) {
        lo = m->hist_min;
        pl_monitor_hist_moments(m, &mean, &sd);
    }
    return Py_BuildValue("(Kdddd)", (unsigned long long)m->hist_count, lo, m->hist_max,
                         mean, sd);
}

/* The smallest recorded value at or below which `p` percent of the delays
 * lie, as the upper edge of its bucket, within [min, max]. */
static PyObject *
Monitor_percentile(PLMonitor *m, PyObject *arg)
{
    double p = PyFloat_AsDouble(arg);
    if (p == -1.0 && PyErr_Occurred())
        return NULL;
    if (!(p >= 0.0 && p <= 100.0)) {
        PyErr_SetString(PyExc_ValueError, "percentile must be between 0 and 100");
        return NULL;
    }
    pl_monitor_run_flush(m);
    if (m->hist_count == 0)
        return PyFloat_FromDouble(0.0);
    if (p == 0.0)
        return PyFloat_FromDouble(m->hist_min);
    uint64_t target = (uint64_t)ceil(p / 100.0 * (double)m->hist_count);
    if (target == 0)
        target = 1;
    uint64_t cum = 0;
    double v = m->hist_max;
    for (size_t i = 0; i < PL_MONITOR_HIST_BUCKETS; i++) {
        cum += m->hist[i];
        if (cum >= target) {
            v = (double)pl_monitor_hist_upper(i) * 1e-6;
            break;
        }
    }
    if (v > m->hist_max)
        v = m->hist_max;
    if (v < m->hist_min)
        v = m->hist_min;
    return PyFloat_FromDouble(v);
}

static PyObject *
Monitor_reset_histogram(PLMonitor *m, PyObject *Py_UNUSED(ignored))
{
    pl_monitor_hist_reset(m);
    Py_RETURN_NONE;
}

/* The slow-callback records, oldest first. */
static PyObject *
Monitor_slow_callbacks(PLMonitor *m, PyObject *Py_UNUSED(ignored))
{
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return NULL;
    for (size_t k = 0; k < PL_MONITOR_SLOW_RING; k++) {
        PyObject *rec = m->slow_ring[(m->slow_next + k) % PL_MONITOR_SLOW_RING];
        if (rec != NULL && PyList_Append(list, rec) < 0) {
            Py_DECREF(list);
            return NULL;
        }
    }
    return list;
}

/* ([TaskStats of live tasks], [TaskStats summed by coroutine]); entries of
 * tasks collected without finishing are dropped here. */
static PyObject *
Monitor_tasks(PLMonitor *m, PyObject *Py_UNUSED(ignored))
{
    PyObject *live = PyList_New(0), *dead = PyList_New(0), *res = NULL, *fin = NULL;
    PyObject *key, *value;
    Py_ssize_t pos = 0;
    if (live == NULL || dead == NULL)
        goto cleanup;
    while (PyDict_Next(m->tasks, &pos, &key, &value)) {
        PLTaskStats *st = (PLTaskStats *)value;
        PyObject *alive = pl_weakref_get(st->ref);
        if (alive == NULL)
            goto cleanup;
        Py_DECREF(alive);
        if (alive == Py_None) {
            if (PyList_Append(dead, key) < 0)
                goto cleanup;
        }
        else if (PyList_Append(live, value) < 0) {
            goto cleanup;
        }
    }
    if (PyList_GET_SIZE(dead) > 0)
        memset(m->task_cache_key, 0, sizeof(m->task_cache_key)); /* slots may name them */
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(dead); i++) {
        if (PyDict_DelItem(m->tasks, PyList_GET_ITEM(dead, i)) < 0)
            goto cleanup;
    }
    fin = PyDict_Values(m->finished);
    if (fin == NULL)
        goto cleanup;
    res = PyTuple_Pack(2, live, fin);
cleanup:
    Py_XDECREF(live);
    Py_XDECREF(dead);
    Py_XDECREF(fin);
    return res;
}

static PyObject *
Monitor_reset_tasks(PLMonitor *m, PyObject *Py_UNUSED(ignored))
{
    memset(m->task_cache_key, 0, sizeof(m->task_cache_key));
    PyDict_Clear(m->tasks);
    PyDict_Clear(m->finished);
    Py_RETURN_NONE;
}

static PyObject *
Monitor_counters(PLMonitor *m, PyObject *Py_UNUSED(ignored))
{
    pl_monitor_run_flush(m);
    return Py_BuildValue("{sKsKsKsKsd}", "callbacks", (unsigned long long)m->callbacks,
                         "slow_callbacks", (unsigned long long)m->slow_total, "bytes_read",
                         (unsigned long long)m->bytes_read, "bytes_written",
                         (unsigned long long)m->bytes_written, "longest_callback",
                         m->busy_longest);
}

/* (running a callback, since when): what the watchdog thread of
pyloop/monitor.py looks at to sample the stack of a slow callback while it
still runs. */
static PyObject *
Monitor_current(PLMonitor *m, PyObject *Py_UNUSED(ignored))
{
    /* In batch mode the callback's start is the latest reading, as its
     * record will say (monitor.c's top). */
    if (m->precise)
        return Py_BuildValue("(Od)", m->cur_active == 2 ? Py_True : Py_False, m->cur_start);
    /* Batch mode marks no callback's start or end: the loop runs one, or
     * its own bookkeeping between two, whenever it runs and is not waiting;
     * the latest reading is at most a tick old unless one runs long. */
    return Py_BuildValue("(Od)", m->in_run && !m->in_idle ? Py_True : Py_False, m->stamp);
}

static PyObject *
Monitor_get_threshold(PLMonitor *m, void *Py_UNUSED(c))
{
    return PyFloat_FromDouble(m->slow_threshold);
}

static int
Monitor_set_threshold(PLMonitor *m, PyObject *v, void *Py_UNUSED(c))
{
    double d = v ? PyFloat_AsDouble(v) : -1.0;
    if (d == -1.0 && PyErr_Occurred())
        return -1;
    if (!(d >= 0.0)) {
        PyErr_SetString(PyExc_ValueError, "slow_callback_duration must be >= 0");
        return -1;
    }
    m->slow_threshold = d;
    pl_monitor_set_mode(m);
    return 0;
}

static PyObject *
Monitor_get_per_task(PLMonitor *m, void *Py_UNUSED(c))
{
    return PyBool_FromLong(m->per_task);
}

static int
Monitor_set_per_task(PLMonitor *m, PyObject *v, void *Py_UNUSED(c))
{
    int b = v ? PyObject_IsTrue(v) : 0;
    if (b < 0)
        return -1;
    m->per_task = (char)b;
    pl_monitor_set_mode(m);
    return 0;
}

static PyObject *
Monitor_get_precise(PLMonitor *m, void *Py_UNUSED(c))
{
    return PyBool_FromLong(m->precise);
}

static PyMethodDef Monitor_methods[] = {
    {"utilization", PL_METH(Monitor_utilization), METH_NOARGS, NULL},
    {"histogram", PL_METH(Monitor_histogram), METH_NOARGS, NULL},
    {"percentile", PL_METH(Monitor_percentile), METH_O, NULL},
    {"reset_histogram", PL_METH(Monitor_reset_histogram), METH_NOARGS, NULL},
    {"slow_callbacks", PL_METH(Monitor_slow_callbacks), METH_NOARGS, NULL},
    {"tasks", PL_METH(Monitor_tasks), METH_NOARGS, NULL},
    {"reset_tasks", PL_METH(Monitor_reset_tasks), METH_NOARGS, NULL},
    {"counters", PL_METH(Monitor_counters), METH_NOARGS, NULL},
    {"current", PL_METH(Monitor_current), METH_NOARGS, NULL},
    {NULL}
};

static PyGetSetDef Monitor_getset[] = {
    {"slow_callback_duration", (getter)Monitor_get_threshold, (setter)Monitor_set_threshold,
     NULL, NULL},
    {"per_task", (getter)Monitor_get_per_task, (setter)Monitor_set_per_task, NULL, NULL},
    {"times_each_callback", (getter)Monitor_get_precise, NULL,
     "True when every callback is timed (per-task figures, or a threshold under 20 ms); "
     "False when callbacks are timed by batch.", NULL},
    {NULL}
};

PyTypeObject PLMonitor_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "pyloop._core.Monitor",
    .tp_basicsize = sizeof(PLMonitor),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The figures a monitored loop keeps (use pyloop.monitor).",
    .tp_dealloc = (destructor)Monitor_dealloc,
    .tp_traverse = (traverseproc)Monitor_traverse,
    .tp_clear = (inquiry)Monitor_clear,
    .tp_methods = Monitor_methods,
    .tp_getset = Monitor_getset,
};

/* ---- module functions ---------------------------------------------------------- */

static PLLoop *
pl_monitor_loop_arg(PyObject *arg)
{
    if (!PyObject_TypeCheck(arg, &PLLoop_Type)) {
        PyErr_Format(PyExc_TypeError, "a pyloop loop was expected, got %R", arg);
        return NULL;
    }
    return (PLLoop *)arg;
}

/* _monitor_enable(loop) -> Monitor: the loop's monitor, made if it has none. */
static PyObject *
pl_monitor_enable(PyObject *Py_UNUSED(mod), PyObject *arg)
{
    PLLoop *loop = pl_monitor_loop_arg(arg);
    if (loop == NULL)
        return NULL;
    if (loop->monitor != NULL)
        return Py_NewRef((PyObject *)loop->monitor);
    /* tp_alloc zeroes the histogram and the ring. */
    PLMonitor *m = (PLMonitor *)PLMonitor_Type.tp_alloc(&PLMonitor_Type, 0);
    if (m == NULL)
        return NULL;
    /* dealloc releases it, whatever happens below */
    if (pl_monitor_ticker_retain() < 0)
        pl_monitor_ticker_failed = 1;
    m->slow_threshold = 0.1;
    m->tasks = PyDict_New();
    m->finished = PyDict_New();
    if (m->tasks == NULL || m->finished == NULL) {
        Py_DECREF(m);
        return NULL;
    }
    m->mark = m->push_stamp = m->ready_end = m->timer_end = pl_loop_now();
    pl_monitor_restamp(m, m->mark);
    m->hist_min = INFINITY;
    m->run_key = PL_MONITOR_RUN_NONE;
    pl_monitor_set_mode(m);
    /* Turned on from inside a running loop: the run is in progress. */
    m->in_run = loop->running;
    loop->monitor = (PLMonitor *)Py_NewRef((PyObject *)m);
    return (PyObject *)m;
}

static PyObject *
pl_monitor_disable(PyObject *Py_UNUSED(mod), PyObject *arg)
{
    PLLoop *loop = pl_monitor_loop_arg(arg);
    if (loop == NULL)
        return NULL;
    Py_CLEAR(loop->monitor);
    Py_RETURN_NONE;
}

static PyObject *
pl_monitor_get(PyObject *Py_UNUSED(mod), PyObject *arg)
{
    PLLoop *loop = pl_monitor_loop_arg(arg);
    if (loop == NULL)
        return NULL;
    return Py_NewRef(loop->monitor ? (PyObject *)loop->monitor : Py_None);
}

/* The loop's own counts: (ready queue, pending timers, active libuv handles).
 * Plain loads of integers the loop thread updates with the GIL held. */
static PyObject *
pl_monitor_loop_counts(PyObject *Py_UNUSED(mod), PyObject *arg)
{
    PLLoop *loop = pl_monitor_loop_arg(arg);
    if (loop == NULL)
        return NULL;
    unsigned int uv_active = loop->state == PL_LOOP_OPEN ? loop->uv.active_handles : 0;
    return Py_BuildValue("(nnI)", (Py_ssize_t)loop->ready_len, loop->heap_len, uv_active);
}

static PyObject *
pl_monitor_set_hook(PyObject *Py_UNUSED(mod), PyObject *arg)
{
    if (!PyCallable_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "the slow-callback hook must be callable");
        return NULL;
    }
    Py_XSETREF(pl_monitor_slow_hook, Py_NewRef(arg));
    Py_RETURN_NONE;
}

/* How batch mode reads its tick now (tests, docs): "vvar" (the coarse
 * clock's words read in place), "vdso" (its clock_gettime called
 * directly), "libc" (glibc's clock_gettime), or the build's other source. */
static PyObject *
pl_monitor_tick_reader(PyObject *Py_UNUSED(mod), PyObject *Py_UNUSED(ignored))
{
#if defined(PL_MONITOR_COARSE_TICK)
#if defined(PL_MONITOR_VVAR_TICK)
    if (pl_monitor_vvar_coarse != NULL)
        return PyUnicode_FromString("vvar");
#endif
    return PyUnicode_FromString(pl_monitor_coarse_gettime == clock_gettime ? "libc" : "vdso");
#else
    return PyUnicode_FromString(PL_MONITOR_TICK_SOURCE);
#endif
}

static PyMethodDef pl_monitor_functions[] = {
    {"_monitor_tick_reader", pl_monitor_tick_reader, METH_NOARGS, NULL},
    {"_monitor_enable", pl_monitor_enable, METH_O, NULL},
    {"_monitor_disable", pl_monitor_disable, METH_O, NULL},
    {"_monitor_get", pl_monitor_get, METH_O, NULL},
    {"_monitor_loop_counts", pl_monitor_loop_counts, METH_O, NULL},
    {"_monitor_set_hook", pl_monitor_set_hook, METH_O, NULL},
    {NULL}
};

int
pl_monitor_init(PyObject *module)
{
    if (PyType_Ready(&PLMonitor_Type) < 0 || PyType_Ready(&PLTaskStats_Type) < 0)
        return -1;
    pl_monitor_str_done = PyUnicode_InternFromString("done");
    pl_monitor_str_self = PyUnicode_InternFromString("__self__");
    if (pl_monitor_str_done == NULL || pl_monitor_str_self == NULL)
        return -1;
    /* pl_state.task_type is set before the types are (module.c) */
    if (pl_state.task_type != NULL) {
        pl_monitor_task_done_meth = PyObject_GetAttr(pl_state.task_type, pl_monitor_str_done);
        if (pl_monitor_task_done_meth == NULL)
            PyErr_Clear(); /* the method call then */
    }
    pl_monitor_tick_init();
    /* what batch mode's tick comes from (tests and docs: "thread" means a
     * thread per process while a monitor exists) */
    if (PyModule_AddStringConstant(module, "_monitor_tick_source", PL_MONITOR_TICK_SOURCE) < 0)
        return -1;
    if (PyModule_AddObjectRef(module, "Monitor", (PyObject *)&PLMonitor_Type) < 0 ||
        PyModule_AddObjectRef(module, "TaskStats", (PyObject *)&PLTaskStats_Type) < 0)
        return -1;
    return PyModule_AddFunctions(module, pl_monitor_functions);
}
