"""``code.js`` (QuickJS in wasm) and ``code.python`` (a CPython wasm component): inputs and outputs, logs, the
adversarial cases each ending in a clean failure that names the limit (with the sandbox healthy after it),
isolation between calls, limits within the operator's maxima, runs through the engine on both backends, and
the component build (cached, nothing of the environment inside)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.core.state import StepKey
from engine.steps import code_js, code_python, python_component
from engine.steps.call import StepCall, StepFailure
from engine.steps.sandbox import Limits, Sandbox
from engine.steps.wasm import SandboxPolicy
from tests.conftest import ROOT
from tests.runtime_helpers import BACKENDS, run_flow, running

POLICY = SandboxPolicy(defaults=Limits(timeout_seconds=2, memory_mb=64, log_bytes=4096, output_bytes=100_000))


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox()
    yield box
    box.close()


def call(language: str, code: str, input: Any = None, **limits: Any) -> StepCall:
    return StepCall(StepKey("n"), 1, f"code.{language}", {"code": code, "input": input}, limits=limits)


def run(sandbox: Sandbox, step: StepCall, policy: SandboxPolicy = POLICY) -> Any:
    if step.node_type == "code.js":
        return code_js.run(step, policy)
    return code_python.run(step, sandbox, policy)


def failure(sandbox: Sandbox, step: StepCall, policy: SandboxPolicy = POLICY) -> StepFailure:
    with pytest.raises(StepFailure) as failed:
        run(sandbox, step, policy)
    return failed.value


JS_SUM = """function main(input) {
  console.log('summing', input.length, {n: 1});
  return {total: input.reduce((a, b) => a + b, 0)};
}
"""
PY_SUM = "def main(input):\n    print('summing', len(input))\n    return {'total': sum(input)}\n"


@pytest.mark.parametrize(("language", "code"), [("js", JS_SUM), ("python", PY_SUM)])
def test_main_gets_the_input_and_returns_the_output_with_logs_and_usage(
    sandbox: Sandbox, language: str, code: str
) -> None:
    step = call(language, code, [1, 2, 3.5])
    assert run(sandbox, step) == {"total": 6.5}
    assert step.log == [("info", 'summing 3 {"n":1}' if language == "js" else "summing 3")]
    assert step.usage["elapsed_ms"] > 0
    if language == "python":
        assert step.usage["fuel"] > 0


@pytest.mark.parametrize("language", ["js", "python"])
def test_unicode_nested_values_and_null_round_trip(sandbox: Sandbox, language: str) -> None:
    value = {"name": "Zoë ✓", "items": [{"q": 2, "ok": True}, None], "big": 2**53 - 1}
    code = "function main(x) { return x; }" if language == "js" else "def main(x):\n    return x\n"
    assert run(sandbox, call(language, code, value)) == value


# (language, code, error code, words the message must contain)
HOSTILE = [
    ("js", "function main(x) { while (true) {} }", "sandbox.timeout", "2 s deadline"),
    ("js", "function main(x) { const f = (n) => f(n + 1); return f(0); }", "sandbox.stack_overflow", "call stack"),
    (
        "js",
        "function main(x) { const a = []; while (true) a.push('x'.repeat(1e6) + a.length); }",
        "sandbox.memory_limit",
        "64 MiB",
    ),
    ("js", "function main(x) { const a = []; for (let i = 0; ; i++) a.push(i); }", "sandbox.memory_limit", "64 MiB"),
    ("js", "function main(x) { return new Array(1e9).fill(0).length; }", "sandbox.memory_limit", "64 MiB"),
    (
        "js",
        "function main(x) { const a = []; while (true) a.push(new Array(1e5).fill(1)); }",
        "sandbox.memory_limit",
        "64 MiB",
    ),
    (  # many small objects reach the wasm store's cap first: QuickJS then throws a bare "Error: null"
        "js",
        "function main(x) { const r = []; for (let i = 0; i < 2e6; i++) r.push({id: i, s: 'row ' + i}); }",
        "sandbox.memory_limit",
        "64 MiB",
    ),
    ("js", "function main(x) { throw new Error(null); }", "code.error", "Error: null"),
    ("js", "function main(x) { while (true) console.log('flood'); }", "sandbox.log_too_large", "4,096 bytes"),
    ("js", "function main(x) { return 'x'.repeat(200000); }", "sandbox.output_too_large", "100,000 byte"),
    ("js", "function main(x) { return fetch('http://127.0.0.1:5432/'); }", "code.error", "fetch is not defined"),
    ("js", "function main(x) { return require('fs').readFileSync('/etc/passwd'); }", "code.error", "require"),
    ("js", "function main(x) { return process.env; }", "code.error", "process is not defined"),
    ("js", "function main(x) {\n  return x.a.b;\n}", "code.error", "in main, defined at line 1"),
    ("js", "let y = 1;\n\ny = ;\n", "code.syntax", "line 3 of the code"),
    ("js", "function mian(x) { return x; }", "code.no_main", "main(input)"),
    ("js", "function main(x) { if (x > 5) return 1; }", "code.bad_output", "undefined"),
    ("js", "async function main(x) { return 1; }", "code.bad_output", "Promise"),
    ("js", "function main(x) { throw new Error('refund too large'); }", "code.error", "Error: refund too large"),
    ("python", "def main(x):\n    while True:\n        pass\n", "sandbox.fuel_exhausted", "fuel budget"),
    (
        "python",
        "import sys\nsys.setrecursionlimit(10**6)\ndef main(x):\n    f = lambda n: f(n + 1)\n    return f(0)\n",
        "sandbox.stack_overflow",
        "call stack",
    ),
    ("python", "def main(x):\n    f = lambda n: f(n + 1)\n    return f(0)\n", "sandbox.stack_overflow", "line 2"),
    (
        "python",
        "def main(x):\n    a = []\n    while True:\n        a.append([0] * 100_000)\n",
        "sandbox.memory_limit",
        "64 MiB",
    ),
    ("python", "def main(x):\n    return [0] * 10**9\n", "sandbox.memory_limit", "line 2 of the code"),
    ("python", "def main(x):\n    while True:\n        print('flood')\n", "sandbox.log_too_large", "4,096 bytes"),
    ("python", "def main(x):\n    return 'x' * 200_000\n", "sandbox.output_too_large", "100,000 byte"),
    ("python", "import socket\ndef main(x):\n    return 1\n", "code.error", "No module named 'socket'"),
    (
        "python",
        "import _socket\ndef main(x):\n    s = _socket.socket()\n    s.connect(('127.0.0.1', 5432))\n",
        "code.error",
        "PermissionError",
    ),
    ("python", "import urllib.request\ndef main(x):\n    return 1\n", "code.error", "urllib.request"),
    ("python", "import subprocess\ndef main(x):\n    return 1\n", "code.error", "subprocess"),
    ("python", "def main(x):\n    return open('/etc/passwd').read()\n", "code.error", "No such file"),
    ("python", "import os\ndef main(x):\n    return os.listdir('/')\n", "code.error", "No such file"),
    ("python", "def main(x):\n    return {1, 2}\n", "code.bad_output", "not JSON"),
    ("python", "def main(x):\n    return float('nan')\n", "code.bad_output", "not JSON"),
    ("python", "def mian(x):\n    return x\n", "code.no_main", "main(input)"),
    ("python", "x = 1\n\ny = = 2\n", "code.syntax", "line 3 of the code"),
    (
        "python",
        "def main(x):\n    raise ValueError('refund too large')\n",
        "code.error",
        "ValueError: refund too large",
    ),
    ("python", "import sys\ndef main(x):\n    sys.exit(3)\n", "code.error", "SystemExit"),
]


@pytest.mark.parametrize(
    ("language", "code", "error", "words"), HOSTILE, ids=[f"{c[0]}:{c[2]}:{i}" for i, c in enumerate(HOSTILE)]
)
def test_hostile_or_broken_code_fails_cleanly_and_the_sandbox_stays_healthy(
    sandbox: Sandbox, language: str, code: str, error: str, words: str
) -> None:
    failed = failure(sandbox, call(language, code, 1))
    assert failed.code == error, failed
    assert words in failed.message, failed.message
    healthy = "function main(x) { return x + 1; }" if language == "js" else "def main(x):\n    return x + 1\n"
    assert run(sandbox, call(language, healthy, 41)) == 42


def test_environment_is_empty_even_when_the_worker_has_secrets(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IONFLUX_TEST_SECRET", "hunter2")
    assert run(sandbox, call("python", "import os\ndef main(x):\n    return dict(os.environ)\n")) == {}
    assert run(sandbox, call("js", "function main(x) { return typeof process + typeof std + typeof os; }")) == (
        "undefinedundefinedundefined"
    )


@pytest.mark.parametrize(
    ("language", "first", "second"),
    [
        (
            "js",
            "function main(x) { globalThis.leak = 'a secret'; return 1; }",
            "function main(x) { return typeof leak; }",
        ),
        (
            "python",
            "import builtins\ndef main(x):\n    builtins.leak = 'a secret'\n    return 1\n",
            "import builtins\ndef main(x):\n    return hasattr(builtins, 'leak')\n",
        ),
    ],
)
def test_nothing_one_step_does_is_visible_to_the_next(sandbox: Sandbox, language: str, first: str, second: str) -> None:
    assert run(sandbox, call(language, first)) == 1
    assert run(sandbox, call(language, second)) in ("undefined", False)


@pytest.mark.parametrize("language", ["js", "python"])
def test_limits_come_from_the_node_within_the_operators_maxima(sandbox: Sandbox, language: str) -> None:
    loop = (
        "function main(x) { while (true) {} }" if language == "js" else "def main(x):\n    while True:\n        pass\n"
    )
    policy = SandboxPolicy(
        defaults=Limits(timeout_seconds=10), maxima=Limits(fuel=10**13, memory_mb=256, timeout_seconds=0.5)
    )
    failed = failure(sandbox, call(language, loop, timeout_seconds=30, fuel=10**12), policy)
    assert failed.code == "sandbox.timeout" and "0.5 s" in failed.message  # the node's 30 s capped by the maximum
    too_high = failure(sandbox, call(language, "x", memory_mb=512), policy)
    assert too_high.code == "sandbox.limit_too_high" and "256" in too_high.message


def test_python_modules_named_in_errors_are_the_ones_the_guest_bundles() -> None:
    guest = ast.parse((python_component.GUEST / "guest.py").read_text())
    imported = {alias.name for node in guest.body if isinstance(node, ast.Import) for alias in node.names}
    offered = {name.strip() for name in code_python.MODULES.split(",")}
    assert offered <= imported
    assert imported - offered <= {"contextlib", "sys", "traceback", "wit_world"}  # the guest's own machinery
    assert not offered & {"socket", "ssl", "subprocess", "urllib.request", "http.client", "threading", "asyncio"}


def test_python_offers_its_standard_modules(sandbox: Sandbox) -> None:
    imports = "\n".join(f"import {name}" for name in code_python.MODULES.split(", "))
    code = (
        imports
        + "\ndef main(x):\n    return csv.reader(io.StringIO(x)).__next__() + [hashlib.sha256(b'').hexdigest()[:8]]\n"
    )
    assert run(sandbox, call("python", code, "a,b")) == ["a", "b", "e3b0c442"]


def test_steps_run_in_parallel_threads(sandbox: Sandbox) -> None:
    results: dict[str, list[Any]] = {"js": [], "python": []}
    codes = {"js": "function main(x) { return x * 2; }", "python": "def main(x):\n    return x * 2\n"}

    def work(language: str) -> None:
        for i in range(15):
            results[language].append(run(sandbox, call(language, codes[language], i)))

    threads = [threading.Thread(target=work, args=(language,)) for language in codes for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sorted(results["js"]) == sorted(results["python"]) == sorted([i * 2 for i in range(15)] * 2)


FLOW = """
fluxgraph: 1
id: code-steps
inputs:
  type: object
  properties:
    orders: {type: array}
nodes:
  - id: big
    type: code.python
    with:
      input: "{{ inputs.orders }}"
      code: |
        def main(orders):
            print(f"{len(orders)} orders")
            return [o for o in orders if o["total"] > 100]
  - id: label
    type: code.js
    needs: [big]
    with:
      input: "{{ nodes.big.output }}"
      code: |
        function main(orders) {
          return orders.map((o) => `${o.id}: ${o.total.toFixed(2)}`).join(", ");
        }
  - id: broken
    type: code.js
    needs: [label]
    permissions: {memory_mb: 16}
    with:
      input: 1
      code: "function main(x) { const a = []; for (;;) a.push(a.length); }"
outputs:
  label: "{{ nodes.label.output }}"
"""


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_flow_runs_code_steps_and_a_runaway_step_fails_the_run_cleanly(backend: str, tmp_path: Path) -> None:
    from engine.runtime import queries

    orders = [{"id": "A1", "total": 250}, {"id": "A2", "total": 20}, {"id": "A3", "total": 100.5}]
    with running(backend, tmp_path) as rt:
        run_id, status = run_flow(rt, FLOW, {"orders": orders}, timeout=60)
        assert status == "failed"
        steps = {s.key: s for s in queries.run_steps_of(rt.db, run_id)}
        assert steps["big"].status == steps["label"].status == "succeeded"
        assert steps["label"].output_preview == '"A1: 250.00, A3: 100.50"'
        broken = steps["broken"]
        assert broken.status == "failed" and broken.error is not None
        assert broken.error["code"] == "sandbox.memory_limit" and broken.error["message"].startswith("broken:")
        assert "16 MiB" in broken.error["message"]
        # the worker is unaffected: the next run of a healthy flow succeeds
        assert run_flow(
            rt, FLOW.replace("const a = []; for (;;) a.push(a.length);", "return x;"), {"orders": orders}, timeout=60
        )[1] == ("succeeded")


def test_the_component_is_built_once_without_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("IONFLUX_TEST_BUILD_SECRET", "s3cr3t-in-the-environment")
    built = python_component.path()
    assert built.parent == tmp_path / "ionflux" / "python-component"
    assert python_component.fingerprint() in built.name
    assert b"s3cr3t-in-the-environment" not in built.read_bytes()  # the interpreter snapshot holds no environment
    stamp = built.stat().st_mtime_ns
    assert python_component.path() == built and built.stat().st_mtime_ns == stamp  # cached: not rebuilt


def test_the_process_exits_cleanly_after_code_steps() -> None:
    """STACK.md's exit crash: wasmtime objects alive at exit (ours and quickjs-rs's) must not panic or segfault."""
    script = (
        "from engine.core.state import StepKey\n"
        "from engine.steps import code_js, code_python\n"
        "from engine.steps.call import StepCall\n"
        "from engine.steps.sandbox import Sandbox\n"
        "from engine.steps.wasm import SandboxPolicy\n"
        "box = Sandbox()\n"
        "js = StepCall(StepKey('n'), 1, 'code.js', {'code': 'function main(x) { return x + 1; }', 'input': 1})\n"
        "py = StepCall(StepKey('n'), 1, 'code.python', {'code': 'def main(x):\\n    return x + 2', 'input': 1})\n"
        "print(code_js.run(js, SandboxPolicy()), code_python.run(py, box, SandboxPolicy()))\n"
    )
    for _ in range(3):  # the crash was intermittent
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT, env=os.environ
        )
        assert done.returncode == 0 and done.stdout.split() == ["2", "3"], done.stderr
        assert "panic" not in done.stderr and "Segmentation" not in done.stderr


def test_the_documented_blueprint_runs_as_the_docs_say(tmp_path: Path) -> None:
    """docs/running.md's example: flows/order-totals.yaml with its default input, and with one given."""
    import json

    from tests.cli_helpers import ionflux

    done = ionflux(tmp_path, "run", "flows/order-totals.yaml", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["outputs"] == {
        "totals": {"Ana": "20.10", "Rui": "17.10"},
        "summary": "2 customers: Ana 20.10, Rui 17.10",
    }
    given = json.dumps({"orders": [{"customer": "Eva", "amount": 3}]})
    done = ionflux(tmp_path, "run", "flows/order-totals.yaml", "--input", given, "--json")
    assert json.loads(done.stdout)["outputs"]["summary"] == "1 customers: Eva 3"
