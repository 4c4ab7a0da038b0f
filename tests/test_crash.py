"""Crash tests with real processes on PostgreSQL + Redis: a worker killed with SIGKILL mid-step, Redis restarted
mid-run, the database unreachable for seconds. Every run must complete with each step's result recorded once.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.core.state import RunStatus
from engine.runtime.config import RuntimeConfig
from engine.runtime.runtime import Runtime
from engine.store.tables import run_events, run_steps
from tests.runtime_helpers import EXTENSIONS, backend_config, flow
from tests.services import free_port, need
from tests.tcp_proxy import Proxy

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(180)


def worker_env(
    cfg: RuntimeConfig, tmp: Path, *, database_url: str | None = None, redis_url: str | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IONFLUX_")}
    env.update(
        IONFLUX_HOME=str(tmp / "home"),
        IONFLUX_DATABASE_URL=database_url or cfg.database_url,
        IONFLUX_REDIS_URL=redis_url or cfg.redis_url or "",
        IONFLUX_QUEUE_NAMESPACE=cfg.queue_namespace,
        IONFLUX_BLOB_DIR=str(cfg.blob_dir),
        IONFLUX_SECRET_KEY=cfg.secret_key.decode(),
        IONFLUX_EXTENSIONS=",".join(EXTENSIONS),
        IONFLUX_HEARTBEAT_SECONDS="0.2",
        IONFLUX_DEAD_AFTER_SECONDS="1.5",
        IONFLUX_REQUEUE_AFTER_SECONDS="1.5",
        PYTHONPATH=str(ROOT),
    )
    return env


@contextmanager
def worker(env: dict[str, str], log: Path, processes: int = 1) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "api.cli", "worker", "--threads", "2", "--processes", str(processes)]
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=out)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def succeeded_events(runtime: Runtime, run_id: str) -> list[str]:
    with runtime.db.begin() as conn:
        rows = conn.execute(
            sa.select(run_events.c.data).where(run_events.c.run_id == run_id, run_events.c.kind == "step_succeeded")
        )
        return sorted(data["key"] for (data,) in rows)


def final_statuses(runtime: Runtime, run_id: str) -> dict[str, str]:
    with runtime.db.begin() as conn:
        rows = conn.execute(sa.select(run_steps.c.key, run_steps.c.status).where(run_steps.c.run_id == run_id))
        return {str(row.key): str(row.status) for row in rows}


@pytest.fixture
def scale(tmp_path: Path) -> Iterator[RuntimeConfig]:
    with backend_config("postgres+redis", tmp_path) as cfg:
        yield cfg


def test_worker_killed_mid_step_the_run_completes_with_each_result_recorded_once(
    scale: RuntimeConfig, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    journal.touch()
    text = f"""
    fluxgraph: 1
    id: crashy
    nodes:
      - id: first
        type: test.sleep
        with: {{seconds: 0.05, journal: "{journal}"}}
      - id: long
        type: test.sleep
        needs: [first]
        with: {{seconds: 2, journal: "{journal}"}}
      - id: last
        type: data.set
        needs: [long]
        with: {{done: "{{{{ nodes.long.output.slept }}}}"}}
    """
    env = worker_env(scale, tmp_path)
    with Runtime(scale, extension_modules=EXTENSIONS) as runtime:
        _, version = runtime.orchestrator.save_flow(flow(text), "crashy.yaml")
        with worker(env, tmp_path / "worker1.log") as doomed:
            run_id = runtime.orchestrator.start_run(version)
            wait_for(lambda: "long 1 start" in journal.read_text(), 30, "the long step to start")
            doomed.send_signal(signal.SIGKILL)  # no goodbye, no ack, the step half done
            doomed.wait(10)
        assert runtime.status(run_id) is RunStatus.RUNNING
        with worker(env, tmp_path / "worker2.log", processes=2):  # two processes share the recovery
            assert runtime.wait(run_id, 60, poll=0.1) is RunStatus.SUCCEEDED
        assert succeeded_events(runtime, run_id) == ["first", "last", "long"]
        assert final_statuses(runtime, run_id) == {"first": "succeeded", "long": "succeeded", "last": "succeeded"}
        lines = journal.read_text().splitlines()
        assert lines.count("long 1 start") == 2 and lines.count("long 1 end") == 1  # ran again, recorded once


def test_redis_restarted_mid_run_the_run_completes(scale: RuntimeConfig, tmp_path: Path) -> None:
    server = shutil.which("redis-server")
    if server is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is needed for this test in CI")
        pytest.skip("redis-server is not installed")
    port = free_port()
    own_redis = f"redis://127.0.0.1:{port}/0"
    command = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]

    def start_redis() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path)
        wait_for(lambda: _reachable(port), 10, "redis-server to listen")
        return process

    journal = tmp_path / "journal"
    journal.touch()
    text = (
        f"""
    fluxgraph: 1
    id: fan-out
    nodes:
      - id: start
        type: test.sleep
        with: {{seconds: 1.0, journal: "{journal}"}}
    """
        + "".join(
            f"""
      - id: branch{i}
        type: test.sleep
        needs: [start]
        with: {{seconds: 0.2, value: {i}}}"""
            for i in range(4)
        )
        + """
      - id: join
        type: data.set
        needs: [branch0, branch1, branch2, branch3]
        with: {all: "{{ [nodes.branch0.output.value, nodes.branch3.output.value] }}"}
    """
    )
    cfg = replace(scale, redis_url=own_redis)
    redis_process = start_redis()
    try:
        with (
            Runtime(cfg, extension_modules=EXTENSIONS) as runtime,
            worker(worker_env(cfg, tmp_path), tmp_path / "w.log"),
        ):
            _, version = runtime.orchestrator.save_flow(flow(text), "fan-out.yaml")
            run_id = runtime.orchestrator.start_run(version)
            wait_for(lambda: "start 1 start" in journal.read_text(), 30, "the first step to run")
            redis_process.kill()  # the branches' doorbells (rung when `start` ends) ring into nothing
            redis_process.wait(10)
            time.sleep(1.5)
            redis_process = start_redis()  # an empty Redis: every queued message is gone
            assert runtime.wait(run_id, 60, poll=0.1) is RunStatus.SUCCEEDED
            assert succeeded_events(runtime, run_id) == sorted(["start", "join", *(f"branch{i}" for i in range(4))])
    finally:
        redis_process.kill()
        redis_process.wait(10)


def test_database_unreachable_for_seconds_workers_recover_without_losing_runs(
    scale: RuntimeConfig, tmp_path: Path
) -> None:
    need("127.0.0.1", 5432, "PostgreSQL")
    proxy = Proxy(("127.0.0.1", 5432))
    via_proxy = scale.database_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    nodes = "".join(
        f"""
      - id: s{i}
        type: test.sleep
        {f"needs: [s{i - 1}]" if i else ""}
        with: {{seconds: 0.3, value: {i}}}"""
        for i in range(8)
    )
    text = "fluxgraph: 1\nid: steady\nnodes:" + nodes + '\noutputs:\n  last: "{{ nodes.s7.output.value }}"\n'
    try:
        with (
            Runtime(scale, extension_modules=EXTENSIONS) as runtime,
            worker(worker_env(scale, tmp_path, database_url=via_proxy), tmp_path / "w.log"),
        ):
            _, version = runtime.orchestrator.save_flow(text, "steady.yaml")
            run_id = runtime.orchestrator.start_run(version)
            wait_for(lambda: final_statuses(runtime, run_id).get("s1") == "succeeded", 30, "two steps to finish")
            proxy.cut()  # the database is gone for the worker: connections reset, new ones refused
            time.sleep(3)
            proxy.restore()
            status = runtime.wait(run_id, 90, poll=0.1)
            log_tail = (tmp_path / "w.log").read_text(errors="replace")[-4000:]
            assert status is RunStatus.SUCCEEDED, (
                f"{status}; steps {final_statuses(runtime, run_id)}; worker log:\n{log_tail}"
            )
            assert succeeded_events(runtime, run_id) == sorted(f"s{i}" for i in range(8))
            summary = runtime.orchestrator.state(run_id)
            assert summary.outputs == {"last": 7}
    finally:
        proxy.cut()


def _reachable(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False
