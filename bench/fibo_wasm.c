/* bench-fibo: the Windmill benchmark's task body as a wasm.run transform (bench/orchestration.py builds it).
   Input: n as a JSON number on stdin. Output: {"value": fibo(n), "body_s": seconds the computation took}. */
#include <stdio.h>
#include <time.h>

static long fibo(int n) { return n < 2 ? n : fibo(n - 1) + fibo(n - 2); }

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(void) {
    int n;
    if (scanf("%d", &n) != 1) {
        fputs("bench-fibo: the input must be a JSON integer\n", stderr);
        return 2;
    }
    double started = now();
    long value = fibo(n);
    printf("{\"value\": %ld, \"body_s\": %.9f}\n", value, now() - started);
    return 0;
}
