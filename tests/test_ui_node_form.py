"""The node panel's form, pure: fields from a type's schema (nested values as inline YAML, expressions as text)
and the posted form back to the paths to set and unset."""

from __future__ import annotations

import pytest

from engine.nodetypes.builtin import builtin_registry
from ui.node_form import FormError, changes, common_fields, find_node, with_fields

REGISTRY = builtin_registry()


def test_fields_follow_the_schema_required_first_and_show_what_the_yaml_holds() -> None:
    values = {"url": "https://x.test/{{ inputs.id }}", "query": {"page": 1}, "extra": True}
    fields = {f.name: f for f in with_fields(REGISTRY.get("http.request"), values)}
    assert next(iter(fields)) == "with.url" and fields["with.url"].required
    assert fields["with.method"].kind == "choice" and "POST" in fields["with.method"].choices
    assert fields["with.method"].help.endswith("(default: GET)")
    assert fields["with.query"].kind == "yaml" and fields["with.query"].value == "{page: 1}"
    assert fields["with.url"].value == "https://x.test/{{ inputs.id }}"
    assert "with.extra" in fields  # a value the schema does not name is still shown


def test_posted_values_become_typed_sets_and_unsets() -> None:
    fields = with_fields(REGISTRY.get("http.request"), {"url": "https://a.test", "method": "GET"})
    to_set, to_unset = changes(fields, {"with.url": "https://b.test", "with.query": "{days: 2}", "with.method": ""})
    assert to_set == {"with.url": "https://b.test", "with.query": {"days": 2}} and to_unset == ["with.method"]
    with pytest.raises(FormError, match="is required"):
        changes(fields, {"with.url": ""})
    with pytest.raises(FormError, match="not valid YAML"):
        changes(fields, {"with.query": "{days: "})
    with pytest.raises(FormError, match="must be one of"):
        changes(fields, {"with.method": "FETCH"})


def test_checkboxes_numbers_and_retry() -> None:
    node = {"id": "a", "type": "log", "retry": {"max_attempts": 3, "backoff": "constant"}}
    common = common_fields(node)
    assert changes(common, {"retry.max_attempts": "5"}) == ({"retry.max_attempts": 5}, [])
    assert changes(common, {"retry.max_attempts": "3"}) == ({}, [])  # unchanged is no change
    assert changes(common, {"retry.max_attempts": "", "retry.backoff": ""}) == ({}, ["retry"])
    with pytest.raises(FormError, match="not a number"):
        changes(common, {"retry.max_attempts": "many"})
    http = with_fields(REGISTRY.get("http.request"), {"url": "u", "follow_redirects": False})
    shown = {"with.follow_redirects.shown": "1"}
    assert changes(http, {**shown, "with.follow_redirects": "on"}) == ({"with.follow_redirects": True}, [])
    assert changes(http, shown) == ({}, [])  # unchecked, as it was
    assert changes(http, {}) == ({}, [])  # a form without the checkbox leaves it alone
    fields = with_fields(None, {"dry_run": False})
    assert fields[0].kind == "yaml" and fields[0].value == "false"  # no schema: nested-or-scalar as YAML


def test_nodes_are_found_anywhere_in_the_flow() -> None:
    doc = {"nodes": [{"id": "each", "type": "foreach", "do": [{"id": "inner", "type": "log"}]}],
           "on_failure": [{"id": "alert", "type": "log"}]}  # fmt: skip
    assert find_node(doc, "inner") == {"id": "inner", "type": "log"}
    assert find_node(doc, "alert") is not None and find_node(doc, "nope") is None
