"""``ionflux review``: the forecast node by node, cheaper alternatives and error-handling advice for a flow file;
``--write`` applies the advice and descriptions in place (comments kept), after which nothing is left to advise."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from api.cli import main
from engine.dsl.validator import load_flow
from tests.conftest import ROOT


def test_review_then_write_leaves_nothing_to_advise(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = tmp_path / "briefing.yaml"
    shutil.copy(ROOT / "flows" / "rss-morning-briefing.yaml", flow)
    before = flow.read_text("utf-8")
    assert main(["review", str(flow), "--color", "never"]) == 0
    out = capsys.readouterr().out
    assert "rss-morning-briefing: cost forecast" in out and "C-ION a month" in out
    assert "briefing.with.model = 'cheap' saves" in out
    assert "send.retry:" in out and "--write" in out
    assert flow.read_text("utf-8") == before  # a review alone changes nothing

    assert main(["review", str(flow), "--write", "--color", "never"]) == 0
    written = flow.read_text("utf-8")
    load_flow(written)
    assert "retry: {max_attempts: 3" in written and "description:" in written
    assert [line for line in before.splitlines() if line.lstrip().startswith("#")] == [
        line for line in written.splitlines() if line.lstrip().startswith("#")
    ]  # every comment kept
    capsys.readouterr()
    assert main(["review", str(flow), "--color", "never"]) == 0
    assert "nothing to add" in capsys.readouterr().out


def test_review_of_an_invalid_flow_shows_the_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("fluxgraph: 1\nid: x\nnodes: [{id: a, type: nope.nope}]\n", encoding="utf-8")
    assert main(["review", str(bad), "--color", "never"]) == 1
    assert "nope.nope" in capsys.readouterr().out
