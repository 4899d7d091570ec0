// Per-thread scratch buffers that persist across kernel calls. Large temporaries (im2col
// columns, Winograd tiles) freshly malloc'ed on every call come from mmap, and their first-touch
// page faults cost as much as the transform that fills them; reusing them removes that cost.
// The buffers are mapped and unmapped directly: through malloc, a buffer outgrown in several steps
// left its earlier sizes in the heap (glibc raises its mmap threshold to every mapping it frees),
// 44 MiB of a ResNet-18 training step's peak RSS.
#include "kernels.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/mman.h>

typedef struct {
    float *buffer[KN_SCRATCH_SLOTS];
    int64_t capacity[KN_SCRATCH_SLOTS];
} scratch_set;

static pthread_key_t key;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static int64_t mapped_bytes(int64_t floats) { return (floats * (int64_t)sizeof(float) + 4095) / 4096 * 4096; }

static void unmap(float *buffer, int64_t floats) {
    if (buffer) munmap(buffer, (size_t)mapped_bytes(floats));
}

static void release(void *p) {
    scratch_set *set = p;
    for (int i = 0; i < KN_SCRATCH_SLOTS; i++) unmap(set->buffer[i], set->capacity[i]);
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

// Activations and scratch are read a channel plane apart (conv tiles gather one row per input
// channel), so 4 KiB pages spend the TLB on a few rows each; 2 MiB pages cover a whole image.
enum { HUGE_PAGE = 2 << 20 };

void kn_advise_huge_pages(void *memory, int64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (bytes < 2 * HUGE_PAGE || getenv("KILN_NO_HUGE_PAGES")) return;
    const uintptr_t begin = ((uintptr_t)memory + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
    const uintptr_t end = ((uintptr_t)memory + (uintptr_t)bytes) / HUGE_PAGE * HUGE_PAGE;
    if (end > begin) madvise((void *)begin, end - begin, MADV_HUGEPAGE);  // advice: failure changes nothing
#else
    (void)memory, (void)bytes;
#endif
}

float *kn_scratch(int slot, int64_t floats) {
    pthread_once(&once, make_key);
    scratch_set *set = pthread_getspecific(key);
    if (!set) {
        set = calloc(1, sizeof *set);
        if (!set) return refuse((int64_t)sizeof *set);
        pthread_setspecific(key, set);
    }
    if (set->capacity[slot] < floats) {
        unmap(set->buffer[slot], set->capacity[slot]);
        set->buffer[slot] = NULL;
        set->capacity[slot] = 0;
        void *p = mmap(NULL, (size_t)mapped_bytes(floats), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return refuse(mapped_bytes(floats));
        kn_advise_huge_pages(p, mapped_bytes(floats));
        set->buffer[slot] = p;
        set->capacity[slot] = floats;
    }
    return set->buffer[slot];
}
