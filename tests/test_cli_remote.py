"""The run commands in remote mode: `ionflux … --server URL --token T` against a real server on loopback (a fresh
SQLite database per test), driven through the CLI's main() as a user types them. Runs end to end with their
outputs and exit codes, listings, approvals, cancel, reject, re-runs, and each refusal with its one-line reason:
no token, a revoked one, a read token changing things, an unknown run, a server that is not there."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from api.accounts import Accounts
from api.cli import main
from tests.api_helpers import Api, api
from tests.runtime_helpers import FRAGILE, GATED, flow
from tests.services import free_port
from tests.test_api_events import FAST, served

pytestmark = pytest.mark.timeout(60)

HELLO = flow(
    """
    fluxgraph: 1
    id: hello-remote
    inputs: {type: object, properties: {name: {type: string}}, required: [name]}
    nodes:
      - id: greet
        type: text.template
        with: {template: "Hello, {{ inputs.name }}!"}
    outputs:
      greeting: "{{ nodes.greet.output.text }}"
    """
)


@dataclass
class Remote:
    api: Api
    url: str
    home: Path  # this machine's IONFLUX_HOME: remote mode must leave it untouched
    capsys: pytest.CaptureFixture[str]
    tmp: Path

    def ionflux(self, *args: str, token: str | None = "write") -> tuple[int, str]:
        """``ionflux ARGS --server URL --token <the owner's token of that scope>`` -> (exit status, output)."""
        self.capsys.readouterr()
        secret = ["--token", self.api.tokens[token]] if token else []
        status = main([*args, "--server", self.url, *secret])
        out = self.capsys.readouterr()
        return status, out.out + out.err

    def file(self, text: str, name: str = "flow.yaml") -> str:
        path = self.tmp / name
        path.write_text(text, "utf-8")
        return str(path)

    def json(self, *args: str) -> Any:
        status, out = self.ionflux(*args, "--json")
        assert status == 0, out
        return json.loads(out)


@pytest.fixture
def remote(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Remote]:
    home = tmp_path / "local-home"
    for name in ("IONFLUX_SERVER", "IONFLUX_TOKEN", "IONFLUX_DATABASE_URL", "IONFLUX_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IONFLUX_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "200")  # rich tables keep whole ids and outputs
    with api("embedded", tmp_path / "server") as a:
        a.client.app.state.streams = FAST  # type: ignore[attr-defined]
        with served(a) as url:
            yield Remote(a, url, home, capsys, tmp_path)
    assert not (home / "ionflux.db").exists(), "remote mode opened the local database"


def test_run_a_flow_file_end_to_end_prints_progress_and_outputs(remote: Remote) -> None:
    # Given a flow file on this machine, When it is run on the server
    status, out = remote.ionflux("run", remote.file(HELLO), "--input", '{"name": "Ana"}')
    # Then the steps and the outputs are printed, and the exit status is the run's: 0, succeeded
    assert status == 0, out
    assert "greet" in out and "text.template" in out
    assert "succeeded in" in out and '"greeting": "Hello, Ana!"' in out
    # and the flow and its run are the server's
    run_id = out.split("run ", 1)[1].split()[0]
    shown = remote.api.call("GET", f"/api/v1/runs/{run_id}").json()
    assert shown["flow_id"] == "hello-remote" and shown["outputs"] == {"greeting": "Hello, Ana!"}


def test_on_a_terminal_the_steps_are_drawn_live_as_the_events_arrive(
    remote: Remote, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich draws its live table as on a terminal
    slow = flow(
        """
        fluxgraph: 1
        id: slow-remote
        nodes:
          - {id: first, type: test.sleep, with: {seconds: 0.3}}
          - {id: second, type: test.sleep, needs: [first], with: {seconds: 0.3}}
        """
    )
    status, out = remote.ionflux("run", remote.file(slow))
    assert status == 0, out
    assert "first" in out and "second" in out and "succeeded in" in out


def test_run_with_json_prints_the_local_summary_shape(remote: Remote) -> None:
    status, out = remote.ionflux("run", remote.file(HELLO), "--input", '{"name": "Rui"}', "--json")
    assert status == 0, out
    summary = json.loads(out)
    assert summary["status"] == "succeeded" and summary["outputs"] == {"greeting": "Hello, Rui!"}
    assert set(summary) >= {"id", "flow_id", "version_id", "trigger", "duration_ms", "total_cion", "attempt"}


def test_a_failing_flow_exits_1_then_reruns_on_a_fixed_version(remote: Remote) -> None:
    # Given a flow whose second step fails
    status, out = remote.ionflux("run", remote.file(FRAGILE))
    assert status == 1, out
    run_id = out.split("run ", 1)[1].split()[0]
    assert f"ionflux rerun {run_id} --server {remote.url}" in out  # the suggested commands reach the same server
    # When it is re-run on a fixed version of the flow
    fixed = remote.file(FRAGILE.replace("succeed_on: 0", "succeed_on: 1"), "fixed.yaml")
    status, out = remote.ionflux("rerun", run_id, "--flow", fixed)
    # Then it succeeds, keeping the step that had succeeded
    assert status == 0, out
    steps = {s["key"]: s for s in remote.json("run-show", run_id)["steps"]}
    assert steps["store"]["status"] == "succeeded" and steps["fetch"]["reused"] is True


def test_runs_lists_with_filters_and_run_show_takes_a_prefix(remote: Remote) -> None:
    # Given two runs of two flows
    assert remote.ionflux("run", remote.file(HELLO), "--input", '{"name": "Ana"}')[0] == 0
    assert remote.ionflux("run", remote.file(FRAGILE), "--json")[0] == 1
    # When they are listed, all and by flow and status
    listed = remote.json("runs")
    assert [(r["flow_id"], r["status"]) for r in listed] == [("fragile", "failed"), ("hello-remote", "succeeded")]
    assert [r["flow_id"] for r in remote.json("runs", "--flow", "hello-remote")] == ["hello-remote"]
    assert [r["flow_id"] for r in remote.json("runs", "--status", "failed")] == ["fragile"]
    assert len(remote.json("runs", "--limit", "1")) == 1
    status, table = remote.ionflux("runs")
    assert status == 0 and listed[0]["id"] in table and "hello-remote" in table
    # Then one is shown by a prefix of its id, as locally
    status, out = remote.ionflux("run-show", listed[1]["id"][:10])
    assert status == 0, out
    assert f"run {listed[1]['id']}" in out and "status succeeded" in out and "Hello, Ana!" in out
    shown = remote.json("run-show", listed[0]["id"])
    assert {s["key"]: s["status"] for s in shown["steps"]} == {"fetch": "succeeded", "store": "failed"}


def test_a_gated_run_waits_and_approve_carries_it_on(remote: Remote) -> None:
    # Given a run waiting at its approval step: exit 4, with how to approve it
    status, out = remote.ionflux("run", remote.file(GATED))
    assert status == 4, out
    assert "waits for approval of gate: Pay 120?" in out
    run_id = out.split("run ", 1)[1].split()[0]
    # When it is approved
    status, out = remote.ionflux("approve", run_id, "--comment", "fine")
    # Then the run goes on to the end on the server
    assert status == 0, out
    assert f"approved gate of run {run_id}" in out
    assert remote.json("run-show", run_id)["status"] == "succeeded"


def test_cancel_and_reject_a_waiting_run(remote: Remote) -> None:
    waiting = [json.loads(remote.ionflux("run", remote.file(GATED), "--json")[1])["id"] for _ in range(2)]
    status, out = remote.ionflux("cancel", waiting[0])
    assert status == 0 and f"run {waiting[0]}: cancelled" in out, out
    status, out = remote.ionflux("reject", waiting[1], "--comment", "too much")
    assert f"rejected gate of run {waiting[1]}" in out
    assert status == 1, out  # the approval step fails, and with it the run
    # a finished run cannot be cancelled: the API's refusal, exit 5 as locally
    status, out = remote.ionflux("cancel", waiting[0])
    assert status == 5 and "error[run.finished]" in out, out


def test_without_a_token_the_server_asks_for_one_and_says_how_to_make_it(remote: Remote) -> None:
    status, out = remote.ionflux("runs", token=None)
    assert status == 5, out
    assert f"error[auth.required]: the server at {remote.url} needs an API token" in out
    assert "ionflux token create" in out and "IONFLUX_TOKEN" in out


def test_a_revoked_token_is_refused(remote: Remote) -> None:
    # Given the owner's read token, revoked on the server
    revoked = remote.api.tokens["read"]
    accounts = Accounts(remote.api.runtime.db)
    (found,) = [t for t in accounts.tokens(remote.api.owner) if t["name"] == "read token"]
    assert accounts.revoke(remote.api.owner, found["id"])
    status, out = remote.ionflux("runs", token="read")
    assert status == 5, out
    assert "error[auth.invalid]" in out and "ionflux token create" in out
    assert revoked not in out  # the token is never printed


def test_a_read_token_cannot_cancel(remote: Remote) -> None:
    run_id = json.loads(remote.ionflux("run", remote.file(GATED), "--json")[1])["id"]
    status, out = remote.ionflux("cancel", run_id, token="read")
    assert status == 5, out
    assert "error[auth.forbidden]" in out and "this needs the write scope; the token has read" in out
    assert "--scope write" in out
    assert remote.json("run-show", run_id)["status"] == "awaiting_approval"  # nothing changed


def test_an_unknown_run_is_not_found(remote: Remote) -> None:
    status, out = remote.ionflux("run-show", "01NOSUCHRUN00000000000000Z")
    assert status == 5 and "error[run.not_found]" in out and remote.url in out, out


def test_an_invalid_flow_is_refused_with_issues_located_in_the_local_file(remote: Remote) -> None:
    path = remote.file(HELLO.replace("type: text.template", "type: text.templat"))
    status, out = remote.ionflux("run", path)
    assert status == 5, out
    assert f"{path}:" in out and "node.unknown_type" in out and "flow.yaml" not in out.replace(path, "")


def test_an_unreachable_server_is_one_clear_line_and_exit_7(remote: Remote) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    status = main(["runs", "--server", nowhere, "--token", "ifx_nothing"])
    out = remote.capsys.readouterr().out
    assert status == 7
    assert f"error[remote.unreachable]: cannot reach the IONFLUX server at {nowhere}" in out
    assert "ifx_nothing" not in out


def test_server_and_token_come_from_the_environment(remote: Remote, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IONFLUX_SERVER", remote.url + "/api/v1/")  # the API's address works as well
    monkeypatch.setenv("IONFLUX_TOKEN", remote.api.tokens["write"])
    remote.capsys.readouterr()
    assert main(["run", remote.file(HELLO), "--input", '{"name": "Eva"}']) == 0
    assert '"greeting": "Hello, Eva!"' in remote.capsys.readouterr().out


def test_usage_mistakes_exit_2(remote: Remote) -> None:
    assert main(["runs", "--token", "ifx_x"]) == 2  # a token, and no server to send it to
    assert "no server is named" in remote.capsys.readouterr().err
    assert main(["runs", "--server", "ftp://example.com"]) == 2
    assert "error[remote.server_invalid]" in remote.capsys.readouterr().out
    status, out = remote.ionflux("run-show", "01NOSUCHRUN00000000000000Z", "--history")
    assert status == 2 and "error[remote.option_unavailable]" in out
