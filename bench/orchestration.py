"""Orchestration overhead per step: the sequential workload of the Windmill engine benchmark, side by side with
Prefect 3, plus foreach scaling.

    uv run python -m bench.orchestration            # embedded, PostgreSQL + Redis, Prefect, foreach 1k/10k
    uv run python -m bench.orchestration --no-prefect --modes embedded --foreach 1000

Workloads: 40 sequential steps of ``fibo(10)`` and 10 of ``fibo(33)``, as FluxGraph flows whose steps are the
benchmark node type ``bench.fibo`` (bench/fibo.py, loaded as an extension). Overhead per step = (wall time of the
run, from start request to recorded completion − the sum of the step bodies' own time) / steps; every step is
durably recorded (event + step row committed) before the next starts. The median of ``--runs`` runs is reported,
after one warm-up run. Prefect runs the same bodies as Prefect tasks against its own local server
(bench/prefect_side.py, in its own virtualenv made by bench/prefect_env.sh), in the same command.

The same 40 × ``fibo(10)`` also runs inside the sandbox: as ``code.python`` steps (the body in CPython-on-wasm)
and as ``wasm.run`` steps (bench/fibo_wasm.c, built with zig); each body reports its own time from inside the
sandbox, so their overhead includes what the sandbox costs per step (a fresh instance, JSON in and out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import sqlalchemy as sa

from engine.core.state import RunStatus
from engine.runtime.config import RuntimeConfig
from engine.runtime.runtime import Runtime
from engine.runtime.secrets import new_key
from engine.store.db import sqlite_url

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = {"40x fibo(10)": (40, 10), "10x fibo(33)": (10, 33)}
PG_ADMIN = os.environ.get("IONFLUX_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("IONFLUX_BENCH_REDIS", "redis://127.0.0.1:6379/0")


# the same task body inside the sandbox: (node type, its `with` for n), each reporting its own body time
PYTHON_FIBO = (
    "import time\n"
    "def fibo(k):\n    return k if k < 2 else fibo(k - 1) + fibo(k - 2)\n"
    "def main(n):\n    started = time.perf_counter()\n    value = fibo(n)\n"
    "    return {'value': value, 'body_s': time.perf_counter() - started}\n"
)
SANDBOXED = {
    "code.python": lambda n: {"input": n, "code": PYTHON_FIBO},
    "wasm.run": lambda n: {"module": "bench-fibo@1.0.0", "input": n},
}
SANDBOXED_WORKLOADS = {
    "40x fibo(10), code.python": ("code.python", 40, 10),
    "40x fibo(10), wasm.run": ("wasm.run", 40, 10),
}


def chain_flow(steps: int, n: int, node_type: str = "bench.fibo") -> str:
    slug = node_type.replace(".", "-")
    lines = ["fluxgraph: 1", f"id: bench-{slug}-{steps}x{n}", "nodes:"]
    for i in range(steps):
        body = json.dumps(SANDBOXED[node_type](n)) if node_type in SANDBOXED else f"{{n: {n}}}"  # JSON is YAML
        lines += [f"  - id: f{i}", f"    type: {node_type}", f"    with: {body}"]
        if i:
            lines.append(f"    needs: [f{i - 1}]")
    return "\n".join(lines) + "\n"


def fibo_module() -> bytes:
    """bench/fibo_wasm.c built for wasm32-wasi with zig (as scripts/build-transforms builds)."""
    out = Path(tempfile.gettempdir()) / "ionflux-bench-fibo.wasm"
    source = ROOT / "bench" / "fibo_wasm.c"
    if not out.exists() or out.stat().st_mtime < source.stat().st_mtime:
        flags = ["-Os", "-s", "-Wl,-z,stack-size=65536", "-Wl,--initial-memory=262144"]
        command = [sys.executable, "-m", "ziglang", "cc", "-target", "wasm32-wasi", *flags, "-o", str(out)]
        subprocess.run([*command, str(source)], check=True, capture_output=True, timeout=300)
    return out.read_bytes()


def foreach_flow(items: int) -> str:
    return (
        "fluxgraph: 1\nid: bench-foreach\nnodes:\n  - id: each\n    type: foreach\n"
        f'    items: "{{{{ range({items}) | list }}}}"\n    concurrency: 10\n    do:\n'
        '      - id: body\n        type: data.set\n        with: {i: "{{ item }}"}\n'
        'outputs:\n  count: "{{ nodes.each.output | length }}"\n'
    )


@contextmanager
def mode_config(mode: str, tmp: Path) -> Iterator[RuntimeConfig]:
    base: dict[str, Any] = {"blob_dir": tmp / "blobs", "secret_key": new_key(), "worker_threads": 4}
    if mode == "embedded":
        yield RuntimeConfig(database_url=sqlite_url(tmp / f"{uuid.uuid4().hex}.db"), **base)
        return
    name = f"ionflux_bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    namespace = f"ionflux-bench-{uuid.uuid4().hex[:8]}"
    try:
        url = PG_ADMIN.rsplit("/", 1)[0] + "/" + name
        yield RuntimeConfig(database_url=url, redis_url=REDIS, queue_namespace=namespace, **base)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
        client = redis.Redis.from_url(REDIS)
        keys = list(client.scan_iter(f"{namespace}*"))
        if keys:
            client.delete(*keys)
        client.close()


def timed_run(runtime: Runtime, version: str, timeout: float = 600.0) -> tuple[float, float]:
    """-> (wall seconds from start request to recorded completion, sum of step body seconds)."""
    started = time.perf_counter()
    run_id = runtime.orchestrator.start_run(version)
    status = runtime.wait(run_id, timeout)
    wall = time.perf_counter() - started
    if status is not RunStatus.SUCCEEDED:
        raise RuntimeError(f"benchmark run {run_id} ended {status}")
    state = runtime.orchestrator.state(run_id)
    body = sum(float(step.output.get("body_s", 0.0)) for step in state.steps.values() if isinstance(step.output, dict))
    return wall, body


def measure_mode(mode: str, runs: int, foreach_sizes: list[int]) -> dict[str, Any]:
    results: dict[str, Any] = {"workloads": {}, "foreach": {}}
    with (
        tempfile.TemporaryDirectory() as tmp,
        mode_config(mode, Path(tmp)) as cfg,
        Runtime(cfg, extension_modules=("bench.fibo",)) as runtime,
    ):
        runtime.modules.register(fibo_module(), {"name": "bench-fibo", "version": "1.0.0"}, datetime.now(UTC))
        runtime.start()
        workloads = {label: ("bench.fibo", steps, n) for label, (steps, n) in WORKLOADS.items()}
        for label, (node_type, steps, n) in (workloads | SANDBOXED_WORKLOADS).items():
            _, version = runtime.orchestrator.save_flow(chain_flow(steps, n, node_type), f"{label}.yaml")
            timed_run(runtime, version)  # warm-up: plans compiled, connections open
            overheads, walls = [], []
            for _ in range(runs):
                wall, body = timed_run(runtime, version)
                walls.append(wall)
                overheads.append((wall - body) / steps * 1000)
            results["workloads"][label] = {
                "overhead_ms_median": round(statistics.median(overheads), 3),
                "overhead_ms_runs": [round(x, 3) for x in overheads],
                "wall_s_median": round(statistics.median(walls), 4),
            }
            print(f"  {mode:>15} {label:>13}: {statistics.median(overheads):7.3f} ms/step overhead", file=sys.stderr)
        for size in foreach_sizes:
            _, version = runtime.orchestrator.save_flow(foreach_flow(size), f"foreach-{size}.yaml")
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            wall, _ = timed_run(runtime, version, timeout=3600)
            rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            results["foreach"][str(size)] = {
                "wall_s": round(wall, 3),
                "ms_per_item": round(wall / size * 1000, 3),
                "peak_rss_growth_mib": round((rss_after - rss_before) / 1024, 1),
            }
            print(f"  {mode:>15} foreach {size:>6}: {wall / size * 1000:7.3f} ms/item", file=sys.stderr)
    return results


def prefect(runs: int) -> dict[str, Any] | None:
    env_script = ROOT / "bench" / "prefect_env.sh"
    made = subprocess.run(["bash", str(env_script)], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        print(f"prefect: could not make its virtualenv:\n{made.stderr[-2000:]}", file=sys.stderr)
        return None
    python = made.stdout.strip().splitlines()[-1]
    done = subprocess.run(
        # --pause-s: an idle gap before each timed flow (outside the timing), so Prefect's SQLite server has
        # finished writing the previous run's events; back to back, its "database is locked" retries add ~2 s
        [python, str(ROOT / "bench" / "prefect_side.py"), "--runs", str(runs), "--json", "--pause-s", "3"],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    if done.returncode != 0:
        print(f"prefect: the benchmark failed:\n{done.stderr[-3000:]}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--modes", default="embedded,postgres+redis")
    parser.add_argument("--foreach", default="1000,10000", help="foreach sizes to time ('' for none)")
    parser.add_argument("--no-prefect", action="store_true")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.foreach.split(",") if s.strip()]
    report: dict[str, Any] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "runs": args.runs,
        "ionflux": {},
    }
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        report["ionflux"][mode] = measure_mode(mode, args.runs, sizes)
    if not args.no_prefect:
        report["prefect"] = prefect(args.runs)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"orchestration overhead per step (median of {args.runs} runs; {report['machine']})")
    header = f"{'workload':<28}" + "".join(f"{m:>18}" for m in report["ionflux"]) + f"{'prefect 3':>14}"
    print(header)
    pf = (report.get("prefect") or {}).get("workloads", {})
    for label in [*WORKLOADS, *SANDBOXED_WORKLOADS]:
        cells = [report["ionflux"][m]["workloads"][label]["overhead_ms_median"] for m in report["ionflux"]]
        ref = pf.get(label, {}).get("overhead_ms_median")
        print(f"{label:<28}" + "".join(f"{c:>15.3f} ms" for c in cells) + (f"{ref:>11.3f} ms" if ref else f"{'-':>14}"))
        if ref:
            ratios = ", ".join(f"{m} {c / ref:.4f}" for m, c in zip(report["ionflux"], cells, strict=True))
            print(f"{'':<28}ratio ionflux / prefect: {ratios}")
    for mode, result in report["ionflux"].items():
        for size, row in result["foreach"].items():
            print(
                f"foreach {int(size):>6} items ({mode}): {row['ms_per_item']:.3f} ms/item, "
                f"{row['wall_s']:.2f} s, peak RSS +{row['peak_rss_growth_mib']} MiB"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
