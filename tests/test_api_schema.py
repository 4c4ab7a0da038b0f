"""schemathesis against the live OpenAPI schema: requests generated from the schema (as an owner with an admin
token, so routes are reached past authentication) never get a 5xx, every answer matches the schema it declares
(status, content type, headers, body), and requests that break the schema are refused. Not checked: that every
schema-valid request is accepted, since a flow's YAML or an unknown id are refused on meaning, not shape.
Live-event streams are covered by their own tests."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import positive_data_acceptance
from schemathesis.core.result import Err

from api.settings import Settings
from tests.api_helpers import Api, api

STREAMS = r"(/events$|/messages$)"  # text/event-stream answers: tests/test_api_events.py, test_api_copilot.py


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with api("embedded", tmp_path_factory.mktemp("schema")) as value:
        app = value.client.app
        assert isinstance(app, FastAPI)  # TestClient types its app as any ASGI app
        # generated requests reach the co-pilot's routes past its rate limit (tested in test_api_copilot.py)
        app.state.settings = Settings(copilot_rate_per_minute=100_000)
        yield value


EXAMPLES = 25  # per operation; hypothesis shrinks a failure to its smallest request


def test_the_api_keeps_its_schema_and_never_fails_with_5xx(live: Api) -> None:
    loaded = schemathesis.openapi.from_asgi("/api/openapi.json", live.client.app)
    failures: list[str] = []
    operations = 0
    for result in loaded.get_all_operations():
        if isinstance(result, Err):
            raise result.err()  # the part of the schema schemathesis could not read
        operation = result.ok()
        if re.search(STREAMS, operation.path):
            continue
        operations += 1

        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def check(case: Any) -> None:
            case.call_and_validate(headers=live.as_("admin"), excluded_checks=[positive_data_acceptance])

        try:
            check()
        except Exception as e:  # every operation is tried; all failures are reported together
            failures.append(f"{operation.method.upper()} {operation.path}: {str(e)[:1500]}")
    assert operations >= 10
    assert not failures, "\n\n".join(failures)


def test_the_schema_documents_every_route_with_its_errors(live: Api) -> None:
    document = live.client.get("/api/openapi.json").json()
    paths = document["paths"]
    assert "/api/v1/me" in paths and "/api/v1/tokens" in paths
    assert {"HTTPBearer", "APIKeyCookie"} <= set(document["components"]["securitySchemes"])
