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

    /* the callback being run */
    char cur_active;
    double cur_start;
    size_t cur_ready_len;
    unsigned long long cur_key; /* its batch (`chain` below) */
    /* The batch the last callback ended in ((iteration << 1) | timer; 0:
     * none): the next callback of the same batch starts where it ended, at
     * `stamp`, so a batch reads the clock once per callback, not twice. */
    unsigned long long chain;
    /* the latest clock reading: what a handle queued now is stamped with */
    double stamp;

    /* delay histogram */
    uint64_t hist[PL_MONITOR_HIST_BUCKETS];
    uint64_t hist_count;
    double hist_min;
    double hist_max;

    uint64_t callbacks;
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
void pl_monitor_handle_end_cold(struct PLLoop *loop, PLHandle *h, double dur);

int pl_monitor_init(PyObject *module);

#endif
