"""The built-in node types, registered through the same :class:`Registry` API extensions use."""

from __future__ import annotations

from functools import cache

from engine.nodetypes.builtin import ai, code, control, data, messaging
from engine.nodetypes.registry import NodeType, Registry

FAMILIES = (data, messaging, ai, code, control)


def builtin_types() -> list[NodeType]:
    return [t for family in FAMILIES for t in family.TYPES]


def register_builtins(registry: Registry) -> Registry:
    for node_type in builtin_types():
        registry.register(node_type)
    return registry


@cache
def builtin_registry() -> Registry:
    """The registry of built-in types: shared, so frozen (extend ``register_builtins(Registry())`` instead)."""
    return register_builtins(Registry()).freeze()
