"""Running a flow from the UI: the form follows the flow's ``inputs`` schema, the engine checks the values as
the API does (a refusal says where, next to the form), and a run opens its live page."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from engine.runtime.runtime import Runtime
from tests.runtime_helpers import running

FLOW = """
fluxgraph: 1
id: greet-form
inputs:
  type: object
  required: [name]
  properties:
    name: {type: string, description: who to greet}
    times: {type: integer, default: 1}
    loud: {type: boolean}
    tone: {enum: [warm, dry]}
    extra: {type: object}
nodes:
  - id: say
    type: text.template
    with: {template: "{{ inputs.tone or 'plain' }} hello {{ inputs.name }} x{{ inputs.times }}"}
outputs:
  said: "{{ nodes.say.output.text }}"
"""
HTMX = {"HX-Request": "true"}


@pytest.fixture
def ui(tmp_path: Path) -> Iterator[tuple[TestClient, Runtime]]:
    with running("embedded", tmp_path) as rt:
        rt.orchestrator.save_flow(FLOW, "greet.yaml")
        app = create_app(rt, settings=Settings(open_local=True, bind="127.0.0.1:8080"))
        with TestClient(app, client=("127.0.0.1", 50000), base_url="http://127.0.0.1:8080") as client:
            yield client, rt


def test_the_form_follows_the_inputs_schema(ui: tuple[TestClient, Runtime]) -> None:
    client, _ = ui
    html = client.get("/ui/runs/new?flow=greet-form").text
    assert '<input type="text" id="input-name" name="name" value="" required>' in html
    assert 'type="number" id="input-times" name="times" value="1" step="1"' in html
    assert 'type="checkbox" id="input-loud" name="loud"' in html
    assert '<select id="input-tone" name="tone">' in html and ">warm</option>" in html
    assert '<textarea id="input-extra" name="extra"' in html and "who to greet" in html
    assert client.get("/ui/runs/new?flow=nope").status_code == 404


def test_a_valid_form_starts_a_run_and_opens_its_page(ui: tuple[TestClient, Runtime]) -> None:
    client, rt = ui
    answer = client.post(
        "/ui/runs/new?flow=greet-form",
        data={"name": "Ana", "times": "2", "tone": "warm", "extra": '{"a": 1}'},
        headers=HTMX,
        follow_redirects=False,
    )
    assert answer.status_code == 204  # htmx goes to the run's page
    run_id = answer.headers["HX-Redirect"].removeprefix("/ui/runs/")
    assert str(rt.wait(run_id, 30)) == "succeeded"
    outputs = rt.orchestrator.state(run_id).outputs
    assert outputs == {"said": "warm hello Ana x2"}


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"times": "3"}, "name"),  # required, left out: the engine says so
        ({"name": "Ana", "times": "two"}, "inputs.times"),
        ({"name": "Ana", "extra": "{not json"}, "inputs.extra"),
    ],
)
def test_a_refused_form_says_where_and_keeps_the_values(
    ui: tuple[TestClient, Runtime], data: dict[str, str], words: str
) -> None:
    client, _ = ui
    answer = client.post("/ui/runs/new?flow=greet-form", data=data, headers=HTMX)
    assert answer.status_code == 422
    assert 'role="alert"' in answer.text and words in answer.text
    assert "The run was not started" in answer.text


def test_a_change_from_another_site_is_refused(ui: tuple[TestClient, Runtime]) -> None:
    client, _ = ui
    blind = client.post("/ui/runs/new?flow=greet-form", data={"name": "x"}, follow_redirects=False)
    assert blind.status_code == 303 and blind.headers["location"].startswith("/ui/login")  # no htmx header: a stranger


def test_changes_made_from_pages_are_in_the_audit_log(ui: tuple[TestClient, Runtime]) -> None:
    client, _ = ui
    answer = client.post("/ui/runs/new?flow=greet-form", data={"name": "Ana"}, headers=HTMX, follow_redirects=False)
    run_id = answer.headers["HX-Redirect"].removeprefix("/ui/runs/")
    client.post("/ui/flows/greet-form/activate", headers=HTMX)
    log = client.get("/api/v1/audit").json()["items"]
    entries = [(e["action"], e["target"], e["actor"]) for e in log]
    assert ("run.start", run_id, "local demo (no sign-in)") in entries
    assert ("flow.activate", "greet-form", "local demo (no sign-in)") in entries
