/* The per-callback measuring points of pyloop.monitor, inlined into the loop
 * (csrc/loop.c includes this header, and monitor.c for their rare parts).
 *
 * They run for every callback while monitoring is on, so they are inline:
 * as out-of-line calls (pl_monitor_handle_begin/end, pl_monitor_on_push in
 * monitor.c) their calls, register saves and reloads of loop->monitor cost
 * about as much as the measuring itself (callgrind, the call_soon row of
 * benchmarks/monitor_overhead.py). What is rare (a slow callback, per-task
 * figures) stays out of line in monitor.c. */
#ifndef PL_MONITOR_HOOKS_H
#define PL_MONITOR_HOOKS_H

#include "loop.h"
#include "monitor.h"

#include <string.h>
#include <time.h>
#if defined(PL_MONITOR_CYCLE_TICK) && defined(__x86_64__)
#include <x86intrin.h>
#endif

/* pl_loop_now() itself, without the call into loop.c. */
static inline double
pl_monitor_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline size_t
pl_monitor_hist_index(uint64_t us)
{
    if (us < PL_MONITOR_HIST_EXACT)
        return (size_t)us;
    if (us > PL_MONITOR_HIST_MAX_US)
        us = PL_MONITOR_HIST_MAX_US;
    int e = 63 - __builtin_clzll(us); /* >= 8 */
    int shift = e - 7;
    return PL_MONITOR_HIST_EXACT + (size_t)(e - 8) * PL_MONITOR_HIST_SUB +
           (size_t)((us >> shift) - PL_MONITOR_HIST_SUB);
}

static inline void
pl_monitor_hist_record_n(PLMonitor *m, double d, uint64_t n)
{
    double us = d * 1e6;
    uint64_t v = us >= (double)PL_MONITOR_HIST_MAX_US ? PL_MONITOR_HIST_MAX_US : (uint64_t)us;
    m->hist[pl_monitor_hist_index(v)] += n;
    /* hist_min starts at +inf (pl_monitor_hist_reset): no count test */
    if (d < m->hist_min)
        m->hist_min = d;
    if (d > m->hist_max)
        m->hist_max = d;
    m->hist_count += n;
    /* no sum of squares here: the mean and the deviation come from the
     * buckets when read, as an HDR histogram's do (monitor.c) */
}

static inline void
pl_monitor_hist_record(PLMonitor *m, double d)
{
    pl_monitor_hist_record_n(m, d, 1);
}

/* Batch mode's sense of time passing (monitor.c's top): a tick that moves
 * every few ms, read on the loop's own thread after each callback (monitor.h
 * says which source). It only decides when the real clock is read, so its
 * period need not be known exactly. */
static inline unsigned long
pl_monitor_tick_now(void)
{
#if defined(PL_MONITOR_COARSE_TICK)
    /* The kernel's last tick: a few loads from the vDSO's data page, no
     * rdtsc (which cost 3x as much on the VM measured). */
#if defined(PL_MONITOR_VVAR_TICK)
    const volatile uint64_t *w = pl_monitor_vvar_coarse;
    if (__builtin_expect(w != NULL, 1)) {
        /* Not under the kernel's sequence lock: the nanoseconds read twice
         * around the seconds (x86-64 keeps these loads in order). Caught
         * moving, or a pair from two ticks that looks a second ahead: the
         * real clock is read once more, which is all a tick does. A pair
         * that looks a second behind (the seconds written after the
         * nanoseconds across a second's turn) puts the tick off to the
         * next callback's end. */
        uint64_t ns = w[1];
        uint64_t s = w[0];
        if (__builtin_expect(w[1] != ns, 0))
            return ~0UL;
        return (unsigned long)(s * 1000000000UL + ns);
    }
#endif
    struct timespec ts;
    pl_monitor_coarse_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (unsigned long)ts.tv_sec * 1000000000UL + (unsigned long)ts.tv_nsec;
#elif defined(PL_MONITOR_CYCLE_TICK) && defined(__x86_64__)
    return (unsigned long)(__rdtsc() >> PL_MONITOR_TSC_SHIFT);
#elif defined(PL_MONITOR_CYCLE_TICK) && defined(__aarch64__)
    uint64_t v;
    /* isb not wanted: a read a few instructions early changes nothing here */
    __asm__ __volatile__("mrs %0, cntvct_el0" : "=r"(v));
    return (unsigned long)(v >> pl_monitor_tick_shift);
#else
    return __atomic_load_n(&pl_monitor_tick, __ATOMIC_RELAXED);
#endif
}

/* The tick a clock reading `t` (pl_monitor_clock's seconds) has seen, and
 * whether one went by since `m`'s latest reading. The coarse clock is the
 * monotonic clock's value at the kernel's last tick: it only passes a
 * reading once a tick happened after that reading. So a reading is its own
 * tick (in nanoseconds) and a new reading needs no coarse read of its own;
 * the other sources are read at each reading and compared for change. */
static inline unsigned long
pl_monitor_tick_at(double t)
{
#if defined(PL_MONITOR_COARSE_TICK)
    /* truncated: at worst a nanosecond early, which can only make a later
     * test read the clock once more, never skip a tick */
    return (unsigned long)(t * 1e9);
#else
    (void)t;
    return pl_monitor_tick_now();
#endif
}

static inline int
pl_monitor_ticked(const PLMonitor *m)
{
#if defined(PL_MONITOR_COARSE_TICK)
    return pl_monitor_tick_now() > m->tick_seen;
#else
    return pl_monitor_tick_now() != m->tick_seen;
#endif
}

/* A double's bits: stamps are compared for identity, not by value, so one
 * integer compare does (no NaN rules). */
static inline uint64_t
pl_monitor_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

/* The end of the batch (or batches) whose reading was put off (`end_pending`:
 * 1 ready, 2 timers) is `t`, a reading made since with nothing run in
 * between but the loop's own bookkeeping: what they queued counts from it. */
static inline void
pl_monitor_end_settle(PLMonitor *m, double t)
{
    if (m->end_pending & 1)
        m->ready_end = t;
    if (m->end_pending & 2)
        m->timer_end = t;
    m->end_pending = 0;
}

/* A new reading `t`: the start of what runs next. It ends the pending run
 * (its callbacks started at the previous reading), so the per-callback test
 * is the stamp alone, and settles a batch end put off until now. */
static inline void
pl_monitor_restamp(PLMonitor *m, double t)
{
    if (m->run_n != 0)
        pl_monitor_run_flush(m);
    if (m->end_pending)
        pl_monitor_end_settle(m, t);
    m->stamp = t;
    m->tick_seen = pl_monitor_tick_at(t);
    m->callbacks_at_stamp = m->callbacks;
    m->stale = 0;
}

/* A batch's key: callbacks run back to back share it (see monitor.c's top). */
static inline unsigned long long
pl_monitor_chain_key(PLLoop *loop, PLHandle *h)
{
    /* iteration >= 1 while running, so a key is never 0 (0: no chain) */
    return (loop->iteration << 1) | (unsigned long long)(h->is_timer != 0);
}

static inline void
pl_monitor_on_push(PLLoop *loop, PLHandle *h)
{
    /* A timer keeps its deadline: its delay counts from when it was due. */
    if (h->is_timer)
        return;
    /* Another thread queueing while the loop waits without the GIL: the
     * loop's last reading is from before the wait, so read the clock. */
    h->when = loop->gil_tstate != NULL ? pl_monitor_clock() : loop->monitor->push_stamp;
}

/* When a plain handle was queued, its stamp resolved (monitor.h); a timer's
 * deadline as it is. */
static inline double
pl_monitor_queued_at(PLMonitor *m, PLHandle *h)
{
    double w = h->when;
    if (h->is_timer || w > PL_MONITOR_QUEUED_READY)
        return w;
    return w == PL_MONITOR_QUEUED_READY ? m->ready_end : m->timer_end;
}

/* Batch mode, before a batch of callbacks (the ready ones of an iteration,
 * or the timers due): read the clock unless the latest reading still holds
 * (`now`: a reading the caller just made, or -1). It holds unless a libuv
 * pass ran since (`stale`): otherwise it is the previous batch's end, and
 * between two batches the loop only does its own bookkeeping (at most a
 * poll(2) with no timeout, pl_loop_io_at_start), so no tick is read here. */
static inline void
pl_monitor_batch_begin(PLLoop *loop, double now, int timers)
{
    PLMonitor *m = loop->monitor;
    m->batch_active = 1;
    if (m->precise)
        return;
    m->push_stamp = timers ? PL_MONITOR_QUEUED_TIMERS : PL_MONITOR_QUEUED_READY;
    if (now >= 0.0)
        pl_monitor_restamp(m, now);
    else if (m->stale)
        pl_monitor_restamp(m, pl_monitor_clock());
}


/* Batch mode, after a batch. What the batch queued (stamped
 * PL_MONITOR_QUEUED_*) counts from its end, the earliest its queueing is
 * known to be over, as a callback's queueing counts from that callback's
 * end in precise mode. When no tick went by since the latest reading, that
 * end is not read now but when something needs it: before libuv's next pass
 * (pl_monitor_pass_begin), or at the next reading (the timers' `now`, a slow
 * callback's end, the run's end). Until then it stands at the latest
 * reading, which is where the next batch starts if no pass comes first: a
 * loop running only callbacks (no I/O) then reads the clock once a tick, not
 * once a batch. */
static inline void
pl_monitor_batch_end(PLLoop *loop, int timers)
{
    PLMonitor *m = loop->monitor;
    m->batch_active = 0;
    if (m->precise)
        return;
    if (!pl_monitor_ticked(m)) {
        if (timers)
            m->timer_end = m->stamp;
        else
            m->ready_end = m->stamp;
        m->push_stamp = m->stamp;
        m->end_pending |= (char)(timers ? 2 : 1);
        return;
    }
    double end = pl_monitor_clock();
    /* One callback since the last reading: its own duration, exactly. */
    if (m->callbacks + m->run_n - m->callbacks_at_stamp == 1 && end - m->stamp > m->busy_longest)
        m->busy_longest = end - m->stamp;
    if (timers)
        m->timer_end = end;
    else
        m->ready_end = end;
    m->push_stamp = end;
    pl_monitor_restamp(m, end);
}

/* Before a libuv pass (pl_loop_poll): a batch end put off is read now, so
 * that what the batch queued does not count the pass as its own wait. */
static inline void
pl_monitor_pass_begin(PLLoop *loop)
{
    PLMonitor *m = loop->monitor;
    if (m->end_pending) {
        double t = pl_monitor_clock();
        m->push_stamp = t;
        pl_monitor_restamp(m, t);
    }
}

/* Precise mode: each callback timed (one clock reading per callback). */
static inline void
pl_monitor_precise_begin(PLLoop *loop, PLMonitor *m, PLHandle *h)
{
    unsigned long long key = pl_monitor_chain_key(loop, h);
    double start;
    if (m->chain == key)
        start = m->stamp; /* the previous callback's end */
    else
        start = pl_monitor_clock();
    m->cur_key = key;
    m->cur_active = 2;
    m->cur_start = m->stamp = start;
    m->cur_ready_len = loop->ready_len;
    /* A plain handle queued while monitoring was off has no stamp (0). */
    if (h->is_timer || h->when != 0.0) {
        double d = start - pl_monitor_queued_at(m, h);
        if (!(d > 0.0)) /* NaN deadlines too */
            d = 0.0;
        pl_monitor_hist_record(m, d);
    }
}

/* Before the callback of `h`, `m` being the loop's monitor. Precise mode
 * times it from here; batch mode does nothing until its end: the callback
 * starts at the latest reading and is counted then (pl_monitor_run_count). */
static inline void
pl_monitor_handle_begin(PLLoop *loop, PLMonitor *m, PLHandle *h)
{
    if (m->precise)
        pl_monitor_precise_begin(loop, m, h);
}

/* Batch mode: count the callback of `h`, which started at the latest
 * reading. Handles queued at one reading and run from one reading (the
 * common case: a whole batch) have one delay: counted as a run, recorded
 * once. At the callback's end, not its start: the same test before the call
 * cost about three times as much CPU time in the call_soon row
 * (docs/performance.md, sixth pass); a reading is only made at a callback
 * boundary, so the latest one is still the start. */
static inline void
pl_monitor_run_count(PLMonitor *m, PLHandle *h)
{
    if (pl_monitor_bits(h->when) == m->run_key)
        m->run_n++;
    else
        pl_monitor_run_new(m, h);
}

static inline void
pl_monitor_precise_end(PLLoop *loop, PLMonitor *m, PLHandle *h)
{
    double end = pl_monitor_clock();
    double dur = end - m->cur_start;
    m->callbacks++;
    m->stamp = m->push_stamp = end;
    m->chain = m->cur_key;
    if (dur > m->busy_longest)
        m->busy_longest = dur;
    /* What this callback queued counts from its end (see monitor.c's top). */
    size_t to = loop->ready_len;
    if (to > m->cur_ready_len) {
        PLHandle **ring = loop->ready;
        size_t head = loop->ready_head, mask = loop->ready_cap - 1;
        for (size_t i = m->cur_ready_len; i < to; i++) {
            PLHandle *q = ring[(head + i) & mask];
            if (!q->is_timer)
                q->when = end;
        }
    }
    /* A Python function's call is no task's step: no per-task figures. */
    if (dur >= m->slow_threshold ||
        (m->per_task && h->callback != NULL && !PyFunction_Check(h->callback)))
        pl_monitor_handle_end_cold(loop, h, dur, m->cur_start);
}

/* After the callback of `h`, begun with `m` as the loop's monitor (the
 * caller checks that the callback left it in place: disabled, or disabled
 * and enabled again, it is not the monitor that saw the start). */
static inline void
pl_monitor_handle_end(PLLoop *loop, PLMonitor *m, PLHandle *h)
{
    if (__builtin_expect(!m->precise, 1)) {
        /* Batch mode: counted (first: a tick's reading below ends the run). */
        pl_monitor_run_count(m, h);
        if (pl_monitor_ticked(m))
            pl_monitor_tick_end(loop, h); /* it may have run long: time it */
        return;
    }
    /* Precise mode since this callback started (per-task figures turned
     * on inside it): no start to time it from; counted as batch mode would. */
    if (m->cur_active != 2) {
        pl_monitor_run_count(m, h);
        pl_monitor_run_flush(m);
        return;
    }
    m->cur_active = 0;
    pl_monitor_precise_end(loop, m, h);
}

/* The end of a transport's libuv callback that ran protocol code
 * (uvhandle.h's pl_uvh_exit: data_received, eof_received, connection_lost,
 * datagram_received...). Those run inside libuv's pass, not through the
 * ready queue, so they are timed here as a batch's callbacks are: the clock
 * is read only when a tick went by since the latest reading. */
static inline void
pl_monitor_io_end(PLLoop *loop, PyObject *transport)
{
    PLMonitor *m = loop->monitor;
    if (m->precise || pl_monitor_ticked(m))
        pl_monitor_io_end_cold(loop, transport);
}

#endif
