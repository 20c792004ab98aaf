/* Read bandwidth of this machine, for docs/PERFORMANCE.md (a measurement tool: not part of the
 * package, which has no C). Each thread sums its share of a 1 GiB buffer with AVX-512 loads, in
 * STREAMS interleaved sequential streams (block by block, as an R16 GEMV over several groups
 * reads), optionally on transparent huge pages and with software prefetch PF bytes ahead.
 *
 *   gcc -O2 -mavx512f -pthread tools/readbw.c -o /tmp/readbw
 *   /tmp/readbw THREADS STREAMS HUGE PF      e.g. /tmp/readbw 2 1 0 0; /tmp/readbw 2 4 0 0; /tmp/readbw 2 1 1 0
 * prints the best of 9 passes in GB/s. */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static const size_t N = 1ul << 30;
static char *buf;
static int threads = 2, streams = 1, pf = 0;
static volatile float sink;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void *run(void *arg) {
    size_t per = N / threads, span = per / streams;
    char *p = buf + (long)arg * per;
    __m512 s[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (size_t o = 0; o < span; o += 256)
        for (int j = 0; j < streams; j++) {
            char *q = p + j * span + o;
            if (pf)
                for (int k = 0; k < 4; k++) _mm_prefetch(q + pf + 64 * k, _MM_HINT_T1);
            for (int k = 0; k < 4; k++) s[k] = _mm512_add_ps(s[k], _mm512_load_ps(q + 64 * k));
        }
    sink = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s[0], s[1]), _mm512_add_ps(s[2], s[3])));
    return 0;
}

int main(int argc, char **argv) {
    int huge = 0;
    if (argc > 1) threads = atoi(argv[1]);
    if (argc > 2) streams = atoi(argv[2]);
    if (argc > 3) huge = atoi(argv[3]);
    if (argc > 4) pf = atoi(argv[4]);
    if (threads < 1 || threads > 64 || streams < 1 || streams > 64) return 2;
    buf = aligned_alloc(2 << 20, N);
    if (!buf) return 1;
    if (huge) madvise(buf, N, MADV_HUGEPAGE);
    memset(buf, 1, N);
    double best = 1e9;
    for (int r = 0; r < 9; r++) {
        pthread_t t[64];
        double t0 = now();
        for (long i = 0; i < threads; i++) pthread_create(&t[i], 0, run, (void *)i);
        for (int i = 0; i < threads; i++) pthread_join(t[i], 0);
        if (now() - t0 < best) best = now() - t0;
    }
    printf("threads %d streams %d huge %d pf %d: %.1f GB/s\n", threads, streams, huge, pf, N / best / 1e9);
    return 0;
}
