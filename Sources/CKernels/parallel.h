// Kiln's parallel loops (internal): one persistent pthread pool behind two calls, in place of
// OpenMP (which needs -fopenmp, a flag SwiftPM refuses in a versioned dependency).
#ifndef KILN_PARALLEL_H
#define KILN_PARALLEL_H

#include <stdatomic.h>
#include <stdint.h>

/// One worker's part of a parallel region: `worker` in [0, workers).
typedef void (*kn_task)(void *context, int worker, int workers);
/// One contiguous share [begin, end) of a parallel loop.
typedef void (*kn_range_task)(void *context, int64_t begin, int64_t end);

/// Runs task(context, w, workers) once for every w in [0, workers) and returns when all are done.
/// The pool runs them side by side, worker 0 on the calling thread. A call made inside a region,
/// or while another thread's region holds the pool, runs them one after another on the calling
/// thread: the same partition, hence the same results.
void kn_parallel(int workers, kn_task task, void *context);

/// Splits [0, count) into kn_threads() contiguous shares (fewer when a share would hold fewer than
/// `grain` iterations) and runs task(context, begin, end) on each through kn_parallel.
void kn_parallel_for(int64_t count, int64_t grain, kn_range_task task, void *context);

/// Whether the calling thread is inside a parallel region (a nested kn_parallel runs serially).
int kn_in_parallel(void);

/// OpenMP's schedule(static) partition: worker w of `workers` takes [*begin, *end) of [0, count).
static inline void kn_share(int64_t count, int worker, int workers, int64_t *begin, int64_t *end) {
    const int64_t base = count / workers, extra = count % workers;
    *begin = worker * base + (worker < extra ? worker : extra);
    *end = *begin + base + (worker < extra);
}

/// Dynamic scheduling inside one region: each worker claims the next item of a shared counter
/// until none is left, so a core that the host slows (other tenants, interrupts) takes fewer items
/// instead of making the others wait for its fixed share. Use it only where an item's result does
/// not depend on which worker computes it (items write disjoint outputs), so results stay the same.
typedef struct { _Atomic int64_t next; } kn_counter;
static inline int64_t kn_claim(kn_counter *c) { return atomic_fetch_add_explicit(&c->next, 1, memory_order_relaxed); }

/// Grains for kn_parallel_for: elementwise float work, and loops whose iterations are rows or planes.
enum { KN_GRAIN_ELEMENTS = 1 << 14, KN_GRAIN_ROWS = 1 };

#endif
