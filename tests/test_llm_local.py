"""The LLM nodes end to end against a real local model: SmolLM2-135M behind llama-cpp-python's OpenAI-compatible
server (``scripts/local-llm setup`` installs both outside the checkout; CI runs it first).

The 135M model writes poor prose, so these tests check the pipeline (litellm's request, streaming, instructor's
tool call, the grammar-constrained JSON, usage accounting, the recorded run), not what the text means.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import sqlalchemy as sa

from engine.steps.llm import ModelRoute
from engine.store.tables import run_steps, runs
from tests.cli_helpers import ionflux
from tests.conftest import ROOT
from tests.runtime_helpers import flow, running
from tests.services import free_port


def _server_files() -> tuple[str, str] | None:
    found = subprocess.run(["bash", str(ROOT / "scripts" / "local-llm"), "path"], capture_output=True, text=True)
    if found.returncode != 0:
        return None
    python, model = found.stdout.split()
    return python, model


@pytest.fixture(scope="module")
def local_llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    files = _server_files()
    if files is None:
        message = "the local model is not set up (run scripts/local-llm setup)"
        if os.environ.get("CI"):
            pytest.fail(f"{message}, and CI needs it: .ci/run sets it up before the tests")
        pytest.skip(message)
    python, model = files
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"  # a file, not a pipe: llama.cpp logs a lot at load
    with log.open("wb") as sink:
        server = subprocess.Popen(
            [
                python,
                "-m",
                "llama_cpp.server",
                "--model",
                model,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--model_alias",
                "smollm2",
                "--n_ctx",
                "4096",  # Jules's prompts stay under 4k tokens; a repair adds the answer and the errors
                "--interrupt_requests",  # steps run in parallel; by default a new request cuts off a streaming one
                "False",
            ],
            stdout=subprocess.DEVNULL,
            stderr=sink,
        )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=2) as answer:
                    assert json.load(answer)["data"][0]["id"] == "smollm2"
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    server.kill()
                    pytest.fail(f"the llama.cpp server did not start: {log.read_text(errors='replace')[-2000:]}")
                time.sleep(0.2)
        yield base
    finally:
        _close_connections_to(port)
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()


def _close_connections_to(port: int) -> None:
    """litellm's HTTP clients keep idle keep-alive connections to the server for reuse, in pools we cannot all
    reach (cached and evicted clients): close the ones to the server being stopped, wherever they are."""
    import gc

    import httpcore

    for pool in [o for o in gc.get_objects() if isinstance(o, httpcore.ConnectionPool)]:
        for connection in list(pool.connections):
            if connection.can_handle_request(httpcore.URL(f"http://127.0.0.1:{port}/").origin):
                connection.close()


FLOW = """
fluxgraph: 1
id: local-triage
inputs:
  type: object
  properties: {ticket: {type: string}}
nodes:
  - id: reply
    type: llm.complete
    with:
      prompt: "Write one short sentence answering: {{ inputs.ticket }}"
      max_tokens: 24
      temperature: 0
      stream: true
  - id: fields
    type: llm.extract
    with:
      prompt: "Extract the customer's name and the number of items: {{ inputs.ticket }}"
      schema:
        type: object
        properties: {name: {type: string}, items: {type: integer}}
        required: [name, items]
      max_tokens: 64
  - id: kind
    type: llm.classify
    with: {input: "{{ inputs.ticket }}", labels: [billing, bug, question], max_tokens: 64}
outputs:
  reply: "{{ nodes.reply.output.text }}"
  fields: "{{ nodes.fields.output }}"
  kind: "{{ nodes.kind.output }}"
"""

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "items": {"type": "integer"}},
    "required": ["name", "items"],
}


def test_a_flow_runs_its_llm_steps_on_a_real_local_model(local_llm: str, tmp_path: Path) -> None:
    route = ModelRoute("openai/smollm2", api_base=local_llm, api_key="local")  # the server takes any key
    with running("embedded", tmp_path, llm_models={"default": route}) as rt:
        live: list[dict[str, Any]] = []
        rt.bus.subscribe("ionflux.runs.*.live", lambda m: live.append(json.loads(m.data)))
        _, version = rt.orchestrator.save_flow(flow(FLOW), "local-triage.yaml")
        ticket = "Hi, this is Maria. I ordered 3 lamps but was charged twice."
        run_id = rt.orchestrator.start_run(version, {"ticket": ticket})
        assert str(rt.wait(run_id, 240)) == "succeeded"
        with rt.db.connect() as conn:
            outputs = conn.execute(sa.select(runs.c.outputs).where(runs.c.id == run_id)).scalar_one()
            usage = dict(
                conn.execute(sa.select(run_steps.c.key, run_steps.c.usage).where(run_steps.c.run_id == run_id)).all()
            )
    assert isinstance(outputs["reply"], str) and outputs["reply"].strip()
    jsonschema.validate(outputs["fields"], SCHEMA)  # grammar-constrained tool call, validated again by us
    assert outputs["kind"]["label"] in ("billing", "bug", "question") and 0 <= outputs["kind"]["confidence"] <= 1
    tokens = "".join(e["text"] for e in live if e["kind"] == "llm.token" and e["key"] == "reply")
    assert tokens == outputs["reply"]  # what streamed live is what was recorded
    for key in ("reply", "fields", "kind"):
        assert usage[key]["model"] == "openai/smollm2" and usage[key]["alias"] == "default"
        assert usage[key]["prompt_tokens"] > 0 and usage[key]["completion_tokens"] > 0
        assert usage[key]["latency_ms"] > 0 and usage[key]["cost_cion"] == 0  # no price is known for a local model
    assert usage["reply"]["completion_tokens"] <= 24


def test_an_unknown_model_on_the_server_is_a_clear_failure(local_llm: str, tmp_path: Path) -> None:
    route = ModelRoute("openai/smollm2", api_base=local_llm.replace("/v1", "/nowhere"), api_key="local")
    with running("embedded", tmp_path, llm_models={"default": route}) as rt:
        _, version = rt.orchestrator.save_flow(
            flow("fluxgraph: 1\nid: lost\nnodes:\n  - {id: ask, type: llm.complete, with: {prompt: hi}}\n"), "lost.yaml"
        )
        run_id = rt.orchestrator.start_run(version, None)
        assert str(rt.wait(run_id, 60)) == "failed"
        with rt.db.connect() as conn:
            error = conn.execute(sa.select(run_steps.c.error).where(run_steps.c.run_id == run_id)).scalar_one()
    assert error["code"] in ("llm.model_not_found", "llm.bad_request") and not error["retryable"], error


def test_the_documented_command_runs_the_ticket_summary_blueprint_on_the_local_model(
    local_llm: str, tmp_path: Path
) -> None:
    """docs/running.md's example, as a user types it: IONFLUX_LLM_MODELS pointing the default alias at the model."""
    route = {"model": "openai/smollm2", "api_base": local_llm, "api_key": "none"}
    models = json.dumps({"default": route})
    ticket = json.dumps({"ticket": "Hi, Maria here: I was charged twice for order 1042"})
    run = ("run", "flows/ticket-summary.yaml", "--input", ticket, "--json")
    done = ionflux(tmp_path, *run, timeout=240, llm_models=models)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["status"] == "succeeded"
    outputs = summary["outputs"]
    assert outputs["kind"] in ("billing", "delivery", "product_question", "complaint")
    assert isinstance(outputs["customer"], str) and isinstance(outputs["order"], str) and outputs["draft"].strip()
    shown = ionflux(tmp_path, "run-show", summary["id"], llm_models=models)
    assert shown.returncode == 0 and "openai/smollm2 · " in shown.stdout and " tokens · " in shown.stdout


def test_jules_plans_with_the_local_model_a_valid_flow_or_a_clear_failure(local_llm: str, tmp_path: Path) -> None:
    """The repair loop against a real (tiny) model: whatever it writes, the answer is a valid flow or a clear
    failure, never an invalid flow."""
    route = {"model": "openai/smollm2", "api_base": local_llm, "api_key": "none"}
    models = json.dumps({"default": route})
    out = tmp_path / "planned.yaml"
    request = "Every day at 9 Lisbon time, fetch https://example.com/api/orders and post a summary to #sales on Slack."
    done = ionflux(
        tmp_path,
        "plan",
        request,
        "--model",
        "default",
        "--attempts",
        "2",
        "-o",
        str(out),
        timeout=400,
        llm_models=models,
    )
    assert "planner: model:openai/smollm2" in done.stderr, done.stderr
    if done.returncode == 0:
        assert ionflux(tmp_path, "validate", str(out)).returncode == 0
    else:
        assert done.returncode == 1 and "error[copilot.no_valid_flow]" in done.stderr and not out.exists()


def test_jules_edits_a_draft_with_the_local_model_a_valid_proposal_or_a_clear_failure(
    local_llm: str, tmp_path: Path
) -> None:
    """The chat's model path against a real model: the reply streams, and the answer is a proposal that validates
    or no proposal with the reason, never an invalid draft."""
    from copilot.chat import Jules
    from copilot.structured import ModelChoice
    from engine.dsl.validator import load_flow
    from engine.nodetypes.builtin import builtin_registry
    from engine.store.db import make_engine, migrate, sqlite_url
    from engine.store.tables import LOCAL_OWNER

    db = make_engine(sqlite_url(tmp_path / "chat.db"))
    migrate(db)
    registry = builtin_registry()
    offline = Jules(db, registry)
    session = offline.start(owner=LOCAL_OWNER)
    first = offline.say(
        session,
        "Every Monday at 8 fetch https://api.example.com/orders and post them to #sales on Slack",
        owner=LOCAL_OWNER,
    )
    assert first.change is not None
    offline.accept(session, first.change.id, owner=LOCAL_OWNER)
    jules = Jules(db, registry, model=ModelChoice("openai/smollm2", local_llm, "none", timeout=120))
    events: list[tuple[str, str]] = []
    turn = jules.say(
        session,
        "cap the budget at 20 C-ION per run",
        owner=LOCAL_OWNER,
        listen=lambda kind, text: events.append((kind, text)),
    )
    assert turn.planner == "model:openai/smollm2" and turn.tokens_in > 0
    assert any(kind == "token" for kind, _ in events)
    if turn.change is not None:
        load_flow(turn.change.after, registry=registry)
        assert turn.change.status == "pending"
    else:
        assert turn.reply.startswith("I could not make that change validly.")
    db.dispose()


def test_jules_plans_a_tool_graph_with_the_local_model_grounded_or_a_clear_failure(local_llm: str) -> None:
    from copilot.model_tools import Tool, plan_tools_with_model
    from copilot.structured import ModelChoice

    tools = [
        Tool("book_flight", "Book a flight between two cities on a date", (("from", ""), ("to", ""), ("date", ""))),
        Tool("send_email", "Send an email to an address", (("to", ""), ("subject", ""), ("content", ""))),
    ]
    result = plan_tools_with_model(
        "Book me a flight from Lisbon to Paris on May 1 and email the ticket to ana@example.com",
        tools,
        ModelChoice("openai/smollm2", local_llm, "none", timeout=120),
        attempts=2,
    )
    assert result.tokens_in > 0 and result.planner == "model:openai/smollm2"
    if result.graph is not None:
        assert {n.task for n in result.graph.task_nodes} <= {"book_flight", "send_email"}
    else:
        assert result.problems.startswith(("no grounded plan after 2 attempts", "the model could not be reached"))
