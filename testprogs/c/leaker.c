/* leaker: a C program whose memory behaviour is known, for `leaktrace sites` tests.
 *
 *   leaker SECONDS [KIB_PER_SEC]
 *
 * Every 10 ms: leak_through_here_please() allocates a chunk (KIB_PER_SEC/100 KiB, default
 * 2048 KiB/s) and touches every page, never freeing it; make_and_free() allocates and frees
 * small objects (malloc, calloc, realloc); cache_once() fills a bounded 1 MiB cache at start
 * (outstanding for ever, but not growing). Prints
 * {"pid":N,"ready":true} once its steady state begins, then runs SECONDS and exits 0.
 * Built with `cc -O1 -fno-omit-frame-pointer -g` so user stacks can be walked.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096

static void *volatile sink;

/* Touch each page with plain stores, inline: the page faults then happen in the allocating
 * function itself (a leaf helper would have no frame of its own and hide its caller, and
 * memset lives in the C library, which has no frame pointers). */
#define TOUCH(p, n)                                    \
    do {                                               \
        for (size_t i_ = 0; i_ < (n); i_ += PAGE)      \
            ((volatile char *)(p))[i_] = 1;            \
        ((volatile char *)(p))[(n) - 1] = 1;           \
    } while (0)

__attribute__((noinline)) void *leak_through_here_please(size_t n) {
    char *p = malloc(n);
    if (!p)
        abort();
    TOUCH(p, n);
    return p; /* the caller drops it: leaked */
}

/* Short-lived objects, freed at once: glibc recycles them (tcache, bins), so after the first
 * rounds they neither grow the heap nor touch new pages. */
__attribute__((noinline)) void make_and_free(unsigned round) {
    static const size_t sizes[] = {24, 64, 200, 512, 1000};
    size_t n = sizes[round % (sizeof sizes / sizeof sizes[0])];
    char *p = malloc(n);
    if (!p)
        abort();
    TOUCH(p, n);
    sink = p;
    free(p);
    char *q = calloc(4, n / 4);
    sink = q;
    free(q);
    char *r = realloc(NULL, n);
    r = realloc(r, 2 * n);
    sink = r;
    free(r);
}

__attribute__((noinline)) void cache_once(void) {
    static void *cache[64];
    for (int i = 0; i < 64; i++) {
        cache[i] = malloc(16 << 10);
        TOUCH(cache[i], 16 << 10);
    }
    sink = cache;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    double secs = argc > 1 ? atof(argv[1]) : 10;
    size_t kib = argc > 2 ? (size_t)atol(argv[2]) : 2048;
    size_t chunk = kib * 1024 / 100;
    if (chunk == 0)
        chunk = 1;
    cache_once();
    printf("{\"pid\":%d,\"ready\":true}\n", (int)getpid());
    fflush(stdout);
    double end = now() + secs;
    unsigned round = 0;
    while (now() < end) {
        for (int i = 0; i < 8; i++)
            make_and_free(round++);
        sink = leak_through_here_please(chunk);
        usleep(10000);
    }
    return 0;
}
