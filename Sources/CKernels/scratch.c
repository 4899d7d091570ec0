// Per-thread scratch buffers that persist across kernel calls. Large temporaries (im2col
// columns, Winograd tiles) freshly malloc'ed on every call come from mmap, and their first-touch
// page faults cost as much as the transform that fills them; reusing them removes that cost.
#include "kernels.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

typedef struct {
    float *buffer[KN_SCRATCH_SLOTS];
    int64_t capacity[KN_SCRATCH_SLOTS];
} scratch_set;

static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void release(void *p) {
    scratch_set *set = p;
    for (int i = 0; i < KN_SCRATCH_SLOTS; i++) free(set->buffer[i]);
    free(set);
}

static void make_key(void) { pthread_key_create(&key, release); }

// The largest request the allocator refused since the last kn_take_allocation_failure().
static _Atomic int64_t refused_bytes;

void kn_allocation_failed(int64_t bytes) {
    int64_t seen = atomic_load(&refused_bytes);
    while (bytes > seen && !atomic_compare_exchange_weak(&refused_bytes, &seen, bytes)) {}
}

static float *refuse(int64_t bytes) {
    kn_allocation_failed(bytes);
    return NULL;
}

int64_t kn_take_allocation_failure(void) { return atomic_exchange(&refused_bytes, 0); }

float *kn_scratch(int slot, int64_t floats) {
    pthread_once(&once, make_key);
    scratch_set *set = pthread_getspecific(key);
    if (!set) {
        set = calloc(1, sizeof *set);
        if (!set) return refuse((int64_t)sizeof *set);
        pthread_setspecific(key, set);
    }
    if (set->capacity[slot] < floats) {
        const int64_t bytes = (floats * (int64_t)sizeof(float) + 63) / 64 * 64;
        free(set->buffer[slot]);
        set->buffer[slot] = aligned_alloc(64, (size_t)bytes);
        set->capacity[slot] = set->buffer[slot] ? floats : 0;
        if (!set->buffer[slot]) return refuse(bytes);
    }
    return set->buffer[slot];
}
