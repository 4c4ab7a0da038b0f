"""What a model may not invent: a flow it writes can only use the model aliases that are configured and the
secrets the user has. The validator checks the language and the node types; this checks the installation's
names, so an invented alias or secret goes back to the model as an error, located like the validator's."""

from __future__ import annotations

from collections.abc import Iterator

from engine.dsl.model import AnyNode, Flow, ForeachNode


def problems(flow: Flow, aliases: tuple[str, ...], secrets: tuple[str, ...] | None) -> list[str]:
    """Located problems (empty: grounded). ``secrets``: the names the user has; None when unknown (not checked)."""
    found = []
    for node in _nodes(flow):
        model = getattr(node, "with_", {}).get("model") if node.type.startswith("llm.") else None
        if isinstance(model, str) and "{{" not in model and model not in aliases:
            found.append(
                f"- node {node.id}, field with.model: there is no model alias {model!r}; use one of: "
                + ", ".join(aliases)
            )
    if secrets is not None:
        for name in flow.secrets:
            if name not in secrets:
                have = ", ".join(secrets) or "none yet"
                found.append(
                    f"- field secrets: the user has no secret {name!r} (they have: {have}); use one of theirs, "
                    "or a step that needs no secret"
                )
    return found


def _nodes(flow: Flow) -> Iterator[AnyNode]:
    stack = [*flow.nodes, *flow.on_failure]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ForeachNode):
            stack.extend(node.do)
