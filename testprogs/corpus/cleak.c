/* C leak for the leaktrace corpus.
 *
 *   cleak RATE_BYTES_PER_SEC TIDE_MIN_MIB TIDE_MAX_MIB SEED [SECS]
 *
 * Leaks RATE bytes/s in malloc'd blocks of 1-16 KiB (every page written, never freed), inside
 * random tides: a buffer of TIDE_MIN..TIDE_MAX MiB held 2-8 s then freed for 1-6 s. The mmap threshold
 * is pinned at 128 KiB (glibc otherwise raises it after the first free, and the tides would stay
 * resident in the heap under the leaked blocks). TIDE_MAX 0: no tides. Exits after SECS (0: until killed).
 * Deterministic given SEED (sizes and durations). Built at run time: gcc -O2 -o cleak cleak.c
 */
#include <stdio.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static unsigned long long rng_state;
static double rnd(void) { /* xorshift64*, uniform in [0, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (double)((rng_state * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}
static double uniform(double a, double b) { return a + (b - a) * rnd(); }
static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: cleak RATE TIDE_MIN_MIB TIDE_MAX_MIB SEED [SECS]\n");
        return 2;
    }
    double rate = atof(argv[1]), lo = atof(argv[2]), hi = atof(argv[3]);
    rng_state = strtoull(argv[4], NULL, 10) * 0x9E3779B97F4A7C15ULL + 1;
    mallopt(M_MMAP_THRESHOLD, 128 * 1024);
    double secs = argc > 5 ? atof(argv[5]) : 0;
    printf("pid %d: C leak %.0f B/s in malloc blocks of 1-16 KiB, tides %.0f-%.0f MiB (seed %s)\n", getpid(), rate,
           lo, hi, argv[4]);
    fflush(stdout);
    double t0 = now(), last = t0, owed = 0, next_change = t0 + uniform(1, 6);
    char *tide = NULL;
    for (;;) {
        double t = now();
        if (secs > 0 && t - t0 >= secs) break;
        owed += rate * (t - last);
        last = t;
        while (owed >= 1024) {
            size_t n = (size_t)uniform(1024, 16384);
            if (n > owed) n = (size_t)owed;
            char *p = malloc(n);
            if (!p) return 1;
            memset(p, 0x5a, n);
            owed -= n; /* never freed */
        }
        if (hi > 0 && t >= next_change) {
            if (!tide) {
                size_t n = (size_t)(uniform(lo, hi) * 1048576.0);
                tide = malloc(n);
                if (!tide) return 1;
                memset(tide, 0xa5, n);
                next_change = t + uniform(2, 8);
            } else {
                free(tide);
                tide = NULL;
                next_change = t + uniform(1, 6);
            }
        }
        usleep(100000);
    }
    return 0;
}
