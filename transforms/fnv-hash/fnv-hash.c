/* fnv-hash: a stable 64-bit FNV-1a fingerprint of any JSON input, e.g. to detect changed records cheaply.
 *
 * Input (stdin): any JSON value; the hash covers its bytes as the step serialised them (compact JSON, keys in
 * the order given).  Output (stdout): {"fnv1a64": "cbf29ce484222325", "bytes": 0}.
 * Build: scripts/build-transforms (zig cc -target wasm32-wasi). */
#include <stdint.h>
#include <stdio.h>

int main(void) {
    uint64_t hash = 0xcbf29ce484222325ULL;
    long bytes = 0;
    int c;
    while ((c = getchar()) != EOF) {
        hash ^= (uint64_t)(unsigned char)c;
        hash *= 0x100000001b3ULL;
        bytes++;
    }
    printf("{\"fnv1a64\": \"%016llx\", \"bytes\": %ld}", (unsigned long long)hash, bytes);
    return 0;
}
