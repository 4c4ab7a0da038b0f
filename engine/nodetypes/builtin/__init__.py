"""The built-in node types, registered through the same :class:`Registry` API extensions use."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

from engine.nodetypes.builtin import ai, code, control, data, messaging
from engine.nodetypes.registry import NodeType, Registry

FAMILIES = (data, messaging, ai, code, control)


# What people call each kind of step (English; Jules's planner translates Portuguese and Spanish first). Words
# here describe the type's use, for any request, not any data set's phrasing.
KEYWORDS = {
    "http.request": (
        "fetch",
        "pull",
        "get",
        "call",
        "api",
        "request",
        "endpoint",
        "update",
        "create",
        "generate",
        "load",
        "download",
        "retrieve",
        "grab",
        "read",
        "rest",
        "feed",
        "store",
        "service",
        "rss",
    ),
    "json.extract": ("jmespath", "pick", "path"),
    "data.set": ("set", "build", "assemble"),
    "data.filter": ("filter", "keep", "only", "narrow", "select", "matching", "where"),
    "text.template": ("template", "format", "render"),
    "log": ("log", "record", "note", "journal"),
    "delay": ("wait", "delay", "pause", "sleep", "later", "after"),
    "email.send": ("email", "mail", "e-mail", "inbox", "smtp", "newsletter", "send"),
    "discord.post": ("discord", "post", "channel", "message"),
    "slack.post": ("slack", "post", "channel", "message", "notify", "alert", "ping", "dm"),
    "event.publish": ("publish", "emit", "republish", "broadcast", "subject"),
    "flow.call": ("flow", "subflow", "sub-flow", "workflow", "existing", "reuse"),
    "llm.complete": (
        "ai",
        "llm",
        "summarize",
        "summarise",
        "summary",
        "write",
        "draft",
        "translate",
        "rewrite",
        "compose",
        "generate",
        "suggest",
        "explain",
        "answer",
        "reply",
        "memo",
        "bullet",
        "boil",
    ),
    "llm.extract": ("extract", "parse", "field", "fields", "structured", "schema"),
    "llm.classify": (
        "classify",
        "categorize",
        "categorise",
        "label",
        "tag",
        "sort",
        "triage",
        "sentiment",
        "detect",
        "decide",
        "hot",
        "cold",
    ),
    "code.js": ("javascript", "js", "script", "code", "compute", "calculate", "check", "validate"),
    "code.python": (
        "python",
        "script",
        "code",
        "compute",
        "calculate",
        "count",
        "sum",
        "total",
        "aggregate",
        "parse",
        "average",
    ),
    "wasm.run": ("wasm", "webassembly", "module", "transform", "registered"),
    "foreach": ("each", "every", "loop", "iterate", "per", "list"),
    "approval": ("approve", "approval", "review", "confirm", "sign-off", "check"),
}


def builtin_types() -> list[NodeType]:
    return [replace(t, keywords=KEYWORDS.get(t.name, ())) for family in FAMILIES for t in family.TYPES]


def register_builtins(registry: Registry) -> Registry:
    for node_type in builtin_types():
        registry.register(node_type)
    return registry


@cache
def builtin_registry() -> Registry:
    """The registry of built-in types: shared, so frozen (extend ``register_builtins(Registry())`` instead)."""
    return register_builtins(Registry()).freeze()
