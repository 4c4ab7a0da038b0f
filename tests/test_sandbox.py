"""The WebAssembly sandbox against hostile modules: each ends in a clean step failure naming the limit or the
fault, and the same sandbox (the worker) keeps serving well-behaved modules afterwards.

The modules are C programs built here for wasm32-wasi with zig's C compiler (the ``ziglang`` dev dependency;
the first build of the session compiles wasi-libc, ~25 s; zig caches it)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from engine.steps.call import StepFailure
from engine.steps.sandbox import Limits, Sandbox, settle_outputs
from tests.conftest import ROOT

PROGRAMS = {
    "echo": """
        #include <stdio.h>
        int main(void) {
            char buf[4096]; size_t n;
            while ((n = fread(buf, 1, sizeof buf, stdin)) > 0) fwrite(buf, 1, n, stdout);
            fputs("echoed", stderr);
            return 0;
        }""",
    "spin": "int main(void) { volatile unsigned long i = 0; for (;;) i++; }",
    "recurse": """
        int down(volatile int n) { volatile char pad[256]; pad[0] = (char)n; return down(n + 1) + pad[0]; }
        int main(void) { return down(0); }""",
    "malloc_bomb": """
        #include <stdio.h>
        #include <stdlib.h>
        char *volatile keep;  /* the allocations escape: the compiler cannot drop them */
        int main(void) {
            for (;;) { keep = malloc(1 << 20); if (!keep) { fputs("out of memory", stderr); return 3; } keep[0] = 1; }
        }""",
    "grow_bomb": """
        int main(void) { while (__builtin_wasm_memory_grow(0, 16) != (__SIZE_TYPE__)-1) {} return 4; }""",
    "stdout_flood": """
        #include <stdio.h>
        int main(void) { for (;;) fputs("flood flood flood flood flood flood flood flood\\n", stdout); }""",
    "stderr_flood": """
        #include <stdio.h>
        int main(void) { for (;;) fputs("log log log log log log log log log log log log\\n", stderr); }""",
    "trap": "int main(void) { __builtin_trap(); }",
    "snoop": """
        #include <stdio.h>
        #include <stdlib.h>
        int main(void) {
            FILE *f = fopen("/etc/passwd", "r");
            FILE *g = fopen("secret.txt", "w");
            const char *home = getenv("HOME"), *key = getenv("IONFLUX_SECRET_KEY");
            printf("{\\"passwd\\": %s, \\"write\\": %s, \\"home\\": %s, \\"key\\": %s}",
                   f ? "true" : "false", g ? "true" : "false", home ? "true" : "false", key ? "true" : "false");
            return 0;
        }""",
    "fail": """
        #include <stdio.h>
        int main(void) { fputs("bad input: expected an object", stderr); return 2; }""",
}


def _build(name: str, source: str, out_dir: Path) -> bytes:
    digest = hashlib.sha256(source.encode()).hexdigest()[:12]
    out = out_dir / f"{name}-{digest}.wasm"
    if not out.exists():
        src = out_dir / f"{name}.c"
        src.write_text(source)
        subprocess.run(
            [sys.executable, "-m", "ziglang", "cc", "-target", "wasm32-wasi", "-O1", "-s", "-o", str(out), str(src)],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return out.read_bytes()


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("wasm")
    return {name: _build(name, source, out) for name, source in PROGRAMS.items()}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox()
    yield box
    box.close()


SMALL = Limits(fuel=200_000_000, timeout_seconds=5, memory_mb=32, output_bytes=64 * 1024, log_bytes=4 * 1024)


def fails(sandbox: Sandbox, wasm: bytes, limits: Limits = SMALL, stdin: bytes = b"{}") -> StepFailure:
    with pytest.raises(StepFailure) as failure:
        sandbox.run(sandbox.load(wasm), stdin, limits)
    return failure.value


def test_a_transform_reads_stdin_writes_stdout_and_logs(sandbox: Sandbox, modules: dict[str, bytes]) -> None:
    payload = json.dumps({"items": list(range(1000))}).encode()
    out = sandbox.run(sandbox.load(modules["echo"]), payload, SMALL)
    assert out.stdout == payload and out.stderr == b"echoed"
    assert out.fuel_used > 0 and out.elapsed_ms > 0


@pytest.mark.parametrize(
    ("program", "limits", "code", "words"),
    [
        ("spin", SMALL, "sandbox.fuel_exhausted", "200,000,000 units"),
        ("spin", Limits(fuel=10**15, timeout_seconds=0.3), "sandbox.timeout", "0.3 s deadline"),
        ("recurse", SMALL, "sandbox.stack_overflow", "deep recursion"),
        ("malloc_bomb", SMALL, "sandbox.memory_limit", "32 MiB"),
        ("grow_bomb", SMALL, "sandbox.memory_limit", "32 MiB"),
        ("stdout_flood", SMALL, "sandbox.output_too_large", "65,536 bytes to stdout"),
        ("stderr_flood", SMALL, "sandbox.log_too_large", "4,096 bytes to stderr"),
        ("trap", SMALL, "sandbox.trap", "wasm `unreachable` instruction executed"),
        ("fail", SMALL, "sandbox.exit", "code 2: bad input: expected an object"),
    ],
)
def test_hostile_modules_fail_cleanly_naming_the_limit(
    sandbox: Sandbox, modules: dict[str, bytes], program: str, limits: Limits, code: str, words: str
) -> None:
    failure = fails(sandbox, modules[program], limits)
    assert failure.code == code and words in failure.message, (failure.code, failure.message)
    assert not failure.retryable
    # the worker is unharmed: the next call on the same sandbox works
    assert sandbox.run(sandbox.load(modules["echo"]), b"[1]", SMALL).stdout == b"[1]"


def test_no_filesystem_no_environment(sandbox: Sandbox, modules: dict[str, bytes]) -> None:
    out = sandbox.run(sandbox.load(modules["snoop"]), b"{}", SMALL)
    assert json.loads(out.stdout) == {"passwd": False, "write": False, "home": False, "key": False}


def test_malformed_bytes_and_missing_exports_are_refused(sandbox: Sandbox) -> None:
    assert fails(sandbox, b"\x00asm\x01\x00\x00\x00garbage").code == "sandbox.invalid_module"
    assert fails(sandbox, b"not wasm at all").code == "sandbox.invalid_module"
    library = bytes(wasmtime.wat2wasm('(module (func (export "transform")))'))
    failure = fails(sandbox, library)
    assert (
        failure.code == "sandbox.invalid_module" and "no _start" in failure.message and "transform" in failure.message
    )
    needs_host = bytes(wasmtime.wat2wasm('(module (import "env" "open_socket" (func)) (func (export "_start")))'))
    failure = fails(sandbox, needs_host)
    assert failure.code == "sandbox.invalid_module" and "imports" in failure.message


def test_a_module_declaring_more_memory_than_allowed_never_starts(sandbox: Sandbox) -> None:
    greedy = bytes(wasmtime.wat2wasm('(module (memory (export "memory") 1024) (func (export "_start")))'))  # 64 MiB
    failure = fails(sandbox, greedy)
    assert failure.code == "sandbox.memory_limit" and "declares 64 MiB" in failure.message


def test_modules_are_compiled_once_per_process(sandbox: Sandbox, modules: dict[str, bytes]) -> None:
    first = sandbox.load(modules["echo"])
    assert sandbox.load(modules["echo"]) == first == hashlib.sha256(modules["echo"]).hexdigest()


def test_the_process_exits_cleanly_with_wasmtime_objects_alive(modules: dict[str, bytes], tmp_path: Path) -> None:
    """STACK.md's exit crash: a tokio panic or a segfault when wasmtime objects outlive the interpreter."""
    wasm = tmp_path / "echo.wasm"
    wasm.write_bytes(modules["echo"])
    script = (
        "import sys\n"
        "from engine.steps.sandbox import Limits, Sandbox\n"
        "box = Sandbox()\n"
        f"digest = box.load(open({str(wasm)!r}, 'rb').read())\n"
        "print(box.run(digest, b'[42]', Limits()).stdout.decode())\n"
        "kept = box  # still alive at exit, on purpose\n"
    )
    for _ in range(3):  # the crash was intermittent
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert done.returncode == 0 and done.stdout.strip() == "[42]", done.stderr
        assert "panic" not in done.stderr and "Segmentation" not in done.stderr


def test_calls_leave_nothing_behind(sandbox: Sandbox, modules: dict[str, bytes]) -> None:
    """Each call's store (and its linear memory) is freed once the call ends: nothing accumulates per call. wasmtime
    releases a store's output callbacks a few milliseconds after the store, from its tokio worker thread
    (settle_outputs waits for them): compare two batches of calls with the baseline."""
    digest = sandbox.load(modules["echo"])
    baseline = settle_outputs()  # other tests' stores, on their way out
    for _ in range(2):
        for _ in range(200):
            sandbox.run(digest, b"{}", SMALL)
        assert settle_outputs(at_most=baseline) <= baseline  # 200 calls leave 400 callbacks if stores leak
