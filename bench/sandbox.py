"""Sandbox overhead: a trivial ``wasm.run``, ``code.js`` and ``code.python`` step, warm, and the same flow's
per-step time with and without the sandbox.

    uv run python -m bench.sandbox                 # builds transforms/fnv-hash with zig if needed
    uv run python -m bench.sandbox --calls 5000 --rounds 7

Measures, on this machine: (1) ``Sandbox.run`` alone (new store + instance + WASI + the module's whole run);
(2) the ``wasm.run`` executor (plus JSON in/out and the manifest checks); (3) a 20-step flow through the embedded
engine whose steps are ``wasm.run`` vs ``data.set`` (the same engine path without a sandbox): the difference per
step is what the sandbox adds to a durably recorded step; (4) the ``code.js`` and ``code.python`` executors on a
trivial ``main`` (a fresh QuickJS instance / a fresh instance of the CPython component per call), and the same
20-step flow made of them. Medians of ``--rounds`` rounds, after a warm-up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from engine.core.state import StepKey
from engine.runtime.config import RuntimeConfig
from engine.runtime.runtime import Runtime
from engine.runtime.secrets import new_key
from engine.steps import code_js, code_python, wasm
from engine.steps.call import StepCall
from engine.steps.sandbox import Limits, Sandbox
from engine.store.db import sqlite_url

ROOT = Path(__file__).resolve().parent.parent
MODULE = ROOT / "transforms" / "fnv-hash" / "fnv-hash.wasm"
CODE = {"code.js": "function main(input) { return input; }", "code.python": "def main(input):\n    return input\n"}


def _module() -> bytes:
    if not MODULE.exists():
        subprocess.run(["bash", str(ROOT / "scripts" / "build-transforms")], check=True)
    return MODULE.read_bytes()


def _per_call_ms(fn: object, calls: int, rounds: int) -> tuple[float, list[float]]:
    assert callable(fn)
    for _ in range(min(200, calls)):
        fn()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - started) / calls * 1000)
    return statistics.median(samples), samples


def _flow(step_type: str, steps: int) -> str:
    lines = ["fluxgraph: 1", f"id: bench-{step_type.replace('.', '-')}", "nodes:"]
    for i in range(steps):
        needs = f"\n    needs: [s{i - 1}]" if i else ""
        if step_type == "wasm.run":
            body = "{module: fnv-hash@1.0.0, input: {n: " + str(i) + "}}"
        elif step_type in CODE:
            body = "{input: {n: " + str(i) + "}, code: " + json.dumps(CODE[step_type]) + "}"  # JSON is YAML
        else:
            body = "{n: " + str(i) + "}"
        lines.append(f"  - id: s{i}\n    type: {step_type}{needs}\n    with: {body}")
    return "\n".join(lines) + "\n"


def _flow_ms_per_step(rt: Runtime, step_type: str, steps: int, runs: int) -> float:
    _, version = rt.orchestrator.save_flow(_flow(step_type, steps), f"{step_type}.yaml")
    times = []
    for i in range(runs + 1):
        started = time.perf_counter()
        run_id = rt.orchestrator.start_run(version, None)
        status = rt.wait(run_id, 120, poll=0.001)
        elapsed = time.perf_counter() - started
        assert str(status) == "succeeded", status
        if i:  # the first run warms caches
            times.append(elapsed / steps * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    data = _module()
    box = Sandbox()
    digest = box.load(data)
    limits = Limits()
    run_ms, run_samples = _per_call_ms(lambda: box.run(digest, b'{"n":1}', limits), args.calls, args.rounds)
    transform = wasm.Transform("fnv-hash@1.0.0", data)
    policy = wasm.SandboxPolicy()

    def executor_call() -> None:
        call = StepCall(StepKey("s"), 1, "wasm.run", {"module": "fnv-hash@1.0.0", "input": {"n": 1}})
        wasm.run(call, box, lambda ref: transform, policy)

    step_ms, step_samples = _per_call_ms(executor_call, args.calls, args.rounds)

    def code_call(node_type: str) -> None:
        call = StepCall(StepKey("s"), 1, node_type, {"code": CODE[node_type], "input": {"n": 1}})
        if node_type == "code.js":
            code_js.run(call, policy)
        else:
            code_python.run(call, box, policy)

    code_calls = max(100, args.calls // 4)  # ~1-2 ms each
    js_ms, js_samples = _per_call_ms(lambda: code_call("code.js"), code_calls, args.rounds)
    py_ms, py_samples = _per_call_ms(lambda: code_call("code.python"), code_calls, args.rounds)
    box.close()
    with tempfile.TemporaryDirectory() as tmp:
        config = RuntimeConfig(
            database_url=sqlite_url(Path(tmp) / "bench.db"), blob_dir=Path(tmp) / "blobs", secret_key=new_key()
        )
        with Runtime(config) as rt:
            rt.modules.register(data, {"name": "fnv-hash", "version": "1.0.0"}, datetime.now(UTC))
            rt.start()
            with_sandbox = _flow_ms_per_step(rt, "wasm.run", args.steps, args.runs)
            without = _flow_ms_per_step(rt, "data.set", args.steps, args.runs)
            js_flow = _flow_ms_per_step(rt, "code.js", args.steps, args.runs)
            py_flow = _flow_ms_per_step(rt, "code.python", args.steps, args.runs)
    print(f"machine: {sys.platform}, python {sys.version.split()[0]}; module fnv-hash ({len(data):,} bytes)")
    print(f"Sandbox.run, warm:         {run_ms:.3f} ms/call  (rounds: {', '.join(f'{s:.3f}' for s in run_samples)})")
    print(f"wasm.run executor, warm:   {step_ms:.3f} ms/call  (rounds: {', '.join(f'{s:.3f}' for s in step_samples)})")
    print(f"code.js executor, warm:    {js_ms:.3f} ms/call  (rounds: {', '.join(f'{s:.3f}' for s in js_samples)})")
    print(f"code.python executor, warm: {py_ms:.3f} ms/call  (rounds: {', '.join(f'{s:.3f}' for s in py_samples)})")
    print(f"embedded flow, {args.steps} steps: wasm.run {with_sandbox:.3f} ms/step, data.set {without:.3f} ms/step")
    print(f"  -> the sandbox adds {with_sandbox - without:.3f} ms to a durably recorded step")
    print(f"embedded flow, {args.steps} steps: code.js {js_flow:.3f} ms/step, code.python {py_flow:.3f} ms/step")


if __name__ == "__main__":
    main()
