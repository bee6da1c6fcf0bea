/* mallocs: an allocation-heavy loop, for measuring what `--malloc` costs.
 *
 *   mallocs N
 *
 * N rounds of: allocate a block (16..4096 bytes, varying), write its first byte, and free the
 * block allocated 8 rounds before (a small working set, as in real code); then frees the rest and
 * exits 0. Prints the loop's CPU-independent wall time as {"ns_per_op":X} on stdout.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    void *ring[8] = {0};
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) {
        size_t size = 16 + (size_t)(i * 37 % 4081);
        char *p = malloc(size);
        if (!p)
            abort();
        p[0] = (char)i;
        free(ring[i & 7]);
        ring[i & 7] = p;
    }
    for (int i = 0; i < 8; i++)
        free(ring[i]);
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ns = (b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec);
    printf("{\"ns_per_op\":%.1f}\n", ns / (n ? n : 1));
    return 0;
}
