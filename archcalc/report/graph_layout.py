"""A layered (Sugiyama-style) drawing of a DAG, top to bottom, for the HTML report.

Written here over networkx's topological generations rather than calling Graphviz's `dot`:
no system package or binding to install, the same picture on every machine, and linear
passes that lay out 10,000 nodes in about a second, where `dot`'s crossing minimisation
and network-simplex placement grow much faster than that on long chains.

Steps: every node's rank is its topological generation (longest path from a source); an
edge that spans several ranks gets a dummy point on each rank between, so a skip
connection runs in its own lane instead of through the boxes it passes; a few
barycentre sweeps order each rank to reduce crossings; x positions are pulled towards
the mean of each node's neighbours while keeping order and spacing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

NODE_WIDTH = 200
NODE_HEIGHT = 40
LANE_WIDTH = 24  # horizontal room of a dummy point (an edge passing a rank)
GAP_X = 28
RANK_HEIGHT = 76  # node height plus room for an edge and its shape label
MARGIN = 20
ORDER_SWEEPS = 4
PLACE_SWEEPS = 4
# Past this many dummy points (sum of the ranks long edges pass), or this many per node, the
# longest edges are drawn straight instead: exported graphs have shape constants whose edges
# span hundreds of ranks, and lanes for them all would cost seconds and help no one.
MAX_DUMMIES = 60_000
DUMMIES_PER_NODE = 4


@dataclass(frozen=True)
class Layout:
    """Node boxes (centre x, top y) and each edge as a polyline, in pixels."""

    width: int
    height: int
    x: list[int]  # per node: centre
    y: list[int]  # per node: top
    edges: list[list[int]]  # per edge: x0, y0, x1, y1, ... from the source's bottom to the target's top


def layered_layout(count: int, edges: Sequence[tuple[int, int]], weak: Sequence[bool] = ()) -> Layout:
    """Lay out nodes 0..count-1 joined by `edges` (source, target), which must form a DAG.
    A `weak` edge (an exported graph's shape arithmetic) still ranks its target below its
    source, but gets no lane and does not pull nodes sideways: drawn across, it leaves the
    data flow straight."""
    import networkx as nx

    graph = nx.DiGraph()
    graph.add_nodes_from(range(count))
    graph.add_edges_from(edges)
    rank = [0] * count
    for level, generation in enumerate(nx.topological_generations(graph)):
        for node in generation:
            rank[node] = level
    ranks = max(rank, default=-1) + 1

    # Points: real nodes first, then dummies; chains[e] lists an edge's points in order.
    point_rank = list(rank)
    spans = sorted(range(len(edges)), key=lambda e: rank[edges[e][1]] - rank[edges[e][0]])
    budget = min(MAX_DUMMIES, DUMMIES_PER_NODE * count)
    chains: list[list[int]] = [[] for _ in edges]
    for e in spans:  # shortest first: the budget goes to the edges that gain most from lanes
        source, target = edges[e]
        between = rank[target] - rank[source] - 1
        chain = [source]
        if 0 < between <= budget and not (weak and weak[e]):
            budget -= between
            for r in range(rank[source] + 1, rank[target]):
                chain.append(len(point_rank))
                point_rank.append(r)
        chain.append(target)
        chains[e] = chain
    points = len(point_rank)
    up: list[list[int]] = [[] for _ in range(points)]
    down: list[list[int]] = [[] for _ in range(points)]
    for e, chain in enumerate(chains):
        if weak and weak[e]:
            continue
        for a, b in zip(chain, chain[1:]):
            down[a].append(b)
            up[b].append(a)

    # First order: points in the order they were made (a node list in topological order keeps
    # a chain's parts together), then barycentre sweeps down and up.
    layers: list[list[int]] = [[] for _ in range(ranks)]
    for point in range(points):
        layers[point_rank[point]].append(point)
    position = [0.0] * points
    for layer in layers:
        for i, point in enumerate(layer):
            position[point] = i
    for sweep in range(ORDER_SWEEPS):
        downward = sweep % 2 == 0
        for r in (range(1, ranks) if downward else range(ranks - 2, -1, -1)):
            neighbours = up if downward else down
            layer = layers[r]

            def barycentre(point: int, neighbours: list[list[int]] = neighbours) -> float:
                near = neighbours[point]
                return sum(position[n] for n in near) / len(near) if near else position[point]

            layer.sort(key=barycentre)
            for i, point in enumerate(layer):
                position[point] = i

    # x: start packed, then pull each point towards its neighbours' mean, keeping order.
    width = [NODE_WIDTH if point < count else LANE_WIDTH for point in range(points)]
    x = [0.0] * points
    for layer in layers:
        left = 0.0
        for point in layer:
            x[point] = left + width[point] / 2
            left += width[point] + GAP_X
        shift = left / 2
        for point in layer:
            x[point] -= shift
    for sweep in range(PLACE_SWEEPS):
        downward = sweep % 2 == 0
        neighbours = up if downward else down
        for r in (range(1, ranks) if downward else range(ranks - 2, -1, -1)):
            _place(layers[r], neighbours, x, width)

    low = min((x[p] - width[p] / 2 for p in range(points)), default=0.0)
    high = max((x[p] + width[p] / 2 for p in range(points)), default=0.0)
    offset = MARGIN - low
    xs = [round(value + offset) for value in x]
    top = [MARGIN + point_rank[p] * RANK_HEIGHT for p in range(points)]
    polylines = []
    for chain in chains:
        line = [xs[chain[0]], top[chain[0]] + NODE_HEIGHT]
        for point in chain[1:-1]:
            line += [xs[point], top[point] + NODE_HEIGHT // 2]
        line += [xs[chain[-1]], top[chain[-1]]]
        polylines.append(line)
    return Layout(width=round(high - low) + 2 * MARGIN, height=MARGIN * 2 + max(ranks - 1, 0) * RANK_HEIGHT
                  + NODE_HEIGHT, x=xs[:count], y=top[:count], edges=polylines)


def _place(layer: list[int], neighbours: list[list[int]], x: list[float], width: list[int]) -> None:
    """Move each point of `layer` towards the mean x of its `neighbours`, in order, at least
    their half-widths plus GAP_X apart; the row is then shifted so that, on average, the
    points sit where they wanted to be."""
    wanted = []
    for point in layer:
        near = neighbours[point]
        wanted.append(sum(x[n] for n in near) / len(near) if near else x[point])
    placed: list[float] = []
    for i, point in enumerate(layer):
        if i == 0:
            placed.append(wanted[0])
        else:
            previous = layer[i - 1]
            placed.append(max(wanted[i], placed[-1] + (width[previous] + width[point]) / 2 + GAP_X))
    shift = sum(w - p for w, p in zip(wanted, placed)) / len(layer) if layer else 0.0
    for point, value in zip(layer, placed):
        x[point] = value + shift
