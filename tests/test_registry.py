"""Meta-tests over the node catalog: every type has valid schemas, a working example, a cost, and docs."""

from __future__ import annotations

import jsonschema
import pytest

from engine.dsl.netpolicy import Target
from engine.dsl.schema import accepting_expressions
from engine.nodetypes.builtin import builtin_registry
from engine.nodetypes.registry import NodeType, Registry, RegistryError, UnknownNodeTypeError
from tests.conftest import ROOT

REGISTRY = builtin_registry()
TYPES = list(REGISTRY)
FLUXGRAPH_MINIMUM = {
    "http.request", "json.extract", "data.set", "data.filter", "text.template", "log", "delay",
    "email.send", "discord.post", "slack.post", "event.publish", "flow.call",
    "llm.complete", "llm.extract", "llm.classify", "code.js", "code.python", "wasm.run", "foreach", "approval",
}  # fmt: skip


def test_every_type_fluxgraph_promises_is_registered() -> None:
    assert set(REGISTRY.names()) >= FLUXGRAPH_MINIMUM


@pytest.mark.parametrize("node_type", TYPES, ids=[t.name for t in TYPES])
def test_each_type_has_valid_schemas_a_valid_example_and_a_cost(node_type: NodeType) -> None:
    jsonschema.Draft202012Validator.check_schema(dict(node_type.with_schema))
    jsonschema.Draft202012Validator.check_schema(dict(node_type.output_schema))
    if node_type.name != "foreach":  # examples may hold expressions, as flows do
        jsonschema.validate(dict(node_type.example), accepting_expressions(dict(node_type.with_schema)))
    assert list(node_type.check(node_type.example)) == []
    estimate = node_type.cost(node_type.example)
    assert estimate.cion >= 0 and estimate.basis
    assert node_type.summary.endswith(".")


@pytest.mark.parametrize("node_type", TYPES, ids=[t.name for t in TYPES])
def test_each_type_is_documented(node_type: NodeType) -> None:
    docs = (ROOT / "docs" / "node-types.md").read_text("utf-8")
    assert f"## `{node_type.name}`" in docs


def test_node_types_doc_is_generated_from_the_registry() -> None:
    from scripts.gen_docs import render_node_types

    assert (ROOT / "docs" / "node-types.md").read_text("utf-8") == render_node_types(), (
        "docs/node-types.md is stale: run `uv run python -m scripts.gen_docs`"
    )


def test_unknown_type_lookup_suggests_the_closest_name() -> None:
    with pytest.raises(UnknownNodeTypeError) as e:
        REGISTRY.get("llm.complet")
    assert e.value.code == "node.unknown_type" and "llm.complete" in e.value.hint


def test_type_names_are_checked_at_registration() -> None:
    with pytest.raises(ValueError, match=r"family\.action"):
        Registry([NodeType("Bad Name", "x", "x.", {}, {})])


def test_llm_cost_grows_with_max_tokens_and_model_price() -> None:
    complete = REGISTRY.get("llm.complete")
    small = complete.cost({"prompt": "x", "max_tokens": 100}).cion
    large = complete.cost({"prompt": "x", "max_tokens": 4000}).cion
    smart = complete.cost({"prompt": "x", "max_tokens": 4000, "model": "smart"}).cion
    assert small < large < smart


def test_http_request_needs_the_literal_host_only() -> None:
    http = REGISTRY.get("http.request")
    assert http.requires({"url": "https://api.example.com:8443/x?y={{ z }}"}).targets == {
        Target("api.example.com", 8443, explicit=True)
    }
    assert http.requires({"url": "https://{{ inputs.host }}/x"}).targets == frozenset()


def test_the_shared_builtin_registry_is_read_only() -> None:
    with pytest.raises(RegistryError, match="read-only") as e:
        REGISTRY.register(NodeType("x.y", "x", "X.", {}, {}))
    assert e.value.code == "registry.invalid" and "register_builtins" in e.value.hint
