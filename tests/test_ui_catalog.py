"""The Catalog screens without a browser: every node type of the runtime's registry by family (with its summary,
capabilities and cost), searched as you type; a type's page (its `with` schema as a table and as it is, its output
schema, its example as a FluxGraph node to copy); an unknown type as a 404 page; the agents (model aliases)."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from markupsafe import escape

from api.app import create_app
from api.settings import Settings
from engine.dsl.validator import load_flow
from engine.nodetypes.builtin import builtin_registry
from engine.runtime import catalog
from engine.steps.llm import DEFAULT_MODELS, ModelRoute
from tests.runtime_helpers import running
from tests.ui_helpers import Ui, ui
from ui.pages.catalog import example_node, example_yaml, kind, limits, schema_view, ticks

HTMX = {"HX-Request": "true"}


@pytest.fixture
def u(tmp_path: Path) -> Iterator[Ui]:
    with ui(tmp_path) as value:
        value.sign_in()
        yield value


def esc(text: str) -> str:
    """``text`` as the templates write it (Jinja's autoescape)."""
    return str(escape(text))


def text_of(page: str) -> str:
    """The page's words, tags dropped and entities decoded (what a reader sees)."""
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page)))


def test_the_catalog_lists_every_type_by_family_with_its_facts(u: Ui) -> None:
    registry = u.runtime.orchestrator.registry

    # When a signed-in visitor opens the catalog
    page = u.client.get("/ui/catalog")

    # Then every type of the runtime's registry is there, linked, under its family's heading, with its summary,
    # capabilities and cost
    assert page.status_code == 200
    for node_type in registry:
        entry = catalog.entry(node_type)
        assert f'<a href="/ui/catalog/{entry.name}"><code>{entry.name}</code></a>' in page.text
        assert str(ticks(entry.summary)) in page.text  # `do` as <code>do</code>, everything else escaped
        assert esc(entry.cost) in page.text
        assert f'id="family-{entry.family}"' in page.text
    card = page.text[page.text.index('href="/ui/catalog/http.request"') :].split("</li>", 1)[0]
    assert '<span class="badge">net</span>' in card and "flat: 0.05 C-ION per request" in card
    # the families in order, each once
    families = re.findall(r'<h2 id="family-([a-z]+)"', page.text)
    assert families == sorted(set(families)) and "ai" in families and "messaging" in families
    # the search box is labelled and asks as you type
    assert '<label for="type-search">Search node types</label>' in page.text
    assert 'hx-get="/ui/catalog"' in page.text and "delay:300ms" in page.text
    # the agents: every built-in alias and the model it routes to
    for alias, route in DEFAULT_MODELS.items():
        assert f"<code>{alias}</code>" in page.text and f"<code>{route.model}</code>" in page.text
    # and the navigation: Builder, Flows, Runs, Catalog, Settings, the catalog current
    nav = re.findall(r'<nav aria-label="main">(.*?)</nav>', page.text)[0]
    assert re.findall(r">(\w+)</a>", nav) == ["Builder", "Flows", "Runs", "Catalog", "Settings"]
    assert '<a href="/ui/catalog" aria-current="page">Catalog</a>' in nav


def test_searching_narrows_the_list_as_you_type(u: Ui) -> None:
    # When the search box asks (htmx) for "slack", then just the list comes back, with slack.post alone
    found = u.client.get("/ui/catalog", params={"q": "slack"}, headers=HTMX)
    assert found.status_code == 200 and found.text.lstrip().startswith('<div id="type-list"')
    assert "/ui/catalog/slack.post" in found.text and "/ui/catalog/http.request" not in found.text
    assert "<html" not in found.text

    # a capability, a family and a keyword find types too; every word must match
    assert "/ui/catalog/llm.complete" in u.client.get("/ui/catalog", params={"q": "LLM"}, headers=HTMX).text
    by_family = u.client.get("/ui/catalog", params={"q": "messaging"}, headers=HTMX).text
    assert "/ui/catalog/email.send" in by_family and "/ui/catalog/code.js" not in by_family
    assert "/ui/catalog/http.request" in u.client.get("/ui/catalog", params={"q": "download"}, headers=HTMX).text
    both = u.client.get("/ui/catalog", params={"q": "post discord"}, headers=HTMX).text
    assert "/ui/catalog/discord.post" in both and "/ui/catalog/slack.post" not in both

    # without htmx the whole page comes back, the query kept in the box; nothing found says what to try
    plain = u.client.get("/ui/catalog", params={"q": "nothing-like-this"})
    assert plain.status_code == 200 and 'value="nothing-like-this"' in plain.text
    assert "No node type matches “nothing-like-this”." in plain.text


def test_a_types_page_has_its_schema_table_raw_schema_output_and_example(u: Ui) -> None:
    # When the visitor opens http.request
    page = u.client.get("/ui/catalog/http.request")
    assert page.status_code == 200
    words = text_of(page.text)

    # Then the heading, family, summary, capabilities and cost are there
    assert "<h1><code>http.request</code></h1>" in page.text and "family data" in words
    assert "Call an HTTP API." in words and "flat: 0.05 C-ION per request" in words
    # the `with` table: field, type, required, description, default and the allowed values
    row = re.search(r"<code>url</code></th>(.*?)</tr>", page.text, re.S)
    assert row is not None
    assert "required" in row.group(1) and "http(s) URL; may contain expressions" in row.group(1)
    assert "at least 1 character" in row.group(1)
    method = re.search(r"<code>method</code></th>(.*?)</tr>", page.text, re.S)
    assert method is not None and "optional" in method.group(1)
    assert "default <code>&#34;GET&#34;</code>" in method.group(1) and "&#34;DELETE&#34;" in method.group(1)
    assert "object (type: &#34;bearer&#34;) or object (type: &#34;basic&#34;)" in page.text  # auth's variants
    # the raw schema, as JSON
    registry = u.runtime.orchestrator.registry
    raw = json.dumps(json.loads(json.dumps(registry.get("http.request").with_schema)), indent=2)
    assert esc(raw) in page.text
    # the output: its fields (status is required, an integer)
    status = re.search(r"<code>status</code></th>(.*?)</tr>", page.text, re.S)
    assert status is not None and "integer" in status.group(1) and "required" in status.group(1)
    # the example, as a node to paste under `nodes:`, with a labelled copy button holding the same text
    shown = re.search(r'<pre class="yaml" id="example-yaml"[^>]*><code>(.*?)</code>', page.text, re.S)
    assert shown is not None
    snippet = html.unescape(shown.group(1))
    assert snippet == example_yaml(registry.get("http.request"))
    assert snippet.startswith("  - id: http_request\n    type: http.request\n    with:\n")
    assert f'data-copy="{esc(snippet)}"' in page.text
    assert ">Copy the example</button>" in page.text


def test_every_types_page_renders_and_its_example_reads_back(u: Ui) -> None:
    for node_type in u.runtime.orchestrator.registry:
        page = u.client.get(f"/ui/catalog/{node_type.name}")
        assert page.status_code == 200, page.text
        assert f"<h1><code>{node_type.name}</code></h1>" in page.text
        # the snippet is YAML that reads back as exactly the example node
        snippet = example_yaml(node_type)
        assert yaml.safe_load("nodes:\n" + snippet) == {"nodes": [example_node(node_type)]}, node_type.name
        assert esc(snippet) in page.text
        if node_type.name != "foreach":
            assert example_node(node_type).get("with", {}) == json.loads(json.dumps(node_type.example))
        # a type with fields of its own (foreach's items, do, concurrency) shows them as a table too
        assert ('id="fields"' in page.text) == bool(node_type.node_fields), node_type.name
        for name in node_type.node_fields.get("properties", {}):
            assert f"<code>{name}</code>" in page.text


def test_an_example_in_a_flow_validates() -> None:
    # Given the examples of a few types that need nothing else, pasted into a flow under `nodes:`
    registry = builtin_registry()
    nodes = "".join(example_yaml(registry.get(n)) for n in ("http.request", "delay", "approval", "text.template"))
    text = (
        f"fluxgraph: 1\nid: pasted\ninputs:\n  type: object\n  properties: {{name: {{type: string}}}}\nnodes:\n{nodes}"
    )
    # Then the flow validates (the snippets are real FluxGraph)
    assert [n.id for n in load_flow(text, registry=registry).nodes] == [
        "http_request",
        "delay",
        "approval",
        "text_template",
    ]


def test_an_example_that_reads_a_secret_says_where_to_set_it(u: Ui) -> None:
    page = u.client.get("/ui/catalog/slack.post").text
    assert "It reads the secret <code>slack_webhook</code>: list it in the flow's <code>secrets:</code>" in page
    assert '<a href="/ui/settings#secrets">Settings</a>' in page
    assert "It reads the secret" not in u.client.get("/ui/catalog/log").text


def test_an_unknown_type_is_a_404_page_with_a_suggestion(u: Ui) -> None:
    answer = u.client.get("/ui/catalog/http.requets")
    assert answer.status_code == 404
    assert "Node type not found" in answer.text and "<code>http.requets</code>" in answer.text
    assert 'Did you mean <a href="/ui/catalog/http.request">' in answer.text
    nothing = u.client.get("/ui/catalog/zzz")
    assert nothing.status_code == 404 and "Did you mean" not in nothing.text
    assert "&lt;script&gt;" in u.client.get("/ui/catalog/<script>").text  # escaped, never markup


def test_a_stranger_is_sent_to_sign_in(tmp_path: Path) -> None:
    with ui(tmp_path) as stranger:
        for path in ("/ui/catalog", "/ui/catalog/http.request"):
            answer = stranger.client.get(path)
            assert answer.status_code == 303 and answer.headers["location"] == f"/ui/login?next={path}"


def test_the_agents_are_the_runtimes_aliases(tmp_path: Path) -> None:
    # Given a runtime whose aliases add a local model and change `smart`
    models = {
        **DEFAULT_MODELS,
        "local": ModelRoute("openai/smollm2", "http://127.0.0.1:8088/v1", "none", 0.0, 0.0),
        "smart": ModelRoute("anthropic/claude-3-5-sonnet-latest"),
    }
    with running("embedded", tmp_path, start=False, llm_models=models) as runtime:
        app = create_app(runtime, settings=Settings(open_local=True, bind="127.0.0.1:8080", home=tmp_path))
        with TestClient(app, client=("127.0.0.1", 50000), base_url="http://127.0.0.1:8080") as client:
            page = client.get("/ui/catalog").text
    # Then the catalog lists those, never a route's server or key
    assert "<code>openai/smollm2</code>" in page and "<code>anthropic/claude-3-5-sonnet-latest</code>" in page
    assert "set on the route" in page  # local's prices
    assert "127.0.0.1:8088" not in page and "none</" not in page
    assert [(a.name, a.built_in) for a in catalog.agents(models)] == [
        ("cheap", True),
        ("default", True),
        ("local", False),
        ("smart", False),
    ]
    assert [a.name for a in catalog.agents(None)] == sorted(DEFAULT_MODELS)


def test_schemas_read_as_words() -> None:
    assert str(ticks("the `do` nodes <b>")) == "the <code>do</code> nodes &lt;b&gt;"
    assert kind({"type": "array", "items": {"type": "string"}}) == "array of string"
    assert kind({"anyOf": [{"type": "string"}, {"type": "number"}]}) == "string or number"
    assert kind({"type": ["string", "null"]}) == "string or null"
    assert kind({"enum": ["a", "b"]}) == "string"
    assert kind({"const": "bearer"}) == 'exactly "bearer"'
    assert kind({}) == "any"
    assert limits({"type": "integer", "minimum": 1, "maximum": 5}) == "1 to 5"
    assert limits({"minLength": 1}) == "at least 1 character"
    assert limits({"maxItems": 20}) == "at most 20 items"
    nested = schema_view(
        {
            "type": "object",
            "properties": {
                "retry": {"type": "object", "properties": {"max": {"type": "integer"}}, "required": ["max"]}
            },
            "additionalProperties": False,
        }
    )
    assert [(f.path, f.depth, f.required) for f in nested.fields] == [("retry", 0, False), ("retry.max", 1, True)]
    assert not nested.open and schema_view({"type": "object"}).open
