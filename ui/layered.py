"""A Sugiyama-style layered drawing of one directed acyclic graph of sized boxes, top to bottom.

::

    drawing = draw(["a", "b", "c"], {"a": (200, 52), ...}, [("a", "b"), ("a", "c")])
    drawing.boxes["b"].x, drawing.routes[0].points

Four classic steps, each deterministic (same input -> same floats):

1. **Layers** by longest path from the roots (``engine.dsl.graph.layers``), so every edge points down.
2. **Dummy nodes** split an edge that spans several layers, so it is routed *between* the boxes of the layers it
   crosses instead of through them.
3. **Crossing reduction** by the barycenter heuristic: a few down and up sweeps, each sorting a layer by the mean
   position of its neighbours in the layer just fixed; the ordering with the fewest crossings wins.
4. **Coordinates**: each layer in turn is placed as close as possible to the mean of its neighbours' centres
   (least squares, solved exactly by pool-adjacent-violators) subject to a minimum gap, so a chain stays straight,
   a fork fans out under its source and parallel branches sit side by side.

Edges run from the bottom centre of the source to the top centre of the target. Between two layers a route only
moves inside the gap between them, and inside a layer only along its dummy's channel, so no edge crosses a box.
"""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise

from engine.dsl import graph

H_GAP = 32.0  # between two boxes of a layer
DUMMY_GAP = 14.0  # between a routed edge and its neighbour
DUMMY_WIDTH = 8.0
V_GAP = 52.0  # between layers: room for the edge curves and arrowheads
SWEEPS = 4
PLACEMENT_ROUNDS = 4
Point = tuple[float, float]


@dataclass(frozen=True, slots=True)
class Placed:
    """One box: ``x``/``y`` are its top-left corner."""

    x: float
    y: float
    width: float
    height: float
    layer: int


@dataclass(frozen=True, slots=True)
class Route:
    """The polyline of one edge: source bottom centre, each crossed layer's channel (top and bottom), target top."""

    source: str
    target: str
    points: tuple[Point, ...]


@dataclass(frozen=True, slots=True)
class Drawing:
    width: float
    height: float
    boxes: Mapping[str, Placed]
    routes: tuple[Route, ...]  # in the order of the edges given


def draw(ids: Sequence[str], sizes: Mapping[str, tuple[float, float]], edges: Sequence[tuple[str, str]]) -> Drawing:
    """Lay out ``ids`` (each ``(width, height)``) with ``edges`` (source, target). The graph must be acyclic."""
    if not ids:
        return Drawing(0.0, 0.0, {}, ())
    graph_edges = [graph.Edge(s, t) for s, t in edges]
    if graph.find_cycles(ids, graph_edges):
        raise ValueError("cannot lay out a cyclic graph: validate the flow first")
    rows = [list(row) for row in graph.layers(ids, graph_edges)]
    layer = {v: k for k, row in enumerate(rows) for v in row}
    width = {v: sizes[v][0] for v in ids}
    up: dict[str, list[str]] = {v: [] for v in ids}
    down: dict[str, list[str]] = {v: [] for v in ids}
    chains: list[list[str]] = []
    for k, (source, target) in enumerate(edges):
        chain = [source]
        for level in range(layer[source] + 1, layer[target]):
            dummy = f"\x00{k}.{level}"  # NUL never occurs in a node id
            rows[level].append(dummy)
            width[dummy], up[dummy], down[dummy] = DUMMY_WIDTH, [], []
            chain.append(dummy)
        chain.append(target)
        for a, b in pairwise(chain):
            down[a].append(b)
            up[b].append(a)
        chains.append(chain)

    rows = _order(rows, up, down)
    real = set(ids)
    centre = _place(rows, width, up, down, real)
    left = min(centre[v] - width[v] / 2 for v in centre)
    centre = {v: x - left for v, x in centre.items()}

    heights = [max(sizes[v][1] for v in row if v in real) for row in rows]
    tops: list[float] = []
    y = 0.0
    for h in heights:
        tops.append(y)
        y += h + V_GAP
    boxes = {
        v: Placed(
            centre[v] - width[v] / 2,
            tops[layer[v]] + (heights[layer[v]] - sizes[v][1]) / 2,
            width[v],
            sizes[v][1],
            layer[v],
        )
        for v in ids
    }
    routes = []
    for chain in chains:
        first, last = boxes[chain[0]], boxes[chain[-1]]
        points: list[Point] = [(centre[chain[0]], first.y + first.height)]
        for level, dummy in enumerate(chain[1:-1], start=first.layer + 1):
            points += [(centre[dummy], tops[level]), (centre[dummy], tops[level] + heights[level])]
        points.append((centre[chain[-1]], last.y))
        routes.append(Route(chain[0], chain[-1], tuple(points)))
    total_width = max(centre[v] + width[v] / 2 for v in centre)
    return Drawing(total_width, y - V_GAP, boxes, tuple(routes))


# --- crossing reduction ------------------------------------------------------------------------------------


def crossings(rows: Sequence[Sequence[str]], down: Mapping[str, Sequence[str]]) -> int:
    """Edge crossings between consecutive layers (each edge joins adjacent layers once dummies are in)."""
    total = 0
    for upper, lower in pairwise(rows):
        position = {v: k for k, v in enumerate(lower)}
        ends = [j for _, j in sorted((i, position[w]) for i, v in enumerate(upper) for w in down[v])]
        seen: list[int] = []
        for j in ends:
            total += len(seen) - bisect_right(seen, j)
            insort(seen, j)
    return total


def _by_barycenter(row: list[str], fixed: Sequence[str], neighbours: Mapping[str, Sequence[str]]) -> list[str]:
    position = {v: k for k, v in enumerate(fixed)}
    keyed = []
    for k, v in enumerate(row):
        near = [position[u] for u in neighbours[v]]
        # a node with no neighbour on that side keeps its place
        keyed.append((sum(near) / len(near) if near else float(k), k, v))
    return [v for _, _, v in sorted(keyed)]


def _order(
    rows: list[list[str]], up: Mapping[str, Sequence[str]], down: Mapping[str, Sequence[str]]
) -> list[list[str]]:
    best, fewest = [list(r) for r in rows], crossings(rows, down)
    for _ in range(SWEEPS):
        for level in range(1, len(rows)):
            rows[level] = _by_barycenter(rows[level], rows[level - 1], up)
        for level in range(len(rows) - 2, -1, -1):
            rows[level] = _by_barycenter(rows[level], rows[level + 1], down)
        count = crossings(rows, down)
        if count < fewest:
            best, fewest = [list(r) for r in rows], count
        if fewest == 0:
            break
    return best


# --- coordinates -------------------------------------------------------------------------------------------


def _place(
    rows: Sequence[Sequence[str]],
    width: Mapping[str, float],
    up: Mapping[str, Sequence[str]],
    down: Mapping[str, Sequence[str]],
    real: set[str],
) -> dict[str, float]:
    def gap(a: str, b: str) -> float:
        return (width[a] + width[b]) / 2 + (H_GAP if a in real and b in real else DUMMY_GAP)

    centre: dict[str, float] = {}
    for row in rows:  # packed, centred on 0
        x = 0.0
        for k, v in enumerate(row):
            x += gap(row[k - 1], v) if k else 0.0
            centre[v] = x
        for v in row:
            centre[v] -= x / 2

    def fit(row: Sequence[str], neighbours: Mapping[str, Sequence[str]]) -> None:
        offsets = [0.0]
        for a, b in pairwise(row):
            offsets.append(offsets[-1] + gap(a, b))
        wanted, weights = [], []
        for v, offset in zip(row, offsets, strict=True):
            near = neighbours[v]
            target = sum(centre[u] for u in near) / len(near) if near else centre[v]
            wanted.append(target - offset)
            weights.append((1.0 if v in real else 0.5) if near else 0.1)
        for v, y, offset in zip(row, _nondecreasing(wanted, weights), offsets, strict=True):
            centre[v] = y + offset

    for _ in range(PLACEMENT_ROUNDS):
        for level in range(1, len(rows)):
            fit(rows[level], up)
        for level in range(len(rows) - 2, -1, -1):
            fit(rows[level], down)
    for level in range(1, len(rows)):  # end top-down: children under their parents
        fit(rows[level], up)
    return centre


def _nondecreasing(values: Sequence[float], weights: Sequence[float]) -> list[float]:
    """The weighted least-squares nondecreasing fit of ``values`` (pool adjacent violators)."""
    blocks: list[tuple[float, float, int]] = []  # mean, weight, count
    for value, weight in zip(values, weights, strict=True):
        blocks.append((value, weight, 1))
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            (v2, w2, c2), (v1, w1, c1) = blocks.pop(), blocks.pop()
            blocks.append(((v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, c1 + c2))
    out: list[float] = []
    for mean, _, count in blocks:
        out.extend([mean] * count)
    return out
