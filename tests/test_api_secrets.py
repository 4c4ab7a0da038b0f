"""Secrets over HTTP (``/api/v1/secrets``): set by name (write scope), listed by name and time, deleted (admin
scope); the value is never in an answer, in the audit log, or in what the co-pilot says; each owner has their own;
and Jules is grounded in the caller's secret names."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from api.accounts import Principal
from api.settings import Settings
from api.v1.copilot_tools import jules
from engine.store.tables import audit_log
from tests.api_helpers import BACKENDS, Api, api
from tests.test_api_account import walk

VALUE = "sk-live-DO-NOT-LEAK-4242"
REQUEST = "Every Monday at 8 fetch https://api.example.com/orders and post them to #sales on Slack"


@pytest.fixture
def a(tmp_path: Path) -> Iterator[Api]:
    with api("embedded", tmp_path, start=False) as value:
        yield value


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_secret_is_set_listed_and_deleted_by_name_and_its_value_never_shown(backend: str, tmp_path: Path) -> None:
    with api(backend, tmp_path, start=False) as a:
        # Given a secret set with a write token
        made = a.call("PUT", "/api/v1/secrets/slack_bot_token", "write", json={"value": VALUE})
        assert made.status_code == 200, made.text
        assert made.json()["name"] == "slack_bot_token" and made.json()["created_at"]
        replaced = a.call("PUT", "/api/v1/secrets/slack_bot_token", "write", json={"value": VALUE + "-2"})
        assert replaced.json()["updated_at"] >= made.json()["updated_at"]
        # Then it is listed by name and time; its value is in no answer and no audit entry
        listed = a.call("GET", "/api/v1/secrets", "read")
        assert [s["name"] for s in listed.json()["items"]] == ["slack_bot_token"]
        audit = a.call("GET", "/api/v1/audit", "read")
        assert [(e["action"], e["target"], e["detail"]) for e in audit.json()["items"][:2]] == [
            ("secret.set", "slack_bot_token", {"created": False}),
            ("secret.set", "slack_bot_token", {"created": True}),
        ]
        with a.runtime.db.connect() as conn:
            stored_audit = str(conn.execute(sa.select(audit_log)).all())
        for text in (made.text, replaced.text, listed.text, audit.text, stored_audit):
            assert VALUE not in text
        assert a.runtime.orchestrator.secrets.resolve(["slack_bot_token"], a.owner) == {"slack_bot_token": VALUE + "-2"}
        # When it is deleted (admin scope), Then it is gone, and deleting it again is a 404
        assert a.call("DELETE", "/api/v1/secrets/slack_bot_token", "write").status_code == 403
        assert a.call("DELETE", "/api/v1/secrets/slack_bot_token", "admin").status_code == 204
        assert a.call("GET", "/api/v1/secrets", "read").json() == {"items": [], "next_cursor": None}
        again = a.call("DELETE", "/api/v1/secrets/slack_bot_token", "admin")
        assert again.status_code == 404 and again.json()["error"]["code"] == "secret.not_found"
        assert a.call("GET", "/api/v1/audit", "read").json()["items"][0]["action"] == "secret.delete"


@pytest.mark.parametrize("backend", BACKENDS)
def test_secrets_are_listed_in_pages_by_name(backend: str, tmp_path: Path) -> None:
    with api(backend, tmp_path, start=False) as a:
        # Given five secrets whose names mix case and underscores (databases disagree on how those sort)
        names = ["b_key", "B_KEY", "_first", "alpha", "Zeta"]
        for name in names:
            assert a.call("PUT", f"/api/v1/secrets/{name}", "write", json={"value": VALUE}).status_code == 200
        # When they are listed two at a time, Then each comes once, by name, on every backend
        listed, pages = walk(a, "/api/v1/secrets", "read")
        assert [s["name"] for s in listed] == sorted(names) and pages == 3
        assert VALUE not in str(listed)
        bad = a.call("GET", "/api/v1/secrets?cursor=%25", "read")
        assert bad.status_code == 422 and bad.json()["error"]["location"][0]["field"] == "query.cursor"


def test_each_owner_has_their_own_secrets(a: Api) -> None:
    a.call("PUT", "/api/v1/secrets/api_key", "write", json={"value": VALUE})
    assert a.call("GET", "/api/v1/secrets", "other").json()["items"] == []
    assert a.call("DELETE", "/api/v1/secrets/api_key", "other").status_code == 404
    theirs = a.call("PUT", "/api/v1/secrets/api_key", "other", json={"value": "theirs"})
    assert theirs.status_code == 200
    store = a.runtime.orchestrator.secrets
    assert store.resolve(["api_key"], a.owner) == {"api_key": VALUE}
    assert store.resolve(["api_key"], a.other) == {"api_key": "theirs"}


@pytest.mark.parametrize(
    ("who", "method", "body", "status"),
    [
        ("anonymous", "GET", None, 401),
        ("anonymous", "PUT", {"value": "x"}, 401),
        ("read", "PUT", {"value": "x"}, 403),
        ("read", "DELETE", None, 403),
    ],
)
def test_secrets_need_their_scope(a: Api, who: str, method: str, body: dict[str, str] | None, status: int) -> None:
    path = "/api/v1/secrets" if method == "GET" else "/api/v1/secrets/api_key"
    assert a.call(method, path, who, json=body).status_code == status


@pytest.mark.parametrize(
    ("name", "body"),
    [("1starts_with_digit", {"value": "x"}), ("has-dash", {"value": "x"}), ("x" * 65, {"value": "x"}), ("ok", {})],
)
def test_a_bad_name_or_value_is_refused_without_echoing_the_value(a: Api, name: str, body: dict[str, str]) -> None:
    refused = a.call("PUT", f"/api/v1/secrets/{name}", "write", json={**body, "extra": VALUE})
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "request.invalid"
    assert VALUE not in refused.text
    too_long = a.call("PUT", "/api/v1/secrets/ok", "write", json={"value": VALUE * 5000})
    assert too_long.status_code == 422 and VALUE not in too_long.text


def test_the_copilot_never_says_a_secrets_value(a: Api) -> None:
    a.call("PUT", "/api/v1/secrets/slack_bot_token", "write", json={"value": VALUE})
    session = a.call("POST", "/api/v1/copilot/sessions", "write", json={}).json()["id"]
    streamed = a.call("POST", f"/api/v1/copilot/sessions/{session}/messages", "write", json={"text": REQUEST})
    assert "slack_bot_token" in streamed.text  # the flow names the secret ...
    shown = a.call("GET", f"/api/v1/copilot/sessions/{session}", "read")
    planned = a.call("POST", "/api/v1/copilot/plan", "write", json={"text": REQUEST})
    for text in (streamed.text, shown.text, planned.text):
        assert VALUE not in text  # ... and never its value


def test_jules_is_grounded_in_the_callers_secret_names(a: Api) -> None:
    # Given secrets of two owners, and a configured model
    a.call("PUT", "/api/v1/secrets/api_key", "write", json={"value": VALUE})
    a.call("PUT", "/api/v1/secrets/their_key", "other", json={"value": "theirs"})
    ana = Principal(a.owner, "owner", "write", "test")
    # When Jules is built for Ana, Then it knows her secret names only, and which model answers
    offline = jules(ana, a.runtime, Settings(model=None))
    assert offline.secrets == ("api_key",) and offline.planner == "offline"
    with_model = jules(ana, a.runtime, Settings(model="default", llm_models={"default": "openai/gpt-4o-mini"}))
    assert with_model.planner == "model:openai/gpt-4o-mini" and "default" in with_model.aliases
