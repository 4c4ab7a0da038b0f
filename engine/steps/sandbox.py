"""The WebAssembly sandbox: untrusted code runs in wasmtime with hard limits and no ambient authority.

A transform is a wasm32-wasi *command* module: it reads its input (JSON) on stdin, writes its output (JSON) on
stdout and its log lines on stderr, and exits 0; any other exit code is a failure, with the end of stderr as
the reason. It gets no preopened directory (no filesystem), no environment variables, no arguments and no
sockets (WASI preview 1 has none); a clock and random numbers are all the outside it sees.

Limits per call, each failing the step with an error naming it (the worker and other steps are unaffected):
CPU as fuel (wasm instructions, deterministic) and as a wall-clock deadline (an epoch ticker thread), linear
memory (``memory.grow`` fails past it; a module *declaring* more cannot be instantiated), stdout and stderr bytes
(the flood is stopped as soon as the cap is crossed).

One ``Engine`` per process with wasmtime's on-disk compile cache; modules are compiled once per process and
kept by content digest, and calls go through a pre-linked ``InstancePre`` (a new store and instance per call,
~0.2 ms). wasmtime objects alive at interpreter exit can crash the process (STACK.md): they are dropped by an
``atexit`` hook.
"""

from __future__ import annotations

import atexit
import errno
import gc
import hashlib
import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime
import wasmtime.component

from engine.steps.call import StepFailure

EPOCH_TICK_SECONDS = 0.01
MODULE, CODE = "the module", "the code"  # who the error messages blame: a wasm.run transform, or a step's code
WASM_PAGE = 64 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    fuel: int = 2_000_000_000  # wasm instructions, roughly: ~1-2 s of tight loop
    timeout_seconds: float = 10.0
    memory_mb: int = 128
    output_bytes: int = 4 * 1024 * 1024
    log_bytes: int = 64 * 1024


@dataclass(frozen=True, slots=True)
class Outcome:
    stdout: bytes
    stderr: bytes
    fuel_used: int
    elapsed_ms: float


@dataclass(frozen=True, slots=True)
class ComponentOutcome:
    value: Any  # what the export returned (a WIT result comes back as Variant(tag="ok"|"err", payload=...))
    logs: bytes
    fuel_used: int
    elapsed_ms: float


class _Capped:
    """A WASI output sink with a byte cap: past it, writes fail and the guest's fuel is cut to stop it."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.parts: list[bytes] = []
        self.size = 0
        self.overflowed = False
        self.store: wasmtime.Store | None = None

    def __call__(self, data: bytes) -> int:
        if self.size + len(data) > self.cap:
            self.overflowed = True
            if self.store is not None:
                self.store.set_fuel(0)  # the next fuel check traps: a write loop cannot spin on
            return -errno.EFBIG
        self.parts.append(data)
        self.size += len(data)
        return len(data)

    def value(self) -> bytes:
        return b"".join(self.parts)


class Sandbox:
    def __init__(self, *, cache: bool = True) -> None:
        config = wasmtime.Config()
        config.consume_fuel = True
        config.epoch_interruption = True
        config.cache = cache  # wasmtime's on-disk compile cache, shared by every process of the machine
        self.engine = wasmtime.Engine(config)
        self._modules: dict[str, tuple[wasmtime.Module, wasmtime.InstancePre, int]] = {}
        self._components: dict[str, tuple[wasmtime.component.Component, wasmtime.component.Linker]] = {}
        self._lock = threading.Lock()
        self._local = threading.local()
        self._stdin_files: list[Path] = []
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None  # started by the first load: idle runtimes need no thread
        _LIVE.append(self)

    def _tick(self) -> None:
        while not self._stop.wait(EPOCH_TICK_SECONDS):
            self.engine.increment_epoch()

    def load(self, wasm: bytes) -> str:
        """Compile (once per process) and pre-link a module; returns its content digest."""
        digest = hashlib.sha256(wasm).hexdigest()
        with self._lock:
            self._start_ticker()
            if digest in self._modules:
                return digest
        try:
            module = wasmtime.Module(self.engine, wasm)
        except wasmtime.WasmtimeError as e:
            raise StepFailure(
                "sandbox.invalid_module",
                f"the module is not valid WebAssembly: {_first_line(e)}",
                hint="build it for wasm32-wasi (docs/guides/creating_transforms.md)",
            ) from None
        exports = {e.name for e in module.exports}
        if "_start" not in exports:
            raise StepFailure(
                "sandbox.invalid_module",
                "the module exports no _start: it is not a WASI command (exports: "
                + (", ".join(sorted(exports)) or "none")
                + ")",
                hint="build a program with a main function for wasm32-wasi, not a library (no -mexec-model=reactor)",
            )
        linker = wasmtime.Linker(self.engine)
        linker.define_wasi()
        try:
            pre = linker.instantiate_pre(module)
        except wasmtime.WasmtimeError as e:
            raise StepFailure(
                "sandbox.invalid_module",
                f"the module needs imports the sandbox does not offer: {_first_line(e)}",
                hint="a transform may import only WASI preview 1 (wasi_snapshot_preview1)",
            ) from None
        declared = max((m.type.limits.min for m in _memories(module)), default=0)
        with self._lock:
            self._modules[digest] = (module, pre, declared)
        return digest

    def run(self, digest: str, stdin: bytes, limits: Limits) -> Outcome:
        _, pre, declared_pages = self._modules[digest]
        memory_bytes = limits.memory_mb * 1024 * 1024
        if declared_pages * WASM_PAGE > memory_bytes:
            raise StepFailure(
                "sandbox.memory_limit",
                f"the module declares {declared_pages * WASM_PAGE // (1024 * 1024)} MiB of memory at start, "
                f"more than the {limits.memory_mb} MiB limit",
                hint="raise permissions.memory_mb (within the operator's maximum) or build with a smaller memory",
            )
        stdout, stderr = _Capped(limits.output_bytes), _Capped(limits.log_bytes)
        store, wasi = self._store(limits, stdout, stderr)
        path = self._stdin_path()
        started = time.monotonic()
        try:
            path.write_bytes(stdin)
            wasi.stdin_file = str(path)
            store.set_wasi(wasi)
            code = 0
            instance: wasmtime.Instance | None = None
            try:
                instance = pre.instantiate(store)
                start = instance.exports(store)["_start"]
                assert isinstance(start, wasmtime.Func)
                start(store)
            except wasmtime.ExitTrap as e:
                code = e.code
            except wasmtime.Trap as e:
                if _memory_exhausted(store, instance, memory_bytes):
                    raise _memory_failure(limits) from None
                raise _trap_failure(e, stdout, stderr, limits, started) from None
            except wasmtime.WasmtimeError as e:
                raise StepFailure("sandbox.trap", f"the module failed: {_first_line(e)}") from None
        finally:
            # the sinks must not keep the store alive: wasmtime's global callback table holds the sinks until
            # the store is dropped, so a sink -> store reference would leak every store (and its memory)
            stdout.store = stderr.store = None
        elapsed_ms = round((time.monotonic() - started) * 1000, 3)
        fuel_used = limits.fuel - store.get_fuel()
        if stdout.overflowed:
            raise _output_failure(limits)
        if stderr.overflowed:
            raise _log_failure(limits)
        if code != 0 and _memory_exhausted(store, instance, memory_bytes):
            raise _memory_failure(limits)  # the module gave up because memory.grow failed
        if code != 0:
            tail = stderr.value()[-500:].decode(errors="replace").strip()
            raise StepFailure(
                "sandbox.exit",
                f"the module exited with code {code}" + (f": {tail}" if tail else " (nothing on stderr)"),
                hint="the module reports failures on stderr and with a non-zero exit code",
            )
        return Outcome(stdout.value(), stderr.value(), fuel_used, elapsed_ms)

    def load_component(self, path: Path) -> str:
        """Compile (once per process; wasmtime's disk cache makes later processes fast) a WASI preview 2
        component and pre-link it; returns its key (the file's name, which carries its fingerprint)."""
        key = path.name
        with self._lock:
            self._start_ticker()
            if key in self._components:
                return key
        component = wasmtime.component.Component.from_file(self.engine, str(path))
        linker = wasmtime.component.Linker(self.engine)
        linker.add_wasip2()  # no preopens, no environment, no sockets: WasiConfig grants nothing by default
        with self._lock:
            self._components[key] = (component, linker)
        return key

    def call_component(self, key: str, export: str, args: tuple[Any, ...], limits: Limits) -> ComponentOutcome:
        """Call ``export`` of a fresh instance of a loaded component (nothing survives the call); the guest's
        stdout and stderr are its log, capped at ``limits.log_bytes``."""
        component, linker = self._components[key]
        logs = _Capped(limits.log_bytes)
        store, wasi = self._store(limits, logs, logs)
        started = time.monotonic()
        try:
            store.set_wasi(wasi)
            try:
                instance = linker.instantiate(store, component)
                func = instance.get_func(store, export)
                if func is None:
                    raise StepFailure("sandbox.invalid_module", f"the component exports no {export!r} function")
                value = func(store, *args)
            except (wasmtime.Trap, wasmtime.WasmtimeError) as e:
                raise _error_failure(e, logs, limits, started) from None
        finally:
            logs.store = None  # see run(): the sink must not keep the store alive
        if logs.overflowed:
            raise _log_failure(limits, CODE)
        elapsed_ms = round((time.monotonic() - started) * 1000, 3)
        return ComponentOutcome(value, logs.value(), limits.fuel - store.get_fuel(), elapsed_ms)

    def _store(self, limits: Limits, stdout: _Capped, stderr: _Capped) -> tuple[wasmtime.Store, wasmtime.WasiConfig]:
        """A store for one call: memory, fuel and deadline set; output sinks that can stop the guest."""
        store = wasmtime.Store(self.engine)
        store.set_limits(memory_size=limits.memory_mb * 1024 * 1024)
        store.set_fuel(limits.fuel)
        store.set_epoch_deadline(max(1, round(limits.timeout_seconds / EPOCH_TICK_SECONDS)))
        stdout.store = stderr.store = store
        wasi = wasmtime.WasiConfig()
        wasi.stdout_custom = stdout
        wasi.stderr_custom = stderr
        return store, wasi

    def _start_ticker(self) -> None:
        if self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="ionflux-wasm-epoch", daemon=True)
            self._ticker.start()

    def _stdin_path(self) -> Path:
        """This thread's stdin file (WASI preview 1 reads stdin from a file only). One per thread, rewritten per
        call and kept: creating and deleting a file per call cost a fifth of a warm call. In RAM when possible."""
        path: Path | None = getattr(self._local, "stdin", None)
        if path is None:
            folder = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
            fd, name = tempfile.mkstemp(prefix="ionflux-stdin-", dir=folder)
            os.close(fd)
            path = Path(name)
            self._local.stdin = path
            with self._lock:
                self._stdin_files.append(path)
        return path

    def close(self) -> None:
        """Stop the epoch ticker and drop every wasmtime object this sandbox holds (it cannot be used after)."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=1)
        with self._lock:
            self._modules.clear()
            self._components.clear()
            for path in self._stdin_files:
                path.unlink(missing_ok=True)
            self._stdin_files.clear()
        self.__dict__.pop("engine", None)


def _memories(module: wasmtime.Module) -> list[Any]:
    """The module's own and imported memories (a module may declare its memory's size either way)."""
    found: list[Any] = [e for e in module.exports if isinstance(e.type, wasmtime.MemoryType)]
    found += [i for i in module.imports if isinstance(i.type, wasmtime.MemoryType)]
    return found


def _trap_failure(trap: wasmtime.Trap, stdout: _Capped, stderr: _Capped, limits: Limits, started: float) -> StepFailure:
    if stdout.overflowed:
        return _output_failure(limits)
    if stderr.overflowed:
        return _log_failure(limits)
    return _limit_failure(trap.trap_code, limits, started) or StepFailure(
        "sandbox.trap", f"the module trapped: {_trap_reason(trap)}"
    )


def _error_failure(
    error: wasmtime.Trap | wasmtime.WasmtimeError, logs: _Capped, limits: Limits, started: float
) -> StepFailure:
    """A component call reports traps as a WasmtimeError whose cause names the trap in words."""
    if logs.overflowed:
        return _log_failure(limits, CODE)
    reason = _trap_reason(error)
    return _limit_failure(_TRAP_WORDS.get(reason), limits, started, CODE) or StepFailure(
        "sandbox.trap", f"the code failed in the sandbox: {reason}"
    )


_TRAP_WORDS = {
    "all fuel consumed by WebAssembly": wasmtime.TrapCode.OUT_OF_FUEL,
    "interrupt": wasmtime.TrapCode.INTERRUPT,
    "call stack exhausted": wasmtime.TrapCode.STACK_OVERFLOW,
    "out of bounds memory access": wasmtime.TrapCode.MEMORY_OUT_OF_BOUNDS,
}


def _limit_failure(
    code: wasmtime.TrapCode | None, limits: Limits, started: float, subject: str = MODULE
) -> StepFailure | None:
    if code == wasmtime.TrapCode.OUT_OF_FUEL:
        return StepFailure(
            "sandbox.fuel_exhausted",
            f"{subject} used its whole fuel budget ({limits.fuel:,} units) after "
            f"{(time.monotonic() - started) * 1000:.0f} ms: an endless or too long computation",
            hint="raise permissions.fuel (within the operator's maximum), or do less per step",
        )
    if code == wasmtime.TrapCode.INTERRUPT:
        return StepFailure(
            "sandbox.timeout",
            f"{subject} ran past its {limits.timeout_seconds:g} s deadline",
            hint="raise the node's timeout (within the operator's maximum), or do less per step",
        )
    if code == wasmtime.TrapCode.STACK_OVERFLOW:
        return StepFailure("sandbox.stack_overflow", f"{subject} overflowed its call stack (deep recursion)")
    if code == wasmtime.TrapCode.MEMORY_OUT_OF_BOUNDS:
        return StepFailure("sandbox.trap", f"{subject} accessed memory out of bounds (a bug, or memory exhausted)")
    return None


def _memory_exhausted(store: wasmtime.Store, instance: wasmtime.Instance | None, limit: int) -> bool:
    """Whether the module's memory is within one growth step of the limit (so a failed memory.grow is why it
    stopped). Modules grow in 64 KiB pages, allocators by up to a few MiB at once: 1/16 of the limit is the margin."""
    if instance is None:
        return False
    memory = instance.exports(store).get("memory")
    if not isinstance(memory, wasmtime.Memory):
        return False
    return memory.size(store) * WASM_PAGE >= limit - max(WASM_PAGE, limit // 16)


def _memory_failure(limits: Limits) -> StepFailure:
    return StepFailure(
        "sandbox.memory_limit",
        f"the module ran out of memory: it reached its {limits.memory_mb} MiB limit",
        hint="raise permissions.memory_mb (within the operator's maximum), or process the data in smaller parts",
    )


def _output_failure(limits: Limits) -> StepFailure:
    return StepFailure(
        "sandbox.output_too_large",
        f"the module wrote more than {limits.output_bytes:,} bytes to stdout (its output)",
        hint="return less, or write large data elsewhere and return a reference",
    )


def _log_failure(limits: Limits, subject: str = MODULE) -> StepFailure:
    where = "to stderr (its log)" if subject == MODULE else "to its log (print, stdout and stderr)"
    return StepFailure(
        "sandbox.log_too_large",
        f"{subject} wrote more than {limits.log_bytes:,} bytes {where}",
        hint="log less: the log is for short progress and error messages",
    )


def returned_json(text: str, limits: Limits) -> Any:
    """What inline code's ``main`` returned (JSON text), parsed, within the output limit."""
    if len(text) > limits.output_bytes:
        raise StepFailure(
            "sandbox.output_too_large",
            f"main(input) returned {len(text):,} bytes of JSON, over the {limits.output_bytes:,} byte limit",
            hint="return less, or raise permissions.output_bytes within the operator's maximum",
        )
    return json.loads(text)


def _trap_reason(trap: wasmtime.Trap | wasmtime.WasmtimeError) -> str:
    """wasmtime's own words for the trap ("wasm `unreachable` instruction executed"), without the backtrace."""
    lines = [line.strip() for line in str(trap).splitlines() if line.strip()]
    caused = [line for line in lines if line.startswith("wasm trap:")]
    return caused[-1].removeprefix("wasm trap:").strip() if caused else (lines[-1] if lines else "unknown trap")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


_LIVE: list[Sandbox] = []


def settle_outputs(*, at_most: int = 0, seconds: float = 2.0) -> int:
    """Wait, bounded, until no more than ``at_most`` of wasmtime's WASI output callbacks are alive; how many are.

    Dropping a store does not release its stdout/stderr callbacks at once: its WASI streams belong to tasks on
    wasmtime's tokio runtime, whose worker thread later calls back into Python to free them (milliseconds later, up
    to ~30 ms measured under load).
    """
    from wasmtime._wasi import CUSTOM_OUTPUTS  # the live stores' output callbacks (wasmtime-py pinned by uv.lock)

    gc.collect()
    deadline = time.monotonic() + seconds
    while len(CUSTOM_OUTPUTS.handles) > at_most and time.monotonic() < deadline:
        time.sleep(0.001)  # releases the GIL, so the worker's callback can run
        gc.collect()
    return len(CUSTOM_OUTPUTS.handles)


@atexit.register
def _drop_at_exit() -> None:
    """wasmtime objects still alive at interpreter exit can crash it (a tokio panic, sometimes a segfault).

    Closing them is not enough: if a tokio worker calls back to free a store's output (``settle_outputs``) while
    the interpreter is finalizing, Python ends that foreign thread with ``pthread_exit``, whose forced unwinding
    through Rust frames aborts with "panic in a function that cannot unwind" (4 runs in 100 with four at once). So
    the callbacks are let home first, while the interpreter can still take them.
    """
    for sandbox in _LIVE:
        sandbox.close()
    _LIVE.clear()
    settle_outputs()
