// Per-thread scratch buffers that persist across kernel calls. Large temporaries (im2col
// columns, Winograd tiles) freshly malloc'ed on every call come from mmap, and their first-touch
// page faults cost as much as the transform that fills them; reusing them removes that cost.
#include "kernels.h"
#include <pthread.h>
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

float *kn_scratch(int slot, int64_t floats) {
    pthread_once(&once, make_key);
    scratch_set *set = pthread_getspecific(key);
    if (!set) {
        set = calloc(1, sizeof *set);
        pthread_setspecific(key, set);
    }
    if (set->capacity[slot] < floats) {
        free(set->buffer[slot]);
        set->buffer[slot] = aligned_alloc(64, (size_t)((floats * sizeof(float) + 63) / 64 * 64));
        set->capacity[slot] = floats;
    }
    return set->buffer[slot];
}
