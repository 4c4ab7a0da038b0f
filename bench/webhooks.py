"""Webhook intake: deliveries per second accepted without loss, with p50/p99 latency, over real loopback HTTP.

    uv run python -m bench.webhooks                       # embedded (SQLite) and PostgreSQL + Redis, 10 s each
    uv run python -m bench.webhooks --seconds 10 --clients 8 --modes embedded

For each mode: a runtime with its workers, the HTTP server on 127.0.0.1 (a free port), and a flow whose webhook
trigger checks a GitHub-style HMAC signature. In a separate process, ``--clients`` threads, each with a
keep-alive connection, post
signed JSON deliveries (each with its own delivery id) for ``--seconds`` seconds; every answer's latency is
measured from sending the request to reading the ``202``. Afterwards the bench checks that nothing was lost:
every 202 has its event in the trigger inbox and its run in the runs table (the runs themselves finish in the
workers, after the clock stops). Bounded in count (``--max-requests``) and time; loopback only.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

from api.app import create_app
from api.server import serve_in_thread
from bench.orchestration import mode_config
from engine.runtime.runtime import Runtime
from engine.store.tables import runs, trigger_inbox

SECRET = "bench-secret"
FLOW = """
fluxgraph: 1
id: bench-hook
secrets: [hook_key]
triggers:
  - type: webhook
    secret: hook_key
    signature: {header: X-Hub-Signature-256, algorithm: sha256, encoding: hex, prefix: "sha256="}
nodes:
  - {id: note, type: data.set, with: {order: "{{ trigger.body.order }}"}}
"""


def _client(base: str, url: str, stop_at: float, budget: list[int], lock: threading.Lock, out: list[float]) -> None:
    with httpx.Client(base_url=base, timeout=30) as client:
        while time.perf_counter() < stop_at:
            with lock:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
            body = json.dumps({"order": uuid.uuid4().hex}).encode()
            signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            headers = {
                "Content-Type": "application/json",
                "X-Hub-Signature-256": signature,
                "X-GitHub-Delivery": uuid.uuid4().hex,
            }
            started = time.perf_counter()
            answer = client.post(url, content=body, headers=headers)
            elapsed = time.perf_counter() - started
            if answer.status_code != 202:
                raise RuntimeError(f"delivery refused: {answer.status_code} {answer.text}")
            out.append(elapsed * 1000)


def _load(base: str, url: str, seconds: float, clients: int, max_requests: int) -> tuple[list[float], float]:
    """``clients`` sender threads for ``seconds`` (at most ``max_requests`` in all); -> (latencies ms, wall s)."""
    latencies: list[list[float]] = [[] for _ in range(clients)]
    budget, lock = [max_requests], threading.Lock()
    stop_at = time.perf_counter() + seconds
    started = time.perf_counter()
    threads = [threading.Thread(target=_client, args=(base, url, stop_at, budget, lock, out)) for out in latencies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=seconds + 60)
    return [ms for out in latencies for ms in out], time.perf_counter() - started


def measure(mode: str, seconds: float, clients: int, max_requests: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, mode_config(mode, Path(tmp)) as config, Runtime(config) as runtime:
        runtime.orchestrator.secrets.set("hook_key", SECRET)
        flow_id, version = runtime.orchestrator.save_flow(FLOW, "bench-hook.yaml")
        (hook,) = [t for t in runtime.triggers.activate(flow_id, version) if t.kind == "webhook"]
        runtime.start()
        server = serve_in_thread(create_app(runtime), "127.0.0.1:0")
        try:
            # the senders are another process: in this one they would compete with the server for the GIL
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                all_ms, wall = pool.apply(_load, (server.url, f"/hooks/{hook.token}", seconds, clients, max_requests))
        finally:
            server.stop()
        all_ms.sort()
        with runtime.db.connect() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(trigger_inbox)).scalar_one()
            started_runs = conn.execute(sa.select(sa.func.count()).select_from(runs)).scalar_one()
        if not all_ms:
            raise RuntimeError("no delivery was answered")
        return {
            "accepted": len(all_ms),
            "per_second": len(all_ms) / wall,
            "p50_ms": statistics.median(all_ms),
            "p99_ms": all_ms[min(len(all_ms) - 1, int(len(all_ms) * 0.99))],
            "stored": stored,
            "runs": started_runs,
            "wall_s": wall,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-requests", type=int, default=200_000)
    parser.add_argument("--modes", default="embedded,postgres+redis")
    args = parser.parse_args()
    print(f"machine: {sys.platform}, python {sys.version.split()[0]}; {args.clients} clients, {args.seconds:g} s")
    for mode in args.modes.split(","):
        r = measure(mode, args.seconds, args.clients, args.max_requests)
        lost = r["accepted"] - min(r["stored"], r["runs"])
        print(
            f"{mode:15s} {r['accepted']:>7,.0f} accepted in {r['wall_s']:.1f} s = {r['per_second']:,.0f}/s; "
            f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms; inbox {r['stored']:,.0f}, runs {r['runs']:,.0f}; "
            f"lost {lost:,.0f}"
        )
        if lost:
            raise SystemExit(f"{mode}: {lost} accepted deliveries have no stored event or run")


if __name__ == "__main__":
    main()
