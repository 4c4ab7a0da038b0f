"""The run commands as a user types them: `ionflux run`, `runs`, `run-show`, `approve`, `rerun`, `secrets`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.cli_helpers import ionflux as cli
from tests.conftest import FLOWS

pytestmark = pytest.mark.timeout(180)


def ionflux(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return cli(home, *args, stdin=stdin, extensions="tests.ext_testing")


def test_run_shows_progress_and_outputs_and_lists_the_run(tmp_path: Path) -> None:
    done = ionflux(tmp_path, "run", str(FLOWS / "expense-approval.yaml"), "--input", '{"limit": 1000}')
    assert done.returncode == 0, done.stderr
    assert "succeeded" in done.stdout
    assert '"total": 370.9' in done.stdout
    listed = json.loads(ionflux(tmp_path, "runs", "--json").stdout)
    assert [(r["flow_id"], r["status"]) for r in listed] == [("expense-approval", "succeeded")]
    shown = json.loads(ionflux(tmp_path, "run-show", listed[0]["id"][:10], "--json").stdout)
    assert shown["outputs"]["total"] == 370.9
    assert {s["key"]: s["status"] for s in shown["steps"]}["manager"] == "skipped"


def test_approval_exit_code_then_approve_carries_the_run_on(tmp_path: Path) -> None:
    waiting = ionflux(tmp_path, "run", str(FLOWS / "expense-approval.yaml"), "--json")
    assert waiting.returncode == 4
    run_id = json.loads(waiting.stdout)["id"]
    approved = ionflux(tmp_path, "approve", run_id, "--comment", "fine", "--by", "boss")
    assert approved.returncode == 0, approved.stdout + approved.stderr
    assert "approved manager" in approved.stdout
    shown = json.loads(ionflux(tmp_path, "run-show", run_id, "--json").stdout)
    assert shown["status"] == "succeeded" and shown["outputs"]["needed_approval"] is True


def test_refusals_exit_5_with_the_reason(tmp_path: Path) -> None:
    bad_input = ionflux(tmp_path, "run", str(FLOWS / "expense-approval.yaml"), "--input", '{"limit": "lots"}')
    assert bad_input.returncode == 5
    assert "error[run.input_invalid]" in bad_input.stdout and "inputs.limit" in bad_input.stdout
    not_json = ionflux(tmp_path, "run", str(FLOWS / "expense-approval.yaml"), "--input", "{limit")
    assert not_json.returncode == 5 and "--input is not JSON" in not_json.stdout
    # (a type without an executor is refused too: every built-in has one now, so test_runtime covers it)
    missing = ionflux(tmp_path, "run-show", "NOSUCHRUN")
    assert missing.returncode == 5 and "error[run.not_found]" in missing.stdout
    unreadable = ionflux(tmp_path, "run", str(tmp_path / "nope.yaml"))
    assert unreadable.returncode == 2 and "error[file.unreadable]" in unreadable.stdout


def test_failed_run_then_rerun_on_a_fixed_version(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        "fluxgraph: 1\nid: fixme\nnodes:\n"
        "  - id: first\n    type: data.set\n    with: {v: 1}\n"
        "  - id: second\n    type: test.flaky\n    needs: [first]\n    with: {succeed_on: 0}\n"
    )
    failed = ionflux(tmp_path, "run", str(broken), "--json")
    assert failed.returncode == 1
    run_id = json.loads(failed.stdout)["id"]
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(broken.read_text().replace("succeed_on: 0", "succeed_on: 1"))
    rerun = ionflux(tmp_path, "rerun", run_id, "--flow", str(fixed))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    history = json.loads(ionflux(tmp_path, "run-show", run_id, "--history", "--json").stdout)["steps"]
    assert [(s["key"], s["run_attempt"], s["status"], s["reused"]) for s in history] == [
        ("first", 1, "succeeded", False),
        ("second", 1, "failed", False),
        ("first", 2, "succeeded", True),  # kept from the first attempt, not executed again
        ("second", 2, "succeeded", False),
    ]


def test_secrets_are_stored_encrypted_and_listed_by_name(tmp_path: Path) -> None:
    assert ionflux(tmp_path, "secrets", "set", "shop_token", stdin="tok-123\n").returncode == 0
    assert ionflux(tmp_path, "secrets", "list").stdout.split() == ["shop_token"]
    database = (tmp_path / "ionflux.db").read_bytes()
    assert b"tok-123" not in database
    assert oct((tmp_path / "secret.key").stat().st_mode & 0o777) == "0o600"
    bad = ionflux(tmp_path, "secrets", "set", "bad name", "--value", "x")
    assert bad.returncode == 5 and "error[secret.invalid]" in bad.stdout
    assert ionflux(tmp_path, "secrets", "delete", "shop_token").returncode == 0
    assert ionflux(tmp_path, "secrets", "list").stdout == ""


def test_worker_without_redis_explains_what_to_do(tmp_path: Path) -> None:
    done = ionflux(tmp_path, "worker")
    assert done.returncode == 2
    assert "needs IONFLUX_REDIS_URL" in done.stderr


def test_up_prepares_the_sandbox_stores_the_runnable_flows_and_stops_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a machine that never ran IONFLUX: no code.python component, no compile cache
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    done = cli(tmp_path, "up", "--seconds", "1", timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Preparing the code.python sandbox" in done.stdout and "code.python sandbox ready" in done.stdout
    assert f"{len(list(FLOWS.glob('*.yaml')))} runnable flows stored" in done.stdout  # every blueprint
    again = ionflux(tmp_path, "up", "--seconds", "1")
    assert again.returncode == 0 and "Preparing" not in again.stdout  # once per machine
