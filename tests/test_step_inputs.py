"""What a step was called with is kept for the user to read: whole, with secrets blanked.

A short input lives in the step's preview; one longer than the preview goes to the blob store once (the preview
stays for listings); one over the payload size limit keeps only its cut preview, and says so.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.core.state import RunStatus
from engine.runtime.owned_runs import recorded_input
from engine.runtime.runtime import Runtime
from tests.runtime_helpers import flow, run_flow, running

ECHO = flow(
    """
fluxgraph: 1
id: echo
inputs:
  type: object
  properties: {text: {type: string}}
secrets: [api_token]
nodes:
  - id: say
    type: data.set
    with:
      text: "{{ inputs.text }}"
      again: "{{ inputs.text }}"
      auth: "Bearer {{ secrets.api_token }}"
"""
)


@pytest.fixture
def rt(tmp_path: Path) -> Iterator[Runtime]:
    with running("embedded", tmp_path, max_payload_bytes=50_000) as runtime:
        runtime.orchestrator.secrets.set("api_token", "s3cr3t-value")
        yield runtime


def _input(rt: Runtime, text: str, ends: RunStatus = RunStatus.SUCCEEDED) -> tuple[object, bool, str | None]:
    run_id, status = run_flow(rt, ECHO, {"text": text})
    assert status == str(ends)
    found = recorded_input(rt.db, rt.orchestrator.blobs, run_id, "say")
    assert found is not None and found.attempt == 1
    with rt.db.connect() as conn:
        ref = conn.exec_driver_sql("SELECT input_ref FROM run_steps WHERE run_id = ?", (run_id,)).scalar()
    return found.value, found.truncated, ref


def test_a_short_input_is_read_whole_from_its_preview(rt: Runtime) -> None:
    value, truncated, ref = _input(rt, "hello")
    assert value == {"text": "hello", "again": "hello", "auth": "Bearer ***"}
    assert not truncated and ref is None  # nothing stored twice


def test_an_input_longer_than_its_preview_is_kept_whole_in_the_blob_store(rt: Runtime) -> None:
    long = "ç" * 3_000  # over the 1,000-character preview
    value, truncated, ref = _input(rt, long)
    assert value == {"text": long, "again": long, "auth": "Bearer ***"}
    assert not truncated and ref is not None
    assert b"s3cr3t-value" not in rt.orchestrator.blobs.get(ref)


def test_an_input_over_the_payload_limit_keeps_only_its_cut_preview(rt: Runtime) -> None:
    # the step's input is twice the run's, over the 50,000-byte limit here (so is its output: the step fails)
    value, truncated, ref = _input(rt, "x" * 30_000, ends=RunStatus.FAILED)
    assert truncated and ref is None
    assert isinstance(value, str) and value.endswith("…") and len(value) == rt.config.preview_chars
