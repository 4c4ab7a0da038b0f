"""``wasm.run`` with registered transforms: the registry (immutable versions, manifests checked, broken modules
refused at registration), runs through the engine on both backends, limits within the operator's maxima, and
the ``ionflux transform`` commands. The modules are the repository's examples (transforms/), built with zig."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from engine.runtime.modules import ModuleError, ModuleRegistry
from engine.steps.sandbox import Sandbox
from engine.store.db import make_engine, migrate, sqlite_url
from engine.store.tables import run_steps
from tests.cli_helpers import ionflux as cli
from tests.conftest import ROOT
from tests.runtime_helpers import BACKENDS, flow, running

EXAMPLES = ROOT / "transforms"
NOW = datetime(2026, 11, 24, tzinfo=UTC)
ZIG_CC = (sys.executable, "-m", "ziglang", "cc", "-target", "wasm32-wasi", "-Os", "-s")
SMALL_MEMORY = ("-Wl,-z,stack-size=65536", "-Wl,--initial-memory=262144")  # as scripts/build-transforms builds
ZIG_EXE: tuple[str, ...] = (sys.executable, "-m", "ziglang", "build-exe", "-target", "wasm32-wasi")
ZIG_EXE += ("-O", "ReleaseSmall", "-fstrip", "--stack", "65536", "--initial-memory=262144")


def _build(name: str, out_dir: Path) -> Path:
    """As scripts/build-transforms builds: C with zig cc, Zig with zig build-exe."""
    out = out_dir / f"{name}.wasm"
    source = EXAMPLES / name / f"{name}.c"
    if source.exists():
        command = [*ZIG_CC, *SMALL_MEMORY, "-o", str(out), str(source)]
    else:
        source = EXAMPLES / name / f"{name}.zig"
        command = [*ZIG_EXE, f"-femit-bin={out}", str(source)]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    return out


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("transforms")
    return {name: _build(name, out) for name in ("word-count", "fnv-hash", "slugify")}


def manifest(name: str) -> dict[str, Any]:
    import yaml

    data: dict[str, Any] = yaml.safe_load((EXAMPLES / name / "manifest.yaml").read_text())
    return data


@pytest.fixture
def registry(tmp_path: Path) -> Any:
    engine = make_engine(sqlite_url(tmp_path / "m.db"))
    migrate(engine)
    sandbox = Sandbox()
    yield ModuleRegistry(engine, sandbox)
    sandbox.close()
    engine.dispose()


def test_versions_are_immutable_and_reregistering_the_same_bytes_is_a_no_op(
    registry: ModuleRegistry, built: dict[str, Path]
) -> None:
    wasm = built["word-count"].read_bytes()
    info, new = registry.register(wasm, manifest("word-count"), NOW)
    assert new and info.ref == "word-count@1.0.0" and info.size == len(wasm)
    assert registry.register(wasm, manifest("word-count"), NOW)[1] is False
    with pytest.raises(ModuleError) as taken:
        registry.register(built["fnv-hash"].read_bytes(), manifest("word-count"), NOW)
    assert taken.value.code == "module.exists" and "new version" in taken.value.hint
    assert [m.ref for m in registry.list()] == ["word-count@1.0.0"]


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"version": "1.0"}, "version"),
        ({"name": "Word Count"}, "name"),
        ({"limits": {"fuel": 0}}, "limits.fuel"),
        ({"limits": {"cpu": 1}}, "limits.cpu"),
        ({"input_schema": {"type": "strong"}}, "input_schema is not a valid JSON Schema"),
    ],
)
def test_a_bad_manifest_is_refused_naming_the_field(
    registry: ModuleRegistry, built: dict[str, Path], change: dict[str, Any], words: str
) -> None:
    with pytest.raises(ModuleError) as refused:
        registry.register(built["word-count"].read_bytes(), {**manifest("word-count"), **change}, NOW)
    assert words in refused.value.message


def test_a_module_that_cannot_run_is_refused_at_registration(registry: ModuleRegistry) -> None:
    with pytest.raises(ModuleError) as refused:
        registry.register(b"\x00asm garbage", manifest("word-count"), NOW)
    assert "not valid WebAssembly" in refused.value.message and registry.list() == []


FLOW = """
fluxgraph: 1
id: count-words
inputs: {type: object, properties: {text: {type: string}}}
nodes:
  - id: count
    type: wasm.run
    with: {module: word-count@1.0.0, input: "{{ inputs.text }}"}
  - id: fingerprint
    type: wasm.run
    needs: [count]
    with: {module: fnv-hash@1.0.0, input: "{{ nodes.count.output }}"}
outputs:
  words: "{{ nodes.count.output.words }}"
  hash: "{{ nodes.fingerprint.output.fnv1a64 }}"
"""


def _register(rt: Any, built: dict[str, Path]) -> None:
    for name in ("word-count", "fnv-hash"):
        rt.modules.register(built[name].read_bytes(), manifest(name), NOW)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_flow_runs_registered_transforms_and_records_fuel(
    backend: str, tmp_path: Path, built: dict[str, Path]
) -> None:
    with running(backend, tmp_path) as rt:
        _register(rt, built)
        _, version = rt.orchestrator.save_flow(flow(FLOW), "count-words.yaml")
        run_id = rt.orchestrator.start_run(version, {"text": "one two  three\nfour"})
        assert str(rt.wait(run_id, 30)) == "succeeded"
        with rt.db.connect() as conn:
            rows = dict(
                conn.execute(sa.select(run_steps.c.key, run_steps.c.usage).where(run_steps.c.run_id == run_id)).all()
            )
            outputs = conn.execute(sa.text("SELECT outputs FROM runs WHERE id = :id"), {"id": run_id}).scalar_one()
    outputs = json.loads(outputs) if isinstance(outputs, str) else outputs
    expected = hex_fnv1a64(json.dumps({"words": 4, "lines": 2, "chars": 19}, separators=(",", ":")).encode())
    assert outputs == {"words": 4, "hash": expected}
    assert rows["count"]["module"] == "word-count@1.0.0" and rows["count"]["fuel"] > 0


def hex_fnv1a64(data: bytes) -> str:
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) % 2**64
    return f"{value:016x}"


@pytest.mark.parametrize(
    ("with_", "permissions", "code", "words"),
    [
        ("{module: word-count@1.0.0, input: {not: text}}", "", "module.input_invalid", "is not of type 'string'"),
        ("{module: nothing@1.0.0, input: x}", "", "module.not_found", "no transform nothing@1.0.0"),
        (
            "{module: word-count@1.0.0, input: x}",
            "permissions: {fuel: 99000000000000}",
            "sandbox.limit_too_high",
            "fuel 99,000,000,000,000 is over the operator's maximum",
        ),
        ("{module: word-count@1.0.0, input: x}", "permissions: {fuel: 1000}", "sandbox.fuel_exhausted", "1,000 units"),
    ],
)
def test_step_failures_name_the_module_field_or_limit(
    tmp_path: Path, built: dict[str, Path], with_: str, permissions: str, code: str, words: str
) -> None:
    text = f"fluxgraph: 1\nid: bad\nnodes:\n  - id: t\n    type: wasm.run\n    with: {with_}\n    {permissions}\n"
    with running("embedded", tmp_path) as rt:
        _register(rt, built)
        _, version = rt.orchestrator.save_flow(flow(text), "bad.yaml")
        run_id = rt.orchestrator.start_run(version, None)
        assert str(rt.wait(run_id, 30)) == "failed"
        with rt.db.connect() as conn:
            error = conn.execute(sa.select(run_steps.c.error).where(run_steps.c.run_id == run_id)).scalar_one()
    assert error["code"] == code and words in error["message"], error


def test_the_transform_commands(tmp_path: Path, built: dict[str, Path]) -> None:
    def ionflux(*args: str) -> subprocess.CompletedProcess[str]:
        return cli(tmp_path, "transform", *args)

    manifest_file = str(EXAMPLES / "word-count" / "manifest.yaml")
    done = ionflux("register", str(built["word-count"]), "--manifest", manifest_file)
    assert done.returncode == 0 and "word-count@1.0.0 registered" in done.stdout, done.stdout + done.stderr
    listed = json.loads(ionflux("list", "--json").stdout)
    assert [m["module"] for m in listed] == ["word-count@1.0.0"]
    shown = json.loads(ionflux("show", "word-count@1.0.0").stdout)
    assert shown["manifest"]["input_schema"] == {"type": "string"}
    tested = ionflux("test", "word-count@1.0.0", "--input", '"a b c"')
    assert tested.returncode == 0 and json.loads(tested.stdout.split("\n}")[0] + "}") == {
        "words": 3,
        "lines": 1,
        "chars": 5,
    }
    refused = ionflux("test", "word-count@1.0.0", "--input", "[1]")
    assert refused.returncode == 5 and "error[module.input_invalid]" in refused.stdout


def test_the_zig_example_folds_accents_and_refuses_input_it_cannot_read(tmp_path: Path, built: dict[str, Path]) -> None:
    manifest_file = str(EXAMPLES / "slugify" / "manifest.yaml")
    done = cli(tmp_path, "transform", "register", str(built["slugify"]), "--manifest", manifest_file)
    assert done.returncode == 0, done.stdout + done.stderr
    for given, expected in [
        ('"Zoë\'s Café — 2026 menu"', {"slug": "zoes-cafe-2026-menu", "length": 19}),
        ('{"text": "  Hello,   World!!  ", "max_length": 8}', {"slug": "hello-wo", "length": 8}),
        ('"日本語 title"', {"slug": "title", "length": 5}),
    ]:
        tested = cli(tmp_path, "transform", "test", "slugify@1.0.0", "--input", given)
        assert tested.returncode == 0, tested.stdout + tested.stderr
        assert json.loads(tested.stdout.split("\n}")[0] + "}") == expected
    refused = cli(tmp_path, "transform", "test", "slugify@1.0.0", "--input", "42")
    assert refused.returncode == 5 and "error[module.input_invalid]" in refused.stdout
