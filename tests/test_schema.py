"""The committed JSON Schema of FluxGraph is current, valid, and agrees with the validator on the blueprints."""

from __future__ import annotations

import json

import jsonschema
import yaml

from engine.dsl.schema import flow_json_schema, render
from tests.conftest import FLOWS

COMMITTED = FLOWS / "fluxgraph.schema.json"


def test_committed_schema_is_not_stale() -> None:
    assert COMMITTED.read_text("utf-8") == render(), (
        "flows/fluxgraph.schema.json is stale: run `uv run ionflux schema -o flows/fluxgraph.schema.json`"
    )


def test_schema_is_a_valid_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(flow_json_schema())


def test_every_blueprint_validates_against_the_schema_editors_use() -> None:
    validator = jsonschema.Draft202012Validator(json.loads(COMMITTED.read_text("utf-8")))
    for path in sorted(FLOWS.glob("*.yaml")):
        data = yaml.safe_load(path.read_text("utf-8"))
        errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(data)]
        assert not errors, f"{path.name}: {errors}"


def test_schema_checks_with_of_each_node_type() -> None:
    validator = jsonschema.Draft202012Validator(flow_json_schema())
    bad = {"fluxgraph": 1, "id": "x", "nodes": [{"id": "a", "type": "http.request", "with": {"urll": "x"}}]}
    assert list(validator.iter_errors(bad))
