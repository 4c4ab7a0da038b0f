"""Prefect 3 side of the per-step orchestration-overhead benchmark.

Run with the interpreter of the isolated venv made by ``bench/prefect_env.sh`` (NOT the project's environment)::

    PY="$(bash bench/prefect_env.sh | tail -n 1)"
    "$PY" bench/prefect_side.py --runs 5 --json

The script starts its own throw-away Prefect server (fresh PREFECT_HOME, free loopback port), runs two workloads of
sequential tasks, and reports per-task orchestration overhead:

    overhead per task = (wall time around the flow call - sum of task body times) / number of tasks

It deliberately imports nothing from the project: only the standard library and prefect. With ``--json`` the last
line of stdout is a single JSON object; everything else (our logs, Prefect's logs, the server's output) goes to stderr
or to the server log file.

Things that dominate the numbers with Prefect 3.8.8's defaults (worth knowing when comparing engines):
- each flow call joins a heartbeat thread that sleeps in 1 s steps, so a flow's wall time is rounded up to roughly the
  next whole second after its start (an empty flow costs ~1.1 s); this fixed cost is amortised over the tasks;
- the local server uses SQLite; when flows run back to back, its background services are still writing the previous
  run's task events and creating the next flow run can fail with "database is locked", answered as HTTP 503 and
  retried by the client after ~2 s (jittered). ``--pause-s`` inserts an untimed pause to avoid that.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

SERVER_START_TIMEOUT_S = 120.0
SERVER_STOP_TIMEOUT_S = 20.0
DEFAULT_TOTAL_TIMEOUT_S = 570  # keep the whole script under ~10 min, leaving room for server shutdown


def log(msg: str) -> None:
    print(f"[prefect_side] {msg}", file=sys.stderr, flush=True)


def fibo(n: int) -> int:
    """Deliberately naive recursive Fibonacci: a pure-CPU body of tunable size."""
    return n if n < 2 else fibo(n - 1) + fibo(n - 2)


@dataclass(frozen=True)
class Workload:
    name: str
    n_tasks: int
    fibo_n: int


WORKLOADS: tuple[Workload, ...] = (
    Workload(name="40x fibo(10)", n_tasks=40, fibo_n=10),
    Workload(name="10x fibo(33)", n_tasks=10, fibo_n=33),
)


@dataclass(frozen=True)
class RunResult:
    wall_s: float
    body_s: float
    n_tasks: int

    @property
    def overhead_ms_per_task(self) -> float:
        return (self.wall_s - self.body_s) / self.n_tasks * 1000.0


class BenchTimeout(Exception):
    """Raised from the SIGALRM handler when the global time budget is exhausted."""


# --------------------------------------------------------------------------------------------------------------------
# Local Prefect server
# --------------------------------------------------------------------------------------------------------------------


def free_loopback_port() -> int:
    # Small race (the port could be taken between close() and the server's bind), acceptable for a benchmark.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def prefect_env(home: Path, api_url: str) -> dict[str, str]:
    """Environment shared by the server subprocess and this (client) process."""
    return {
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api_url,
        # A stray profile/.env of the user must not redirect us to Prefect Cloud or another server.
        "PREFECT_PROFILES_PATH": str(home / "profiles.toml"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # Client-side SDK telemetry (amplitude) honours the DO_NOT_TRACK convention.
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_UI_ENABLED": "false",
    }


def wait_healthy(api_url: str, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    url = f"{api_url}/health"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"prefect server exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2.0) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"prefect server not healthy at {url} after {timeout_s:.0f}s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    # The server was started in its own session, so its process group holds only what it spawned (uvicorn etc.).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=SERVER_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        log("server did not stop on SIGTERM, sending SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=SERVER_STOP_TIMEOUT_S)


def tail(path: Path, n_lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n_lines:])
    except OSError:
        return "<no server log>"


@contextlib.contextmanager
def local_prefect_server() -> Iterator[str]:
    """Start a throw-away Prefect server and point this process at it; yields the API URL. Always cleans up."""
    home = Path(tempfile.mkdtemp(prefix="prefect-bench-"))
    port = free_loopback_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = prefect_env(home, api_url)
    # Must be in os.environ before prefect is first imported: its settings are read from the environment then.
    os.environ.update(env)
    server_log_path = home / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "prefect",
        "server",
        "start",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--analytics-off",
        "--no-ui",
    ]
    log(f"starting prefect server on {api_url} (PREFECT_HOME={home}, log: {server_log_path})")
    with server_log_path.open("wb") as server_log:
        proc = subprocess.Popen(
            cmd,
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        started = time.perf_counter()
        try:
            wait_healthy(api_url, proc, SERVER_START_TIMEOUT_S)
        except Exception:
            log(f"server failed to start; last lines of its log:\n{tail(server_log_path)}")
            raise
        log(f"server healthy after {time.perf_counter() - started:.1f}s")
        yield api_url
    finally:
        log("stopping prefect server")
        stop_server(proc)
        shutil.rmtree(home, ignore_errors=True)


# --------------------------------------------------------------------------------------------------------------------
# Benchmark
# --------------------------------------------------------------------------------------------------------------------


def build_flows() -> dict[str, Callable[[], list[float]]]:
    """Define the Prefect task and flows. Imports prefect lazily so that the environment is already set up."""
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE

    # Caching is switched off explicitly: the same fibo(n) is called many times per flow run, and a cache hit would
    # skip the body and measure something else than per-step orchestration.
    @task(cache_policy=NO_CACHE, persist_result=False)
    def fibo_task(n: int) -> tuple[int, float]:
        started = time.perf_counter()
        value = fibo(n)
        return value, time.perf_counter() - started

    def make_flow(workload: Workload) -> Callable[[], list[float]]:
        @flow(name=f"bench-{workload.n_tasks}x-fibo-{workload.fibo_n}", persist_result=False, log_prints=False)
        def sequential_flow() -> list[float]:
            body_times: list[float] = []
            for _ in range(workload.n_tasks):
                # A direct call blocks until the task finished: each step waits for the previous one.
                _value, body_s = fibo_task(workload.fibo_n)
                body_times.append(body_s)
            return body_times

        return sequential_flow

    return {w.name: make_flow(w) for w in WORKLOADS}


def run_once(flow_fn: Callable[[], list[float]], workload: Workload) -> RunResult:
    started = time.perf_counter()
    body_times = flow_fn()
    wall_s = time.perf_counter() - started
    if len(body_times) != workload.n_tasks:
        raise RuntimeError(f"{workload.name}: expected {workload.n_tasks} task results, got {len(body_times)}")
    return RunResult(wall_s=wall_s, body_s=sum(body_times), n_tasks=workload.n_tasks)


def bench_workload(flow_fn: Callable[[], list[float]], workload: Workload, runs: int, pause_s: float) -> dict[str, Any]:
    log(f"{workload.name}: warm-up run")
    run_once(flow_fn, workload)
    results: list[RunResult] = []
    for i in range(runs):
        # Optional untimed pause: lets the server's background services (task-run recorder, event persister) catch up,
        # otherwise the next flow-run creation may hit SQLite "database is locked" -> HTTP 503 -> ~2 s client retry.
        time.sleep(pause_s)
        result = run_once(flow_fn, workload)
        results.append(result)
        log(
            f"{workload.name}: run {i + 1}/{runs}: wall={result.wall_s:.3f}s body={result.body_s:.3f}s "
            f"overhead={result.overhead_ms_per_task:.2f} ms/task"
        )
    overheads = [r.overhead_ms_per_task for r in results]
    return {
        "overhead_ms_median": statistics.median(overheads),
        "overhead_ms_runs": overheads,
        "wall_s_median": statistics.median(r.wall_s for r in results),
        "wall_s_runs": [r.wall_s for r in results],
        "body_s_median": statistics.median(r.body_s for r in results),
        "n_tasks": workload.n_tasks,
    }


def drain_client_workers(timeout_s: float = 10.0) -> None:
    """Flush Prefect's background log/event senders while the server is still up.

    Otherwise they are drained at interpreter exit, after the server is gone, and keep retrying against a dead
    endpoint ("Error logging to API ... All connection attempts failed"), which also delays the exit considerably.
    """
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    started = time.perf_counter()
    for worker_cls in (APILogWorker, EventsWorker):
        try:
            worker_cls.drain_all(timeout=timeout_s, at_exit=False)
        except Exception as exc:  # best effort: a failed flush must not hide the benchmark result
            log(f"draining {worker_cls.__name__} failed: {exc!r}")
    log(f"client workers drained in {time.perf_counter() - started:.1f}s")


def run_benchmark(runs: int, pause_s: float) -> dict[str, Any]:
    with local_prefect_server():
        import prefect

        flows = build_flows()
        report: dict[str, Any] = {
            "prefect_version": prefect.__version__,
            "runs": runs,
            "pause_s": pause_s,
            "workloads": {},
        }
        try:
            for workload in WORKLOADS:
                report["workloads"][workload.name] = bench_workload(flows[workload.name], workload, runs, pause_s)
        finally:
            drain_client_workers()
        return report


# --------------------------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="timed runs per workload (plus one untimed warm-up)")
    parser.add_argument("--json", action="store_true", help="print a single JSON object as the last stdout line")
    parser.add_argument(
        "--pause-s",
        type=float,
        default=0.0,
        help="untimed sleep before each timed run (default: %(default)s, i.e. back-to-back runs)",
    )
    parser.add_argument(
        "--timeout",
        type=int,
        default=DEFAULT_TOTAL_TIMEOUT_S,
        help="global time budget in seconds (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    if args.pause_s < 0:
        parser.error("--pause-s must be >= 0")
    return args


def install_time_budget(seconds: int) -> None:
    def on_alarm(_signum: int, _frame: FrameType | None) -> None:
        raise BenchTimeout(f"time budget of {seconds}s exhausted")

    def on_term(signum: int, _frame: FrameType | None) -> None:
        # Turn SIGTERM into a normal exit so that the server's `finally` cleanup runs.
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGTERM, on_term)
    signal.alarm(seconds)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Keep a private handle on the real stdout, then point fd 1 at stderr: whatever Prefect (or anything else) prints
    # goes to stderr, and only our final result reaches stdout.
    result_out: TextIO = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    install_time_budget(args.timeout)
    started = time.perf_counter()
    try:
        report = run_benchmark(args.runs, args.pause_s)
    except BenchTimeout as exc:
        log(f"ERROR: {exc}; no result")
        return 2
    finally:
        signal.alarm(0)
    report["script_wall_s"] = round(time.perf_counter() - started, 3)
    if args.json:
        result_out.write(json.dumps(report) + "\n")
    else:
        result_out.write(f"prefect {report['prefect_version']}, {args.runs} runs per workload\n")
        for name, stats in report["workloads"].items():
            result_out.write(
                f"  {name:<14} overhead median {stats['overhead_ms_median']:8.2f} ms/task, "
                f"wall median {stats['wall_s_median']:.3f}s\n"
            )
    result_out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
