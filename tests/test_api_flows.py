"""Flows over HTTP: save (YAML or JSON), validate with located issues, list and search, show with triggers and a
cost forecast, versions and diffs, activate/deactivate, soft delete, export/import; and the catalog. Every flow
belongs to its owner: another owner's is not found (404), and scopes decide who may change what."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.dsl.canonical import to_yaml
from engine.dsl.validator import load_flow
from engine.steps.llm import ModelRoute
from tests.api_helpers import BACKENDS, Api, api
from tests.runtime_helpers import flow, one_step_flow

YAML = {"Content-Type": "application/yaml"}

DIGEST = flow(
    """
    fluxgraph: 1
    id: daily-digest
    name: Daily digest
    description: Collects the day's orders into one message.
    triggers:
      - type: manual
      - type: webhook
      - type: cron
        cron: "0 8 * * *"
        timezone: Europe/Lisbon
    nodes:
      - {id: collect, type: data.set, with: {orders: 3}}
    """
)
DIGEST_V2 = (
    DIGEST.replace("{orders: 3}", "{orders: 4}") + "  - {id: tell, type: data.set, needs: [collect], with: {x: 1}}\n"
)
INVALID = flow(
    """
    fluxgraph: 1
    id: broken
    nodes:
      - {id: a, type: data.set, with: {v: 1}}
      - {id: b, type: data.set, needs: [nowhere], with: {v: 2}}
    """
)


def as_json(text: str) -> dict[str, Any]:
    """A flow's YAML as the JSON document a client would send (these test flows read the same in YAML 1.1)."""
    data = yaml.safe_load(text)
    assert isinstance(data, dict)
    return data


@pytest.fixture
def a(tmp_path: Path) -> Iterator[Api]:
    with api("embedded", tmp_path, start=False) as value:
        yield value


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_flow_is_saved_shown_versioned_activated_deleted_and_brought_back(backend: str, tmp_path: Path) -> None:
    with api(backend, tmp_path, start=False) as a:
        # Given a flow saved from YAML, then a second version sent as JSON
        first = a.call("POST", "/api/v1/flows", "write", content=DIGEST, headers=YAML)
        assert first.status_code == 201, first.text
        assert first.json()["id"] == "daily-digest" and first.json()["created"] and first.json()["new_version"]
        v1 = first.json()["version"]
        second = a.call("POST", "/api/v1/flows", "write", json={"yaml": DIGEST_V2})
        assert second.status_code == 201 and not second.json()["created"] and second.json()["new_version"]
        v2 = second.json()["version"]
        again = a.call("POST", "/api/v1/flows", "write", content=DIGEST_V2, headers={"Content-Type": "text/plain"})
        assert again.json() == {"id": "daily-digest", "version": v2, "created": False, "new_version": False}
        assert again.status_code == 200  # nothing new was created

        # When it is listed and shown
        [item] = a.call("GET", "/api/v1/flows", "read").json()["items"]
        assert item["latest_version"] == v2 and item["active_version"] is None
        assert item["description"] == "Collects the day's orders into one message."
        assert item["triggers"] == {"types": ["manual", "webhook", "cron"], "armed": 0}
        shown = a.call("GET", "/api/v1/flows/daily-digest", "read").json()
        assert shown["yaml"] == DIGEST_V2 and shown["armed_triggers"] == []
        assert [t["type"] for t in shown["declared_triggers"]] == ["manual", "webhook", "cron"]
        assert {n["node_id"] for n in shown["forecast"]["nodes"]} == {"collect", "tell"}
        assert shown["forecast"]["fixed_cion"] >= 0

        # Then its versions, each version's YAML and the diff between them are there
        versions = a.call("GET", "/api/v1/flows/daily-digest/versions", "read").json()
        assert [v["id"] for v in versions["items"]] == [v2, v1] and versions["next_cursor"] is None
        assert versions["items"][0]["latest"] and not versions["items"][1]["latest"]
        paged = a.call("GET", "/api/v1/flows/daily-digest/versions?limit=1", "read").json()
        assert [v["id"] for v in paged["items"]] == [v2]
        rest = a.call("GET", f"/api/v1/flows/daily-digest/versions?limit=1&cursor={paged['next_cursor']}", "read")
        assert [v["id"] for v in rest.json()["items"]] == [v1]
        old = a.call("GET", f"/api/v1/flows/daily-digest/versions/{v1}", "read").json()
        assert old["yaml"] == DIGEST and old["flow_id"] == "daily-digest"
        diff = a.call("GET", f"/api/v1/flows/daily-digest/diff?from={v1}&to={v2}", "read").json()
        assert diff["from"] == v1 and diff["to"] == v2
        assert diff["structural"]["added_nodes"] == [{"id": "tell", "type": "data.set"}]
        assert diff["structural"]["changed_nodes"][0]["id"] == "collect"
        assert {"from": "collect", "to": "tell", "kind": "needs"} in diff["structural"]["added_edges"]
        assert "-  - {id: collect, type: data.set, with: {orders: 3}}" in diff["text"]

        # When it is activated at the first version: its webhook and cron are armed, with the webhook's URL
        on = a.call("POST", "/api/v1/flows/daily-digest/activate", "write", json={"version": v1})
        assert on.status_code == 200, on.text
        assert on.json()["active_version"] == v1
        armed = {t["kind"]: t for t in on.json()["armed_triggers"]}
        assert set(armed) == {"webhook", "cron"} and armed["cron"]["next_fire_at"] is not None
        url = armed["webhook"]["url"]
        assert url.startswith("http://testserver/hooks/")
        shown = a.call("GET", "/api/v1/flows/daily-digest", "read").json()
        assert shown["active_version"] == v1 and shown["triggers"]["armed"] == 2
        assert a.client.post(url.removeprefix("http://testserver"), json={}).status_code == 202  # the URL works
        latest = a.call("POST", "/api/v1/flows/daily-digest/activate", "write")  # no body: the latest version
        assert latest.json()["active_version"] == v2
        off = a.call("POST", "/api/v1/flows/daily-digest/deactivate", "write")
        assert off.json() == {"id": "daily-digest", "active_version": None, "armed_triggers": []}
        assert a.client.post(url.removeprefix("http://testserver"), json={}).status_code == 404

        # And it exports as a YAML file
        exported = a.call("GET", "/api/v1/flows/daily-digest/export", "read")
        assert exported.status_code == 200 and exported.text == DIGEST_V2
        assert exported.headers["content-type"].startswith("application/yaml")
        assert exported.headers["content-disposition"] == 'attachment; filename="daily-digest.yaml"'
        assert a.call("GET", f"/api/v1/flows/daily-digest/export?version={v1}", "read").text == DIGEST

        # When it is deleted (active again first: deleting disarms), it is gone from lookups and listings
        a.call("POST", "/api/v1/flows/daily-digest/activate", "write")
        assert a.call("DELETE", "/api/v1/flows/daily-digest", "admin").status_code == 204
        assert a.runtime.triggers.armed("daily-digest") == []
        gone = a.call("GET", "/api/v1/flows/daily-digest", "read")
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "flow.not_found"
        assert a.call("GET", f"/api/v1/flows/daily-digest/versions/{v1}", "read").status_code == 404
        assert a.call("GET", "/api/v1/flows", "read").json()["items"] == []
        assert a.call("DELETE", "/api/v1/flows/daily-digest", "admin").status_code == 404

        # Then saving it again brings it back, inactive, with its versions
        back = a.call("POST", "/api/v1/flows", "write", content=DIGEST, headers=YAML)
        assert back.status_code == 201 and back.json()["created"] and not back.json()["new_version"]
        shown = a.call("GET", "/api/v1/flows/daily-digest", "read").json()
        assert shown["active_version"] is None and shown["latest_version"] == v1
        assert len(a.call("GET", "/api/v1/flows/daily-digest/versions", "read").json()["items"]) == 2

        actions = [e["action"] for e in a.call("GET", "/api/v1/audit", "read").json()["items"]]
        assert actions[:3] == ["flow.save", "flow.delete", "flow.activate"]
        assert {"flow.save", "flow.activate", "flow.deactivate", "flow.delete"} <= set(actions)


@pytest.mark.parametrize("backend", BACKENDS)
def test_another_owners_flows_do_not_exist_for_you(backend: str, tmp_path: Path) -> None:
    with api(backend, tmp_path, start=False) as a:
        # Given Ana's flow
        version = a.call("POST", "/api/v1/flows", "write", content=DIGEST, headers=YAML).json()["version"]
        # When Rui (another owner, admin token) looks for it or acts on it, it is not found: 404, never 403
        for method, path in (
            ("GET", "/api/v1/flows/daily-digest"),
            ("GET", "/api/v1/flows/daily-digest/versions"),
            ("GET", f"/api/v1/flows/daily-digest/versions/{version}"),
            ("GET", f"/api/v1/flows/daily-digest/diff?from={version}"),
            ("GET", "/api/v1/flows/daily-digest/export"),
            ("POST", "/api/v1/flows/daily-digest/activate"),
            ("POST", "/api/v1/flows/daily-digest/deactivate"),
            ("DELETE", "/api/v1/flows/daily-digest"),
        ):
            answer = a.call(method, path, "other")
            assert answer.status_code == 404, (method, path, answer.text)
            assert answer.json()["error"]["code"] == "flow.not_found"
        assert a.call("GET", "/api/v1/flows", "other").json()["items"] == []
        assert a.call("GET", "/api/v1/flows?q=digest", "other").json()["items"] == []
        # Then an id in use is refused to Rui, and Ana's flow is untouched
        taken = a.call("POST", "/api/v1/flows", "other", content=DIGEST_V2, headers=YAML)
        assert taken.status_code == 409 and taken.json()["error"]["code"] == "flow.id_taken"
        assert a.call("GET", "/api/v1/flows/daily-digest", "read").json()["latest_version"] == version
        # And a version id of Ana's flow is not found under Rui's own flow either
        a.call("POST", "/api/v1/flows", "other", content=one_step_flow("ruis-flow"), headers=YAML)
        assert a.call("GET", f"/api/v1/flows/ruis-flow/versions/{version}", "other").status_code == 404


def test_scopes_decide_who_may_change_flows(a: Api) -> None:
    # Given a flow saved with a write token
    assert a.call("POST", "/api/v1/flows", "write", content=DIGEST, headers=YAML).status_code == 201
    # Then anonymous callers get 401, read tokens read and validate but change nothing, only admin deletes
    assert a.call("GET", "/api/v1/flows", "anonymous").status_code == 401
    garbage = {"content": b"\xff" * 10, "headers": {"Content-Type": "application/json"}}
    assert a.call("POST", "/api/v1/flows", "anonymous", **garbage).status_code == 401  # before the body is read
    assert a.call("POST", "/api/v1/flows", "read", **garbage).status_code == 403
    for method, path in (
        ("POST", "/api/v1/flows"),
        ("POST", "/api/v1/flows/import"),
        ("POST", "/api/v1/flows/daily-digest/activate"),
        ("POST", "/api/v1/flows/daily-digest/deactivate"),
        ("DELETE", "/api/v1/flows/daily-digest"),
    ):
        refused = a.call(method, path, "read", json={"yaml": DIGEST, "flows": [DIGEST]})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "auth.forbidden", (method, path)
    assert a.call("POST", "/api/v1/flows/validate", "read", content=DIGEST, headers=YAML).json()["valid"]
    assert a.call("GET", "/api/v1/flows/daily-digest", "read").status_code == 200
    assert a.call("DELETE", "/api/v1/flows/daily-digest", "write").status_code == 403
    assert a.call("DELETE", "/api/v1/flows/daily-digest", "admin").status_code == 204


def test_an_invalid_flow_is_refused_with_every_issue_located(a: Api) -> None:
    # When an invalid flow is saved
    refused = a.call("POST", "/api/v1/flows", "write", content=INVALID, headers=YAML)
    # Then nothing is stored and the answer says where each problem is
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "flow.invalid"
    [issue] = error["location"]["issues"]
    assert issue["node_id"] == "b" and issue["line"] == 5 and issue["path"].startswith("nodes[1].needs")
    assert a.call("GET", "/api/v1/flows/broken", "read").status_code == 404
    # And validation alone answers 200 with the same issues, or valid for a good flow
    checked = a.call("POST", "/api/v1/flows/validate", "read", json={"yaml": INVALID})
    assert checked.status_code == 200 and checked.json()["valid"] is False
    assert [i["code"] for i in checked.json()["issues"]] == [issue["code"]]
    assert set(checked.json()["issues"][0]) == {
        "code",
        "severity",
        "message",
        "hint",
        "file",
        "line",
        "column",
        "node_id",
        "path",
    }
    assert a.call("POST", "/api/v1/flows/validate", "read", content=DIGEST, headers=YAML).json() == {
        "valid": True,
        "issues": [],
    }
    not_yaml = a.call("POST", "/api/v1/flows/validate", "read", content="a: [unclosed", headers=YAML).json()
    assert not not_yaml["valid"] and not_yaml["issues"][0]["line"] == 1


def test_a_flow_that_cannot_run_here_is_reported_by_validate_and_refused_by_save(a: Api) -> None:
    # Given a valid flow whose node type has no executor in this installation
    unrunnable = one_step_flow("needs-unbuilt").replace("type: data.set", "type: test.unbuilt")
    # Then validation says so, and saving it is refused
    checked = a.call("POST", "/api/v1/flows/validate", "read", content=unrunnable, headers=YAML).json()
    assert checked["valid"] is False and [i["code"] for i in checked["issues"]] == ["run.refused"]
    refused = a.call("POST", "/api/v1/flows", "write", content=unrunnable, headers=YAML)
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "run.refused"


@pytest.mark.parametrize("backend", BACKENDS)
def test_listing_searches_and_pages_by_id(backend: str, tmp_path: Path) -> None:
    with api(backend, tmp_path, start=False) as a:
        _search_and_page(a)


def _search_and_page(a: Api) -> None:
    # Given five flows, two of which mention invoices only in their description
    for flow_id, description in (
        ("alpha", "Sends invoices to accounting."),
        ("bravo", "Watches stock."),
        ("charlie", "Archives INVOICES nightly."),
        ("delta", "Nothing about it."),
        ("echo", "100% off_topic."),
    ):
        saved = a.call("POST", "/api/v1/flows", "write", content=one_step_flow(flow_id, description), headers=YAML)
        assert saved.status_code == 201, saved.text
    # When searching, id, name and description match case-insensitively (not other YAML)
    found = a.call("GET", "/api/v1/flows?q=invoice", "read").json()
    assert [f["id"] for f in found["items"]] == ["alpha", "charlie"] and found["next_cursor"] is None
    assert [f["id"] for f in a.call("GET", "/api/v1/flows?q=RAV", "read").json()["items"]] == ["bravo"]
    assert a.call("GET", "/api/v1/flows?q=data.set", "read").json()["items"] == []
    assert [f["id"] for f in a.call("GET", "/api/v1/flows?q=100%25", "read").json()["items"]] == ["echo"]
    assert [f["id"] for f in a.call("GET", "/api/v1/flows?q=f_t", "read").json()["items"]] == ["echo"]  # _ is literal
    # Then pages follow the id order with an opaque cursor, and end with none
    seen, cursor = [], None
    while True:
        page = a.call("GET", "/api/v1/flows?limit=2" + (f"&cursor={cursor}" if cursor else ""), "read").json()
        seen += [f["id"] for f in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["alpha", "bravo", "charlie", "delta", "echo"]
    searched = a.call("GET", "/api/v1/flows?q=invoice&limit=1", "read").json()
    rest = a.call("GET", f"/api/v1/flows?q=invoice&limit=1&cursor={searched['next_cursor']}", "read").json()
    assert [f["id"] for f in searched["items"] + rest["items"]] == ["alpha", "charlie"]
    # And bad paging is refused in the one error model
    for query in ("limit=0", "limit=201", "cursor=%25%25%25", "cursor=YWJj"):  # YWJj: base64 of "abc", made up
        bad = a.call("GET", f"/api/v1/flows?{query}", "read")
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "request.invalid", query
    # And a cursor of this list does not page another one (runs, secrets, versions)
    for other in ("/api/v1/runs", "/api/v1/secrets", "/api/v1/flows/alpha/versions"):
        crossed = a.call("GET", f"{other}?cursor={searched['next_cursor']}", "read")
        assert crossed.status_code == 422 and "not a cursor this API gave" in crossed.text, other


def test_bodies_are_capped_and_typed(a: Api) -> None:
    huge = DIGEST + "# " + "x" * 1_000_000 + "\n"
    for body, headers in ((huge, YAML), (json.dumps({"yaml": huge}), {"Content-Type": "application/json"})):
        refused = a.call("POST", "/api/v1/flows", "write", content=body, headers=headers)
        assert refused.status_code == 413 and refused.json()["error"]["code"] == "request.too_large"
    odd = a.call("POST", "/api/v1/flows", "write", content=DIGEST, headers={"Content-Type": "image/png"})
    assert odd.status_code == 415 and odd.json()["error"]["code"] == "request.unsupported_media_type"
    binary = a.call("POST", "/api/v1/flows", "write", content=b"\xff\xfe", headers=YAML)
    assert binary.status_code == 422 and binary.json()["error"]["code"] == "request.invalid"
    neither = a.call("POST", "/api/v1/flows", "write", json={"yml": DIGEST}).json()["error"]
    assert neither["code"] == "request.invalid" and neither["location"][0]["field"] == "body"
    assert '"fluxgraph": 1' in neither["message"] and '{"yaml": "…"}' in neither["message"]
    not_text = a.call("POST", "/api/v1/flows", "write", json={"yaml": 5}).json()["error"]
    assert not_text["code"] == "request.invalid" and "body.yaml" in not_text["message"]
    oversized = a.call("POST", "/api/v1/flows/import", "write", json={"flows": [huge, one_step_flow("small")]}).json()
    assert oversized["results"][0]["error"]["code"] == "request.too_large" and oversized["results"][1]["ok"]
    too_many = a.call("POST", "/api/v1/flows/import", "write", json={"flows": [DIGEST] * 51})
    assert too_many.status_code == 422 and too_many.json()["error"]["code"] == "request.invalid"
    unknown = a.call("GET", "/api/v1/flows/daily-digest/diff?from=bnope", "read")
    assert unknown.status_code == 404


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_flow_sent_as_a_json_document_is_stored_as_yaml_with_the_same_versions(backend: str, tmp_path: Path) -> None:
    with api(backend, tmp_path, start=False) as a:
        # Given the flow sent as the FluxGraph document itself, as JSON
        first = a.call("POST", "/api/v1/flows", "write", json=as_json(DIGEST))
        assert first.status_code == 201, first.text
        v1 = first.json()["version"]
        # Then it is stored as its canonical YAML (what `ionflux fmt` writes), and exported as YAML
        canonical = to_yaml(load_flow(DIGEST, registry=a.runtime.orchestrator.registry))
        assert a.call("GET", "/api/v1/flows/daily-digest", "read").json()["yaml"] == canonical
        assert a.call("GET", "/api/v1/flows/daily-digest/export", "read").text == canonical
        # And the same flow sent as YAML, or wrapped, is the same version: nothing new is stored
        for same in (
            a.call("POST", "/api/v1/flows", "write", content=DIGEST, headers=YAML),
            a.call("POST", "/api/v1/flows", "write", json={"yaml": DIGEST}),
        ):
            assert same.json() == {"id": "daily-digest", "version": v1, "created": False, "new_version": False}
        # When the next version comes as JSON too, Then versions and diffs are those of YAML input
        second = a.call("POST", "/api/v1/flows", "write", json=as_json(DIGEST_V2)).json()
        assert (
            second["new_version"] and second["version"] == a.runtime.orchestrator.save_flow(DIGEST_V2, owner=a.owner)[1]
        )
        versions = a.call("GET", "/api/v1/flows/daily-digest/versions", "read").json()["items"]
        assert [v["id"] for v in versions] == [second["version"], v1]
        diff = a.call("GET", f"/api/v1/flows/daily-digest/diff?from={v1}", "read").json()
        assert diff["structural"]["added_nodes"] == [{"id": "tell", "type": "data.set"}]
        assert "+  - id: tell\n" in diff["text"]
        # And validation takes the same bodies
        checked = a.call("POST", "/api/v1/flows/validate", "read", json=as_json(DIGEST))
        assert checked.json() == {"valid": True, "issues": []}


def test_a_json_documents_problems_are_located_by_path(a: Api) -> None:
    # When an invalid flow is sent as a JSON document, Then every issue says where, by JSON path
    refused = a.call("POST", "/api/v1/flows", "write", json=as_json(INVALID))
    assert refused.status_code == 422, refused.text
    [issue] = refused.json()["error"]["location"]["issues"]
    assert issue["path"] == "nodes[1].needs[0]" and issue["node_id"] == "b" and issue["file"] == "flow.json"
    assert issue["line"] == 0  # JSON has no lines to give: the path is the location
    checked = a.call("POST", "/api/v1/flows/validate", "read", json=as_json(INVALID)).json()
    assert not checked["valid"] and [i["path"] for i in checked["issues"]] == ["nodes[1].needs[0]"]
    missing = a.call("POST", "/api/v1/flows/validate", "read", json={"fluxgraph": 1, "nodes": []}).json()
    assert not missing["valid"] and any(i["path"] == "id" for i in missing["issues"])
    # And JSON the flow's YAML could not hold is refused before validation, saying where and how to fix it
    deep: dict[str, Any] = {}
    inner = deep
    for _ in range(70):
        inner["x"] = {}
        inner = inner["x"]
    document = as_json(one_step_flow("deep"))
    for value, field, why in (
        (deep, "body.nodes[0].with.v" + ".x" * 60, "nested deeper than 64 levels"),  # as deep as YAML may go
        (2**70, "body.nodes[0].with.v", "an integer over 64 bits"),
    ):
        document["nodes"][0]["with"] = {"v": value}
        answer = a.call("POST", "/api/v1/flows", "write", json=document)
        assert answer.status_code == 422, answer.text
        error = answer.json()["error"]
        assert error["code"] == "request.invalid" and error["location"] == [{"field": field, "message": why}]
        assert error["hint"]
    for body, says in (
        ('{"fluxgraph": 1, "id": "x",', "not valid JSON: Expecting property name enclosed in double quotes at line 1"),
        ('{"fluxgraph": 1, "id": "a", "id": "b", "nodes": []}', "the key 'id' is twice in one object"),
        ('{"fluxgraph": 1, "id": "a", "nodes": [], "x": NaN}', "NaN is not a JSON number"),
        ('{"fluxgraph": 1, "id": "a", "nodes": [], "x": 1e999}', "body.x: a number too large for a float"),
        ("[1, 2]", "this is neither"),
    ):
        answer = a.call(
            "POST", "/api/v1/flows/validate", "read", content=body, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 422 and says in answer.json()["error"]["message"], (body, answer.text)


def test_an_agent_type_is_explained_as_the_model_alias_it_is(a: Api) -> None:
    # Given a node that names an "agent" as a node type, the way the catalog lists agents
    wrong = one_step_flow("ask-agent").replace("type: data.set", "type: agent.default")
    # Then the issue says what agents are and how a flow uses one
    [issue] = a.call("POST", "/api/v1/flows/validate", "read", content=wrong, headers=YAML).json()["issues"]
    assert issue["code"] == "node.unknown_type" and "registry" not in issue["hint"]
    assert "IONFLUX_LLM_MODELS" in issue["hint"] and "`with.model`" in issue["hint"] and "llm.complete" in issue["hint"]
    assert "default" in {agent["name"] for agent in a.call("GET", "/api/v1/catalog/agents", "read").json()}


def test_the_schema_documents_both_json_shapes_of_a_flow(a: Api) -> None:
    paths = a.client.get("/api/openapi.json").json()["paths"]
    for path in ("/api/v1/flows", "/api/v1/flows/validate"):
        body = paths[path]["post"]["requestBody"]
        assert set(body["content"]) == {"application/yaml", "text/plain", "application/json"}
        shapes = body["content"]["application/json"]["schema"]["anyOf"]
        assert [s["title"] for s in shapes] == ["FlowDocument", "FlowSource"]
        assert shapes[0]["required"] == ["fluxgraph", "id", "nodes"] and shapes[1]["required"] == ["yaml"]
        assert set(body["content"]["application/json"]["examples"]) == {"document", "wrapped"}
    imported = paths["/api/v1/flows/import"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {s["type"] for s in imported["properties"]["flows"]["items"]["anyOf"]} == {"string", "object"}


def test_the_schema_examples_are_flows_that_save(a: Api) -> None:
    body = a.client.get("/api/openapi.json").json()["paths"]["/api/v1/flows"]["post"]["requestBody"]
    versions, statuses = set(), []
    for example in body["content"]["application/json"]["examples"].values():
        saved = a.call("POST", "/api/v1/flows", "write", json=example["value"])
        statuses.append(saved.status_code)
        versions.add(saved.json()["version"])
    assert len(versions) == 1  # the same flow, either way: made once (201), then stored already (200)
    assert statuses == [201] + [200] * (len(statuses) - 1)


def test_import_saves_the_valid_flows_and_reports_the_others(a: Api) -> None:
    # Given Rui owns the id "taken"
    a.call("POST", "/api/v1/flows", "other", content=one_step_flow("taken"), headers=YAML)
    # When Ana imports four flows
    report = a.call(
        "POST",
        "/api/v1/flows/import",
        "write",
        json={"flows": [DIGEST, INVALID, one_step_flow("taken"), one_step_flow("more")]},
    )
    # Then the valid ones are saved and the others say why
    assert report.status_code == 200, report.text
    body = report.json()
    assert (body["saved"], body["failed"]) == (2, 2)
    ok, invalid, taken, more = body["results"]
    assert ok["ok"] and ok["id"] == "daily-digest" and ok["created"]
    assert not invalid["ok"] and invalid["error"]["code"] == "flow.invalid" and invalid["issues"][0]["node_id"] == "b"
    assert not taken["ok"] and taken["error"]["code"] == "flow.id_taken"
    assert more["ok"] and more["id"] == "more"
    listed = [f["id"] for f in a.call("GET", "/api/v1/flows", "read").json()["items"]]
    assert listed == ["daily-digest", "more"]
    exported = a.call("GET", "/api/v1/flows/more/export", "read").text
    again = a.call("POST", "/api/v1/flows/import", "write", json={"flows": [exported]}).json()
    assert again["results"][0]["created"] is False  # an export imports back as the same version
    # And exports import as they are, as YAML: one, or several in one stream separated by ---
    stream = "# two flows\n---\n" + exported + "---\n" + one_step_flow("streamed") + "\n---\n"
    yaml_import = a.call("POST", "/api/v1/flows/import", "write", content=stream, headers=YAML).json()
    assert [(r["ok"], r["id"]) for r in yaml_import["results"]] == [(True, "more"), (True, "streamed")]
    refused = a.call("POST", "/api/v1/flows/import", "write", content=b"x", headers={"Content-Type": "image/png"})
    assert refused.status_code == 415 and "application/yaml" in refused.json()["error"]["hint"]


def test_import_takes_json_documents_too(a: Api) -> None:
    # When an import mixes YAML text and JSON documents, one of them invalid and one that YAML could not hold
    big = as_json(one_step_flow("big"))
    big["nodes"][0]["with"] = {"v": 2**64}
    flows = [one_step_flow("as-yaml"), as_json(one_step_flow("as-json")), as_json(INVALID), big]
    report = a.call("POST", "/api/v1/flows/import", "write", json={"flows": flows})
    # Then each is saved, or reported with where it is wrong
    assert report.status_code == 200, report.text
    as_yaml, as_json_, invalid, unkeepable = report.json()["results"]
    assert as_yaml["ok"] and as_json_["ok"] and as_json_["id"] == "as-json"
    assert invalid["error"]["code"] == "flow.invalid" and invalid["issues"][0]["path"] == "nodes[1].needs[0]"
    assert unkeepable["error"]["code"] == "request.invalid"
    assert unkeepable["error"]["location"] == [
        {"field": "body.flows[3].nodes[0].with.v", "message": "an integer over 64 bits"}
    ]
    assert a.call("GET", "/api/v1/flows/as-json/export", "read").text.startswith("fluxgraph: 1\n")


def test_the_catalog_lists_node_types_with_schemas_and_agents_without_keys(tmp_path: Path) -> None:
    models = {"default": ModelRoute("openai/gpt-4o-mini", api_key="sk-very-secret"), "local": ModelRoute("ollama/x")}
    with api("embedded", tmp_path, start=False, llm_models=models) as a:
        types = a.call("GET", "/api/v1/catalog/types", "read").json()
        by_name = {t["name"]: t for t in types}
        assert "data.set" in by_name and "http.request" in by_name
        assert set(by_name["http.request"]) == {"name", "family", "summary", "capabilities", "cost", "cost_cion"}
        assert "net" in by_name["http.request"]["capabilities"]
        one = a.call("GET", "/api/v1/catalog/types/http.request", "read").json()
        assert one["with"]["type"] == "object" and "output" in one and one["example"]
        assert one["fields"] == {} and one["example_fields"] == {}
        loop = a.call("GET", "/api/v1/catalog/types/foreach", "read").json()  # its structure is on the node itself
        assert set(loop["fields"]["properties"]) == {"items", "concurrency", "do"}
        assert loop["fields"]["required"] == ["items", "do"] and set(loop["example_fields"]) == {"items", "do"}
        unknown = a.call("GET", "/api/v1/catalog/types/http.requets", "read")
        assert unknown.status_code == 404 and "http.request" in unknown.json()["error"]["hint"]
        agents = a.call("GET", "/api/v1/catalog/agents", "read")
        assert agents.json() == [
            {"name": "default", "model": "openai/gpt-4o-mini", "priced": False},
            {"name": "local", "model": "ollama/x", "priced": False},
        ]
        assert "sk-very-secret" not in agents.text
        assert a.call("GET", "/api/v1/catalog/types", "anonymous").status_code == 401
