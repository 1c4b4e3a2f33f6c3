/* pyloop.monitor's C half: what a running loop does, measured where the loop
 * already is (the GIL release around the poll, the run of each handle).
 *
 * The loop holds a PLMonitor only while monitoring is on (loop->monitor,
 * NULL otherwise), so monitoring off costs one predictable branch at each
 * measuring point. Every figure is written by the loop's thread with the GIL
 * held, and every reader (the functions in monitor.c called from Python)
 * holds the GIL too: a reader in another thread sees a consistent snapshot
 * without a lock of its own. pyloop._core is a single-phase module without
 * Py_mod_gil, so even a free-threaded interpreter keeps the GIL on while it
 * is imported. */
#ifndef PL_MONITOR_H
#define PL_MONITOR_H

#include "compat.h"
#include "handle.h"

#include <stdint.h>

struct PLLoop;

/* Delays in whole microseconds, log-linear as an HDR histogram with two
 * significant digits: values below 256 us exactly, above that 128 buckets per
 * power of two (under 1% relative error), up to 60 s. */
#define PL_MONITOR_HIST_EXACT 256
#define PL_MONITOR_HIST_SUB 128
#define PL_MONITOR_HIST_MAX_US 60000000ULL
#define PL_MONITOR_HIST_BUCKETS (PL_MONITOR_HIST_EXACT + 18 * PL_MONITOR_HIST_SUB)

/* A handle's `when` while it waits in the ready queue, batch mode: queued
 * during a batch of ready callbacks or of timers, so queued at that batch's
 * end (no timer deadline is that far in the past). */
#define PL_MONITOR_QUEUED_READY (-1e300)
#define PL_MONITOR_QUEUED_TIMERS (-2e300)

/* Slots of the per-task figures' cache (a power of two). */
#define PL_MONITOR_TASK_CACHE 256

/* The slow-callback ring keeps the latest ones. */
#define PL_MONITOR_SLOW_RING 64

typedef struct PLMonitor {
    PyObject_HEAD
    /* utilization: completed spans plus the one in progress since `mark` */
    double idle;
    double active;
    double mark;
    char in_idle;
    char in_run;

    /* How callbacks are timed (monitor.c's top): 0, by batch; 1, each
     * callback (per-task figures, or a slow threshold under
     * PL_MONITOR_BATCH_MIN). */
    char precise;
    /* precise mode: 2 while a callback runs (timed from cur_start), else 0 */
    char cur_active;
    /* A reading is due at the next batch: unmeasured code (libuv's I/O
     * callbacks, Python code outside the loop) may have run since `stamp`. */
    char stale;
    /* Batch mode: the end of the latest batch (1: of ready callbacks, 2: of
     * timers) is still to be read (monitor_hooks.h, pl_monitor_batch_end). */
    char end_pending;
    /* A batch of callbacks is being run (set whatever the mode): Python
     * code on the loop's thread is then one of its callbacks. */
    char batch_active;
    double cur_start;
    size_t cur_ready_len;
    unsigned long long cur_key; /* its batch (`chain` below) */
    /* Precise mode: the batch the last callback ended in ((iteration << 1) |
     * timer; 0: none): the next callback of the same batch starts where it
     * ended, at `stamp`, so a batch reads the clock once per callback. */
    unsigned long long chain;
    /* The latest clock reading: what a handle queued now is stamped with
     * and, in batch mode, the start of the callback about to run. */
    double stamp;
    /* The tick at that reading (batch mode; monitor_hooks.h's
     * pl_monitor_tick_at): a tick since means the clock must be read again
     * at the next callback boundary. */
    unsigned long tick_seen;
    uint64_t callbacks_at_stamp; /* `callbacks` at that reading (run flushed) */

    /* What a handle queued now is stamped with: `stamp`, or while a batch
     * runs (batch mode) PL_MONITOR_QUEUED_READY/_TIMERS, which stand for the
     * end of that batch, known once it is over (ready_end, timer_end). */
    double push_stamp;
    double ready_end;
    double timer_end;

    /* Batch mode: the callbacks not yet counted, a run of handles stamped
     * alike and run from the same reading (every new reading ends the run:
     * pl_monitor_restamp), so one delay for all of them. Per callback the
     * loop compares the handle's stamp with `run_key` (its bits: one
     * integer compare, PL_MONITOR_RUN_NONE matches no stamp) and counts;
     * pl_monitor_run_flush adds the run to `callbacks` and, when its
     * handles had a stamp (`run_record`), `run_n` delays of `run_start -
     * run_when` to the histogram. */
    uint64_t run_key;
    uint64_t run_n;
    double run_when;
    double run_start;
    char run_record;

    /* delay histogram */
    uint64_t hist[PL_MONITOR_HIST_BUCKETS];
    uint64_t hist_count;
    double hist_min;
    double hist_max;
    uint64_t callbacks; /* run so far, the pending run's `run_n` aside */
    double busy_longest;

    /* slow callbacks */
    double slow_threshold;
    uint64_t slow_total;
    size_t slow_next;
    PyObject *slow_ring[PL_MONITOR_SLOW_RING]; /* records made by the hook */

    /* per-task figures (opt-in) */
    char per_task;
    PyObject *tasks;    /* {id(task): TaskStats} of the tasks seen alive */
    PyObject *finished; /* {coroutine name: TaskStats} summed */
    /* In front of `tasks`: the stats of a task found by its address without
     * a dict lookup (borrowed from `tasks`; checked against the stats' weak
     * reference, so a dead task's slot never matches a new one). */
    PyObject *task_cache_key[PL_MONITOR_TASK_CACHE];
    PyObject *task_cache_stats[PL_MONITOR_TASK_CACHE];

    /* bytes through the loop's stream transports */
    uint64_t bytes_read;
    uint64_t bytes_written;
} PLMonitor;

extern PyTypeObject PLMonitor_Type;

double pl_monitor_now(void);

/* The measuring points (the loop calls each only when loop->monitor is set;
 * all with the GIL held). */
void pl_monitor_run_begin(struct PLLoop *loop);
void pl_monitor_run_end(struct PLLoop *loop);
void pl_monitor_idle_begin(struct PLLoop *loop);
void pl_monitor_idle_end(struct PLLoop *loop);
/* The per-callback ones are inline, in monitor_hooks.h; this is their rare
 * part: a slow callback, per-task figures. */
void pl_monitor_handle_end_cold(struct PLLoop *loop, PLHandle *h, double dur, double start);
/* A transport's libuv callback ran protocol code and a tick went by (or
 * precise mode): read the clock, time it, record it when slow. */
void pl_monitor_io_end_cold(struct PLLoop *loop, PyObject *transport);
/* Batch mode: a tick went by while `h` ran: read the clock, time it. */
void pl_monitor_tick_end(struct PLLoop *loop, PLHandle *h);
/* Batch mode: count the pending run and put its delays into the histogram. */
void pl_monitor_run_flush(PLMonitor *m);
/* Batch mode: `h` starts a new run (its stamp differs from the run's). */
void pl_monitor_run_new(PLMonitor *m, PLHandle *h);

/* A run key no handle's stamp has: a NaN payload no arithmetic makes. */
#define PL_MONITOR_RUN_NONE 0x7ff4c0ffee0d1e5ULL
/* Another: the next callback to end is counted with no delay (its delay was
 * recorded, or dropped by a reset, while it ran: pl_monitor_run_new). */
#define PL_MONITOR_RUN_NODELAY 0x7ff4c0ffee0d1e6ULL

/* Batch mode's tick (monitor_hooks.h, pl_monitor_tick_now): the loop reads
 * the clock again after a callback only when the tick moved since the last
 * reading. Three sources, chosen when building:
 * - the kernel's coarse clock (CLOCK_MONOTONIC_COARSE, the default where
 *   there is one): the time of the kernel's last timer tick (1-10 ms,
 *   clock_getres says), read from the vDSO's data page, no hardware
 *   counter, no thread;
 * - the CPU's cycle counter (-DPL_MONITOR_CYCLE_TICK, x86-64 and aarch64):
 *   no thread either, but a rdtsc cost 21 ns where the coarse clock cost
 *   7 ns on the VM of docs/performance.md, so it is not the default;
 * - a ticker thread (-DPL_MONITOR_THREAD_TICK, or where neither exists):
 *   the cheapest read per callback (a load), but a thread makes glibc and
 *   the GIL charge every system call and wait of the process (about 9% of
 *   a TCP echo round trip's instructions).
 * The last two are there to be built and tested on Linux too. */
#include <time.h>
#if defined(PL_MONITOR_CYCLE_TICK) && !defined(__x86_64__) && !defined(__aarch64__)
#error "PL_MONITOR_CYCLE_TICK: no cycle counter known on this CPU"
#endif
#if defined(CLOCK_MONOTONIC_COARSE) && !defined(PL_MONITOR_CYCLE_TICK) && \
    !defined(PL_MONITOR_THREAD_TICK)
#define PL_MONITOR_COARSE_TICK 1
#endif
#if defined(PL_MONITOR_COARSE_TICK) || defined(PL_MONITOR_CYCLE_TICK)
#define PL_MONITOR_THREADLESS_TICK 1
#endif
#ifdef PL_MONITOR_COARSE_TICK
/* clock_gettime of the vDSO, found once (monitor.c), else glibc's. Hidden,
 * so the loop loads it directly. */
extern int (*pl_monitor_coarse_gettime)(clockid_t, struct timespec *)
    __attribute__((visibility("hidden")));
#if defined(__x86_64__) && defined(__linux__)
/* x86-64 Linux: the coarse clock read straight from the vDSO's data page
 * when its words were found there (monitor.c, pl_monitor_vvar_find): two
 * loads instead of a call. NULL: the call. */
#define PL_MONITOR_VVAR_TICK 1
extern const volatile uint64_t *pl_monitor_vvar_coarse __attribute__((visibility("hidden")));
void pl_monitor_vvar_check(double t);
#endif
#endif
#ifdef PL_MONITOR_CYCLE_TICK
/* x86-64: the time-stamp counter runs at the CPU's nominal rate (1-4 GHz on
 * current parts; constant on any CPU with an invariant TSC), so 2^22 cycles
 * is 1-4 ms (2.0 ms at this machine's 2.1 GHz). */
#define PL_MONITOR_TSC_SHIFT 22
/* aarch64: the virtual counter's rate (CNTFRQ_EL0) varies from 1 MHz to
 * 1 GHz between parts; monitor.c picks the shift that makes a tick 1-2 ms.
 * Hidden, so the loop loads it directly, not through the GOT. */
extern unsigned int pl_monitor_tick_shift __attribute__((visibility("hidden")));
#endif
#ifndef PL_MONITOR_THREADLESS_TICK
/* Bumped every PL_MONITOR_TICK_NS by the ticker thread while a monitor
 * exists (monitor.c). Hidden, so the loop loads it directly. */
extern unsigned long pl_monitor_tick __attribute__((visibility("hidden")));
#define PL_MONITOR_TICK_NS 5000000L
#endif
/* Slow thresholds under this time every callback (batch mode's durations
 * are known to about one tick). */
#define PL_MONITOR_BATCH_MIN 0.02

int pl_monitor_init(PyObject *module);

#endif
