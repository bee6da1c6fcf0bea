/* faultstorm: the page-fault storm of `lt-workload faults`, timed per round, for measuring the
 * cost of page-fault sampling with fine interleaving (testprogs/c/measure-sites.py).
 *
 *   faultstorm MIB SECONDS
 *
 * Each round maps MIB MiB anonymous memory, writes one byte per page, unmaps it, and prints
 * "<end CLOCK_MONOTONIC ns> <round CPU ns> <pages>" on stdout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static long long ns(clockid_t c) {
    struct timespec t;
    clock_gettime(c, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv) {
    size_t len = (size_t)(argc > 1 ? atol(argv[1]) : 64) << 20;
    long long end = ns(CLOCK_MONOTONIC) + (long long)((argc > 2 ? atof(argv[2]) : 10) * 1e9);
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    while (ns(CLOCK_MONOTONIC) < end) {
        long long c0 = ns(CLOCK_PROCESS_CPUTIME_ID);
        char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            return 2;
        for (size_t i = 0; i < len; i += 4096)
            ((volatile char *)p)[i] = 1;
        munmap(p, len);
        printf("%lld %lld %zu\n", ns(CLOCK_MONOTONIC), ns(CLOCK_PROCESS_CPUTIME_ID) - c0, len / 4096);
    }
    return 0;
}
