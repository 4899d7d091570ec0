// The thread pool behind kn_parallel: kn_threads() − 1 persistent workers plus the caller.
// A region is published by bumping `generation`; workers spin on it for a short while before
// sleeping on a condition variable (as OpenMP's KMP_BLOCKTIME), so back-to-back kernels start
// without a wake-up, and the caller spins until `pending` reaches zero. Persistent threads also
// keep their kn_scratch buffers warm across calls.
#define _GNU_SOURCE
#include "kernels.h"
#include "parallel.h"
#include <cblas.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

enum { MAX_THREADS = 256 };
static const int64_t SPIN_NANOSECONDS = 2000000;  // 2 ms of spinning before a worker sleeps

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

typedef struct {
    pthread_mutex_t busy;  // held by the thread whose region owns the pool
    int size;              // threads of a region, the caller included
    pthread_t threads[MAX_THREADS];
    // The published region.
    kn_task task;
    void *context;
    int workers;
    _Atomic uint64_t generation;
    _Atomic int pending;
    _Atomic int quit;
    uint64_t start_generation;  // the generation current when the workers were started
    // Sleeping workers.
    pthread_mutex_t sleep_lock;
    pthread_cond_t wake;
    _Atomic int sleepers;
} pool_state;

static pool_state pool = {.busy = PTHREAD_MUTEX_INITIALIZER, .sleep_lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};
static _Thread_local int in_region;
static int thread_count;  // 0 until first asked for or set

int kn_in_parallel(void) { return in_region; }

// Worker `first` runs the shares first, first + size, … of the region's workers.
static void run_shares(int first, int size) {
    for (int w = first; w < pool.workers; w += size) pool.task(pool.context, w, pool.workers);
}

static uint64_t wait_for_region(uint64_t seen) {
    const int64_t deadline = now_ns() + SPIN_NANOSECONDS;
    for (int spins = 0;; spins++) {
        const uint64_t g = atomic_load_explicit(&pool.generation, memory_order_acquire);
        if (g != seen) return g;
        cpu_relax();
        if ((spins & 255) == 255 && now_ns() > deadline) break;
    }
    pthread_mutex_lock(&pool.sleep_lock);
    atomic_fetch_add(&pool.sleepers, 1);
    uint64_t g;
    while ((g = atomic_load(&pool.generation)) == seen) pthread_cond_wait(&pool.wake, &pool.sleep_lock);
    atomic_fetch_sub(&pool.sleepers, 1);
    pthread_mutex_unlock(&pool.sleep_lock);
    return g;
}

static void *worker_main(void *argument) {
    const int index = (int)(intptr_t)argument;
    uint64_t seen = pool.start_generation;  // a region may be published before this thread runs
    in_region = 1;  // anything a worker calls is inside a region
    for (;;) {
        seen = wait_for_region(seen);
        if (atomic_load(&pool.quit)) return NULL;
        run_shares(index, pool.size);
        atomic_fetch_sub_explicit(&pool.pending, 1, memory_order_acq_rel);
    }
}

static void publish(void) {
    atomic_fetch_add(&pool.generation, 1);
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.sleep_lock);
        pthread_cond_broadcast(&pool.wake);
        pthread_mutex_unlock(&pool.sleep_lock);
    }
}

// Stops the running workers and starts size − 1 new ones; the caller holds pool.busy.
static void resize_pool(int size) {
    if (pool.size > 1) {
        atomic_store(&pool.quit, 1);
        publish();
        for (int t = 1; t < pool.size; t++) pthread_join(pool.threads[t], NULL);
        atomic_store(&pool.quit, 0);
    }
    pool.size = 1;
    pool.start_generation = atomic_load(&pool.generation);
    for (int t = 1; t < size; t++) {
        if (pthread_create(&pool.threads[t], NULL, worker_main, (void *)(intptr_t)t) != 0) break;  // fewer threads, same results
        pool.size = t + 1;
    }
}

void kn_parallel(int workers, kn_task task, void *context) {
    if (workers < 1) return;
    if (workers == 1) {  // not a region: a kn_sgemm inside may still split across the threads
        task(context, 0, 1);
        return;
    }
    const int size = kn_threads();
    if (size == 1 || in_region || pthread_mutex_trylock(&pool.busy) != 0) {
        const int outer = in_region;
        in_region = 1;
        for (int w = 0; w < workers; w++) task(context, w, workers);
        in_region = outer;
        return;
    }
    if (pool.size != size) resize_pool(size);
    pool.task = task;
    pool.context = context;
    pool.workers = workers;
    atomic_store(&pool.pending, pool.size - 1);
    publish();
    in_region = 1;
    run_shares(0, pool.size);
    in_region = 0;
    while (atomic_load_explicit(&pool.pending, memory_order_acquire) > 0) cpu_relax();
    pthread_mutex_unlock(&pool.busy);
}

typedef struct {
    int64_t count;
    kn_range_task task;
    void *context;
} range_region;

static void run_range(void *context, int worker, int workers) {
    const range_region *r = context;
    int64_t begin, end;
    kn_share(r->count, worker, workers, &begin, &end);
    if (begin < end) r->task(r->context, begin, end);
}

void kn_parallel_for(int64_t count, int64_t grain, kn_range_task task, void *context) {
    if (count <= 0) return;
    if (grain < 1) grain = 1;
    const int64_t most = (count + grain - 1) / grain;
    const int threads = kn_threads(), workers = most < threads ? (int)most : threads;
    if (workers == 1) { task(context, 0, count); return; }
    range_region r = {count, task, context};
    kn_parallel(workers, run_range, &r);
}

// ---- thread count (shared with OpenBLAS) -------------------------------------------------------

static int default_threads(void) {
    const char *forced = getenv("KILN_THREADS");
    if (forced && atoi(forced) > 0) return atoi(forced);
#ifdef __linux__
    cpu_set_t set;  // the CPUs this process may run on (a container's or taskset's share)
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
#endif
    const long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}

void kn_set_threads(int n) {
    if (n < 1) n = 1;
    if (n > MAX_THREADS) n = MAX_THREADS;
    pthread_mutex_lock(&pool.busy);  // never while a region runs
    thread_count = n;
    pthread_mutex_unlock(&pool.busy);
    openblas_set_num_threads(1);  // Kiln parallelises around BLAS (see gemm.c)
}

int kn_threads(void) {
    if (thread_count == 0) kn_set_threads(default_threads());
    return thread_count;
}
