/* word-count: count the words, lines and characters of a text.
 *
 * Input (stdin): a JSON string, e.g. "Hello wide world".  Output (stdout): {"words": 3, "lines": 1, "chars": 16}.
 * Errors go to stderr with a non-zero exit code, which fails the step with that message.
 * Build: scripts/build-transforms (zig cc -target wasm32-wasi). */
#include <stdio.h>

static int fail(const char *why) {
    fprintf(stderr, "word-count: %s\n", why);
    return 2;
}

int main(void) {
    int c = getchar();
    while (c == ' ' || c == '\n' || c == '\t' || c == '\r') c = getchar();
    if (c != '"') return fail("the input must be a JSON string");
    long words = 0, lines = 0, chars = 0;
    int in_word = 0, closed = 0;
    while ((c = getchar()) != EOF) {
        int ch = c;
        if (c == '"') { closed = 1; break; }
        if (c == '\\') {
            int e = getchar();
            if (e == EOF) return fail("the string ends inside an escape");
            if (e == 'n') ch = '\n';
            else if (e == 't') ch = '\t';
            else if (e == 'r') ch = '\r';
            else if (e == 'u') {
                for (int i = 0; i < 4; i++) if (getchar() == EOF) return fail("truncated \\u escape");
                ch = 'x';  /* one character; its value does not matter for counting */
            } else ch = e;
        }
        if ((c & 0xC0) == 0x80) continue;  /* a UTF-8 continuation byte: same character */
        chars++;
        if (ch == '\n') lines++;
        int space = ch == ' ' || ch == '\n' || ch == '\t' || ch == '\r';
        if (!space && !in_word) words++;
        in_word = !space;
    }
    if (!closed) return fail("the string is not terminated");
    if (chars > 0) lines++;
    printf("{\"words\": %ld, \"lines\": %ld, \"chars\": %ld}", words, lines, chars);
    return 0;
}
