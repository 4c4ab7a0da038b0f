"""``ionflux eval heal``: the seeded failure suite for self-healing (``evals/heal/cases/*.yaml``).

Every case is a flow that really fails: against a loopback HTTP server the case scripts (statuses, bodies, delays,
a token it expects), in the WebAssembly sandbox, or in the engine itself (a budget, a secret that is not set).
For each case the harness runs the flow in a fresh embedded runtime, checks that it failed, asks for a healing
(``copilot.healing.heal``: the rules, or a model), and scores:

- **diagnosed**: the cause is the one the case expects;
- **verified**: a fix was proposed and its replay of the failed step on the recorded input succeeded;
- **resumed**: the verified fix was applied and the run went on from the failed step to success;
- **upstream repeated**: HTTP requests to the case's upstream paths made again by the resume (must be 0).

A case file::

    cause: transient              # the expected diagnosis
    fixable: true                 # the rules alone should fix it (documentation; the score is what happens)
    upstream: [/orders]           # paths the steps before the failed one call (counted across the resume)
    server:                       # path -> responses served in order, the last one repeated
      /orders: [{status: 200, json: {orders: [1, 2]}}]
      /report: [{status: 503}, {status: 200, json: {ok: true}}]
    secrets: {api_token: wrong}
    input: {}
    flow: |                       # $SERVER: the server's base URL, $HOST: its host:port, $CLOSED: a dead port
      fluxgraph: 1
      ...
"""

from __future__ import annotations

import contextlib
import json
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from copilot.healing import Healing, apply, heal
from copilot.structured import ModelChoice
from engine.dsl.issue import FlowValidationError
from engine.errors import IonfluxError
from engine.runtime.config import RuntimeConfig
from engine.runtime.runtime import Runtime
from engine.runtime.secrets import new_key
from engine.store.db import sqlite_url

CASES = Path(__file__).resolve().parent / "heal" / "cases"
RUN_SECONDS = 30.0  # a case's run (and its resume) must settle within this


@dataclass(frozen=True)
class Case:
    id: str
    cause: str
    flow: str
    fixable: bool = False
    upstream: tuple[str, ...] = ()
    server: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)
    input: Any = None
    model_fix: Any = None  # what a scripted model answers for this case (an EditPlan), in tests


@dataclass
class Outcome:
    case: str
    expected: str
    cause: str = ""
    diagnosed: bool = False
    proposed: bool = False
    verified: bool = False
    resumed: bool = False
    upstream_repeated: int = 0
    final_status: str = ""
    by: str = ""
    note: str = ""
    seconds: float = 0.0


def load_cases(folder: Path = CASES) -> list[Case]:
    cases = []
    for path in sorted(folder.glob("*.yaml")):
        data = yaml.safe_load(path.read_text("utf-8"))
        cases.append(
            Case(
                id=path.stem,
                cause=str(data["cause"]),
                flow=str(data["flow"]),
                fixable=bool(data.get("fixable", False)),
                upstream=tuple(data.get("upstream") or ()),
                server=data.get("server") or {},
                secrets=data.get("secrets") or {},
                input=data.get("input"),
                model_fix=data.get("model_fix"),
            )
        )
    return cases


# --- the loopback server ------------------------------------------------------------------------------------------


class Upstream:
    """A loopback HTTP server answering each path with its scripted responses in order (the last one repeats),
    counting every request by path."""

    def __init__(self, routes: Mapping[str, list[dict[str, Any]]]) -> None:
        self.routes = {path: list(answers) for path, answers in routes.items()}
        self.served: dict[str, int] = {}
        self.lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                path = urlsplit(self.path).path
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                with upstream.lock:
                    count = upstream.served.get(path, 0)
                    upstream.served[path] = count + 1
                    answers = upstream.routes.get(path) or [{"status": 404, "json": {"error": "no such path"}}]
                    answer = answers[min(count, len(answers) - 1)]
                want = answer.get("expect_auth")
                status = int(answer.get("status", 200))
                if want is not None and self.headers.get("authorization") != want:
                    status = int(answer.get("auth_status", 401))
                    answer = {"json": {"error": "bad credentials"}}
                if answer.get("delay"):
                    time.sleep(float(answer["delay"]))
                body = json.dumps(answer["json"]).encode() if "json" in answer else str(answer.get("text", "")).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json" if "json" in answer else "text/plain")
                for name, value in (answer.get("headers") or {}).items():
                    self.send_header(name, str(value))
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                # the client may have given up (its timeout): that is what such a case tests
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            do_GET = do_POST = do_PUT = do_DELETE = _answer

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="heal-upstream", daemon=True)

    def count(self, paths: tuple[str, ...]) -> int:
        with self.lock:
            return sum(self.served.get(p, 0) for p in paths)

    def __enter__(self) -> Upstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def closed_address() -> str:
    """A loopback address where nothing listens (a port just bound and released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def _placed(value: Any, url: str) -> Any:
    if isinstance(value, str):
        return value.replace("$SERVER", url)
    if isinstance(value, dict):
        return {k: _placed(v, url) for k, v in value.items()}
    if isinstance(value, list):
        return [_placed(v, url) for v in value]
    return value


@contextmanager
def case_runtime(folder: Path) -> Iterator[Runtime]:
    """A fresh embedded runtime (SQLite, in-process queue) that may reach loopback servers."""
    config = RuntimeConfig(
        database_url=sqlite_url(folder / "ionflux.db"),
        blob_dir=folder / "blobs",
        secret_key=new_key(),
        worker_threads=2,
        tick_seconds=0.05,
        http_allow_networks=("127.0.0.1/32",),
        http_timeout_seconds=10.0,
    )
    with Runtime(config) as runtime:
        runtime.start()
        yield runtime


# --- one case ---------------------------------------------------------------------------------------------------

Healer = Callable[[Runtime, str, Case, str], Healing]  # (runtime, failed run, its case, the server's URL)


def rules_healer(runtime: Runtime, run_id: str, case: Case, server: str) -> Healing:
    return heal(runtime.orchestrator, run_id)


def model_healer(choice: ModelChoice, aliases: tuple[str, ...] = ("default",)) -> Healer:
    def healer(runtime: Runtime, run_id: str, case: Case, server: str) -> Healing:
        return heal(runtime.orchestrator, run_id, model=choice, aliases=aliases)

    return healer


def run_case(case: Case, healer: Healer = rules_healer) -> Outcome:
    started = time.monotonic()
    outcome = Outcome(case.id, case.cause)
    with (
        tempfile.TemporaryDirectory(prefix=f"heal-{case.id}-") as tmp,
        Upstream(case.server) as server,
        case_runtime(Path(tmp)) as runtime,
    ):
        _run(case, runtime, server, healer, outcome)
    outcome.seconds = time.monotonic() - started
    return outcome


def _run(case: Case, runtime: Runtime, server: Upstream, healer: Healer, outcome: Outcome) -> None:
    orchestrator = runtime.orchestrator
    for name, value in case.secrets.items():
        orchestrator.secrets.set(name, value)
    text = (
        case.flow.replace("$SERVER", server.url)
        .replace("$HOST", server.url.removeprefix("http://"))
        .replace("$CLOSED", closed_address())
    )
    try:
        _, version = orchestrator.save_flow(text, f"{case.id}.yaml")
    except (FlowValidationError, IonfluxError) as e:
        outcome.note = f"the case's flow does not validate: {e}"
        return
    run_id = orchestrator.start_run(version, _placed(case.input, server.url))
    status = str(runtime.wait(run_id, RUN_SECONDS))
    outcome.final_status = status
    if status != "failed":
        outcome.note = f"the flow did not fail (it is {status}): the case is broken"
        return
    healing = healer(runtime, run_id, case, server.url)
    outcome.cause = healing.diagnosis.cause
    outcome.by = healing.diagnosis.by
    outcome.diagnosed = healing.diagnosis.cause == case.cause
    outcome.proposed = healing.after is not None
    outcome.verified = healing.verified
    outcome.note = healing.verification.describe() if healing.verification else healing.problems
    if healing.verified:
        before = server.count(case.upstream)
        apply(orchestrator, healing)
        outcome.final_status = str(runtime.wait(run_id, RUN_SECONDS))
        outcome.resumed = outcome.final_status == "succeeded"
        outcome.upstream_repeated = server.count(case.upstream) - before


# --- the report -------------------------------------------------------------------------------------------------


def evaluate(cases: list[Case], healer: Healer = rules_healer, planner: str = "rules") -> dict[str, Any]:
    outcomes = [run_case(case, healer) for case in cases]
    n = len(outcomes) or 1
    return {
        "set": "heal",
        "planner": planner,
        "cases": len(outcomes),
        "metrics": {
            "diagnosis_accuracy": round(100 * sum(o.diagnosed for o in outcomes) / n, 1),
            "fixes_verified_by_replay": round(100 * sum(o.verified for o in outcomes) / n, 1),
            "runs_resumed_to_success": round(100 * sum(o.resumed for o in outcomes) / n, 1),
            "upstream_calls_repeated": sum(o.upstream_repeated for o in outcomes),
            "seconds_per_case_p50": round(sorted(o.seconds for o in outcomes)[len(outcomes) // 2], 2)
            if outcomes
            else 0.0,
        },
        "records": [o.__dict__ for o in outcomes],
    }


def table(report: dict[str, Any]) -> str:
    lines = [f"heal · {report['cases']} failing flows · planner {report['planner']}", ""]
    units = {"upstream_calls_repeated": "", "seconds_per_case_p50": " s"}
    for name, value in report["metrics"].items():
        unit = units.get(name, " %")
        lines.append(f"{name:<28} {value}{unit}")
    lines.append("")
    lines.append(f"{'case':<30} {'expected':<17} {'diagnosed':<17} verified resumed  note")
    for r in report["records"]:
        mark = "" if r["diagnosed"] else " ✗"
        lines.append(
            f"{r['case']:<30} {r['expected']:<17} {r['cause'] + mark:<17} {'yes' if r['verified'] else 'no':<8} "
            f"{'yes' if r['resumed'] else 'no':<8} {r['note'][:70]}"
        )
    return "\n".join(lines)
