"""A flow as a server-rendered SVG graph: ``layout(flow)`` places it, ``render(flow, statuses)`` draws it.

::

    svg = render(flow)                                        # the Builder: every node pending
    svg = render(flow, {"fetch": "succeeded", "big": "running"})  # a run page, coloured by step status
    box = layout(flow).node("fetch")                           # what tests assert on

Each node list (the top level, a ``foreach``'s ``do``, ``on_failure``) is laid out by :mod:`ui.layered`; a
``foreach`` is a group box sized to hold its own drawing, and ``on_failure`` gets a lane of its own under the
graph. Every node is a ``<g id="node-<id>" class="node status-<status>">`` that is focusable and labelled, so the
live run view recolours it by swapping one class; colours live in ``ui/static/graph.css``, never inline.
Why SVG rendered here rather than a JavaScript library: see docs/ui.md, "The graph".
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from html import escape
from importlib import resources
from typing import Literal

from engine.dsl import graph
from engine.dsl.model import AnyNode, ApprovalNode, Flow, ForeachNode
from ui import layered

NodeKind = Literal["step", "approval", "foreach"]
LaneName = Literal["main", "on_failure"]

STATUSES = ("pending", "running", "succeeded", "failed", "skipped", "waiting", "cancelled")
# the engine's step statuses and the run's approval pause, as the few looks the graph has
_ALIASES = {"ready": "pending", "awaiting_approval": "waiting", "paused": "waiting"}

NODE_WIDTH, NODE_HEIGHT = 200.0, 52.0
GROUP_HEADER, GROUP_PAD = 50.0, 16.0
LANE_HEADER, LANE_PAD, LANE_GAP = 34.0, 16.0, 40.0
MARGIN = 16.0
# average advance of the stylesheet's fonts (13px semibold ids, 12px types), for truncating before drawing
_ID_CHAR, _TYPE_CHAR = 7.6, 7.0
_TEXT_LEFT, _TEXT_RIGHT = 12.0, 28.0  # the right side leaves room for the condition badge


@dataclass(frozen=True, slots=True)
class NodeBox:
    """Where one node is drawn; ``x``/``y`` are its top-left corner in the SVG's user units."""

    id: str
    type: str
    kind: NodeKind
    lane: LaneName
    parent: str | None  # the enclosing foreach
    x: float
    y: float
    width: float
    height: float
    layer: int
    name: str | None = None
    condition: str | None = None
    items: str | None = None  # a foreach's items expression
    concurrency: int | None = None  # a foreach's parallel iterations

    @property
    def right(self) -> float:
        return self.x + self.width

    @property
    def bottom(self) -> float:
        return self.y + self.height

    def moved(self, dx: float, dy: float) -> NodeBox:
        return replace(self, x=self.x + dx, y=self.y + dy)


@dataclass(frozen=True, slots=True)
class EdgePath:
    """One edge as a polyline from the source's bottom centre to the target's top centre."""

    source: str
    target: str
    kind: graph.EdgeKind
    points: tuple[layered.Point, ...]

    def moved(self, dx: float, dy: float) -> EdgePath:
        return replace(self, points=tuple((x + dx, y + dy) for x, y in self.points))


@dataclass(frozen=True, slots=True)
class LaneBox:
    name: LaneName
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True, slots=True)
class Layout:
    """Positions and sizes of a whole flow: nodes in document order (a foreach before its ``do`` nodes)."""

    width: float
    height: float
    nodes: tuple[NodeBox, ...]
    edges: tuple[EdgePath, ...]
    lanes: tuple[LaneBox, ...]

    def node(self, node_id: str) -> NodeBox:
        for box in self.nodes:
            if box.id == node_id:
                return box
        raise KeyError(f"no node {node_id!r} in this layout")


@dataclass(frozen=True, slots=True)
class _Scope:
    width: float
    height: float
    nodes: tuple[NodeBox, ...]
    edges: tuple[EdgePath, ...]

    def moved(self, dx: float, dy: float) -> _Scope:
        return _Scope(
            self.width,
            self.height,
            tuple(n.moved(dx, dy) for n in self.nodes),
            tuple(e.moved(dx, dy) for e in self.edges),
        )


def _kind(node: AnyNode) -> NodeKind:
    if isinstance(node, ForeachNode):
        return "foreach"
    return "approval" if isinstance(node, ApprovalNode) else "step"


def _condition(node: AnyNode) -> str | None:
    if node.if_ is None:
        return None
    return str(node.if_).lower() if isinstance(node.if_, bool) else node.if_


def _scope(nodes: Sequence[AnyNode], lane: LaneName, parent: str | None) -> _Scope:
    inner = {n.id: _scope(n.do, lane, n.id) for n in nodes if isinstance(n, ForeachNode)}
    sizes = {
        n.id: (
            (max(NODE_WIDTH, inner[n.id].width + 2 * GROUP_PAD), GROUP_HEADER + inner[n.id].height + GROUP_PAD)
            if n.id in inner
            else (NODE_WIDTH, NODE_HEIGHT)
        )
        for n in nodes
    }
    scope_edges = graph.edges(nodes)
    drawing = layered.draw([n.id for n in nodes], sizes, [(e.source, e.target) for e in scope_edges])
    boxes: list[NodeBox] = []
    paths = [
        EdgePath(e.source, e.target, e.kind, route.points) for e, route in zip(scope_edges, drawing.routes, strict=True)
    ]
    for n in nodes:
        p = drawing.boxes[n.id]
        box = NodeBox(n.id, n.type, _kind(n), lane, parent, p.x, p.y, p.width, p.height, p.layer, n.name, _condition(n))
        if isinstance(n, ForeachNode):
            items = n.items if isinstance(n.items, str) else f"{len(n.items)} listed items"
            box = replace(box, items=items, concurrency=n.concurrency)
        boxes.append(box)
        if n.id in inner:
            sub = inner[n.id].moved(p.x + (p.width - inner[n.id].width) / 2, p.y + GROUP_HEADER)
            boxes.extend(sub.nodes)
            paths.extend(sub.edges)
    return _Scope(drawing.width, drawing.height, tuple(boxes), tuple(paths))


def layout(flow: Flow) -> Layout:
    """Place every node of a validated flow: the graph on top, the ``on_failure`` lane (if any) under it."""
    main = _scope(flow.nodes, "main", None)
    failure = _scope(flow.on_failure, "on_failure", None) if flow.on_failure else None
    content = max(main.width, failure.width + 2 * LANE_PAD if failure else 0.0)
    main = main.moved(MARGIN + (content - main.width) / 2, MARGIN)
    nodes, edges, lanes = list(main.nodes), list(main.edges), []
    bottom = MARGIN + main.height
    if failure:
        top = bottom + LANE_GAP
        lane = LaneBox("on_failure", MARGIN, top, content, LANE_HEADER + failure.height + LANE_PAD)
        failure = failure.moved(MARGIN + (content - failure.width) / 2, top + LANE_HEADER)
        nodes += failure.nodes
        edges += failure.edges
        lanes.append(lane)
        bottom = lane.y + lane.height
    return Layout(content + 2 * MARGIN, bottom + MARGIN, tuple(nodes), tuple(edges), tuple(lanes))


# --- SVG ---------------------------------------------------------------------------------------------------


def status_class(status: str) -> str:
    """The CSS class for a step status (``"running"`` -> ``"status-running"``); engine aliases are accepted."""
    look = _ALIASES.get(status, status)
    if look not in STATUSES:
        raise ValueError(f"unknown step status {status!r}: expected one of {', '.join(STATUSES)}")
    return f"status-{look}"


def stylesheet() -> str:
    """The graph's CSS (``ui/static/graph.css``): a page serves it; ``render(standalone=True)`` inlines it."""
    return resources.files("ui").joinpath("static/graph.css").read_text(encoding="utf-8")


def _n(value: float) -> str:
    """A coordinate, short and stable: one decimal, no trailing ``.0``."""
    text = f"{round(value, 1):.1f}".removesuffix(".0")
    return "0" if text == "-0" else text


def _a(value: str) -> str:
    return escape(value, quote=True)


def _truncate(text: str, room: float, char_width: float) -> str:
    fits = max(1, int(room // char_width))
    return text if len(text) <= fits else text[: fits - 1] + "\u2026"


def _path(points: Sequence[layered.Point]) -> str:
    """Straight down a routed channel, a vertical-tangent cubic between layers."""
    (x0, y0), parts = points[0], [f"M{_n(points[0][0])} {_n(points[0][1])}"]
    for x1, y1 in points[1:]:
        if x1 == x0:
            parts.append(f"L{_n(x1)} {_n(y1)}")
        else:
            mid = (y0 + y1) / 2
            parts.append(f"C{_n(x0)} {_n(mid)} {_n(x1)} {_n(mid)} {_n(x1)} {_n(y1)}")
        x0, y0 = x1, y1
    return " ".join(parts)


def _tooltip(box: NodeBox) -> str:
    lines = [f"{box.id} ({box.type})"]
    if box.name:
        lines.append(box.name)
    if box.items is not None:
        lines.append(f"for each of: {box.items} ({box.concurrency} at a time)")
    if box.condition is not None:
        lines.append(f"if: {box.condition}")
    if box.lane == "on_failure":
        lines.append("runs only if the run fails")
    return "\n".join(lines)


def _label(box: NodeBox, status: str, shown: str) -> str:
    """The node's accessible name: what the box shows first (so a voice user can say it), then what it is."""
    what = {"step": "step", "approval": "approval step", "foreach": "loop"}[box.kind]
    label = f"{shown}, {box.id}: {what} {box.type}, {status}"
    if box.condition is not None:
        label += ", conditional"
    return label + (", on failure" if box.lane == "on_failure" else "")


def _node(box: NodeBox, status: str) -> Iterator[str]:
    classes = ["node", f"node-{box.kind}", status_class(status)]
    if box.lane == "on_failure":
        classes.append("node-on-failure")
    if box.condition is not None:
        classes.append("node-conditional")
    room = box.width - _TEXT_LEFT - _TEXT_RIGHT
    second = f"foreach \u00b7 {box.concurrency} at a time" if box.kind == "foreach" else box.type
    first_line, second_line = _truncate(box.id, room, _ID_CHAR), _truncate(second, room, _TYPE_CHAR)
    yield (
        f'<g id="node-{_a(box.id)}" data-node="{_a(box.id)}" class="{" ".join(classes)}" tabindex="0" '
        f'role="button" aria-label="{_a(_label(box, status, f"{first_line} {second_line}"))}">'
    )
    yield f"<title>{escape(_tooltip(box))}</title>"
    x, y, w, h = box.x, box.y, box.width, box.height
    if box.kind == "approval":  # cut corners: told apart by shape as well as colour
        c = 10.0
        corners = [(x + c, y), (x + w - c, y), (x + w, y + c), (x + w, y + h - c), (x + w - c, y + h), (x + c, y + h)]
        corners += [(x, y + h - c), (x, y + c)]
        yield f'<polygon class="node-box" points="{" ".join(f"{_n(px)},{_n(py)}" for px, py in corners)}"/>'
    else:
        yield f'<rect class="node-box" x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" rx="8"/>'
    if box.kind == "foreach":
        bottom, r = y + GROUP_HEADER - 8, 8.0  # rounded on top only, flush with the group's outline
        yield (
            f'<path class="group-header" d="M{_n(x)} {_n(bottom)}V{_n(y + r)}Q{_n(x)} {_n(y)} {_n(x + r)} {_n(y)}'
            f'H{_n(x + w - r)}Q{_n(x + w)} {_n(y)} {_n(x + w)} {_n(y + r)}V{_n(bottom)}Z"/>'
        )
    yield f'<text class="node-id" x="{_n(x + _TEXT_LEFT)}" y="{_n(y + 21)}">{escape(first_line)}</text>'
    yield f'<text class="node-type" x="{_n(x + _TEXT_LEFT)}" y="{_n(y + 38)}">{escape(second_line)}</text>'

    if box.condition is not None:
        cx, cy, r = x + w - 14, y + 15, 8.0
        diamond = f"{_n(cx)},{_n(cy - r)} {_n(cx + r)},{_n(cy)} {_n(cx)},{_n(cy + r)} {_n(cx - r)},{_n(cy)}"
        yield (
            f'<g class="badge badge-if"><title>{escape("if: " + box.condition)}</title>'
            f'<polygon points="{diamond}"/></g>'
        )
    yield "</g>"


def render(flow: Flow, statuses: Mapping[str, str] | None = None, *, standalone: bool = False) -> str:
    """The flow as an ``<svg>`` element; ``statuses`` (node id -> step status) colour it, others are pending.

    ``standalone`` inlines the stylesheet, for an SVG file viewed on its own; a page links ``graph.css`` instead.
    Raises ValueError for a status the graph does not know.
    """
    statuses = statuses or {}
    drawn = layout(flow)
    title = f"Flow graph: {flow.name or flow.id}"
    main = [n.id for n in drawn.nodes if n.lane == "main"]
    failure = [n.id for n in drawn.nodes if n.lane == "on_failure"]
    summary = f"{len(main)} nodes"
    if failure:
        summary += f"; if the run fails: {', '.join(failure)}"
    ref = f"flow-graph-{flow.id}"
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="flow-graph" viewBox="0 0 {_n(drawn.width)} '
        f'{_n(drawn.height)}" width="{_n(drawn.width)}" height="{_n(drawn.height)}" role="group" '
        f'aria-roledescription="flow graph" aria-labelledby="{_a(ref)}-title" aria-describedby="{_a(ref)}-desc">',
        f'<title id="{_a(ref)}-title">{escape(title)}</title>',
        f'<desc id="{_a(ref)}-desc">{escape(summary)}</desc>',
    ]
    if standalone:
        out.append(f"<style>{stylesheet()}</style>")
    out.append(
        '<defs><marker id="flow-graph-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path class="edge-arrow" d="M0 0L10 5L0 10z"/></marker></defs>'
    )
    for lane in drawn.lanes:
        out.append(
            f'<g class="lane lane-on-failure"><rect class="lane-box" x="{_n(lane.x)}" y="{_n(lane.y)}" '
            f'width="{_n(lane.width)}" height="{_n(lane.height)}" rx="10"/>'
            f'<text class="lane-label" x="{_n(lane.x + 12)}" y="{_n(lane.y + 22)}">On failure: runs only if the '
            "run fails</text></g>"
        )
    for box in drawn.nodes:  # group backgrounds first, so the edges inside a loop stay visible
        if box.kind == "foreach":
            out.append(
                f'<rect class="group-bg" data-group="{_a(box.id)}" x="{_n(box.x)}" y="{_n(box.y)}" '
                f'width="{_n(box.width)}" height="{_n(box.height)}" rx="8"/>'
            )
    for edge in drawn.edges:
        tip = "on error" if edge.kind == "on_error" else "needs"
        out.append(
            f'<path class="edge edge-{edge.kind.replace("_", "-")}" data-source="{_a(edge.source)}" '
            f'data-target="{_a(edge.target)}" d="{_path(edge.points)}" marker-end="url(#flow-graph-arrow)">'
            f"<title>{escape(f'{edge.source} to {edge.target} ({tip})')}</title></path>"
        )
    for box in drawn.nodes:
        out.extend(_node(box, statuses.get(box.id, "pending")))
    out.append("</svg>")
    return "\n".join(out)
