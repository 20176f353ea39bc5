"""The dataset / job / column graph of an event log, and its layered layout.

Nodes are jobs and datasets; a dataset node lists its fields (from the latest ``schema``
facet, plus fields only known from governance or column lineage). Edges are reads
(dataset -> job) and writes (job -> dataset). Column links join an input field to an output
field through the job that maps them, from the latest ``columnLineage`` facet of each
(job, output): a graph shows the current shape, history is the compliance report's business.

The layout is a small Sugiyama-style layered layout, computed here so it needs no library and
is deterministic (same events, same picture, byte for byte):

1. cycles (a job that reads and writes the same dataset) are broken by reversing DFS back
   edges, visiting nodes in id order;
2. layers by longest path from the sources, then sources pulled right next to their first
   consumer so a reference file read late in the flow does not sit alone in column 0;
3. edges spanning several layers get invisible dummy nodes, one per layer crossed, so they
   are routed around nodes rather than through them;
4. order within layers by the barycenter heuristic, sweeping down and up, keeping the order
   with the fewest crossings (ties broken by id);
5. vertical positions: nodes stacked in order, then moved towards the mean height of their
   neighbours while keeping order and spacing, a few sweeps each way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import pairwise

from lineage.reports.compliance import (
    PERSONAL_CLASSES,
    Governance,
    column_edges,
    dataset_governance,
    governance_of,
)
from lineage.reports.events import DatasetId, EventLog, JobId, Run

MAX_FIELDS = 30
"""Fields listed per dataset node; the rest are summarised in a last row."""
CHAR_WIDTH = 7.0
"""Average width of a 12px sans-serif character: enough to size boxes without a font."""
MAX_WIDTH = 340.0
LAYER_GAP = 110.0
NODE_GAP = 28.0
COMPONENT_GAP = 48.0
MARGIN = 24.0
HEADER = 42.0
ROW = 18.0
JOB_HEIGHT = 50.0
SWEEPS = 12


@dataclass
class FieldRow:
    """A field as a dataset node lists it, with its governance."""

    name: str
    classification: str | None = None
    protection: str | None = None

    @property
    def personal(self) -> bool:
        return (self.classification or "").upper() in PERSONAL_CLASSES


@dataclass
class Node:
    """A job, a dataset or a dummy, with its layout once computed."""

    id: str
    kind: str
    """``job``, ``dataset`` or ``dummy`` (a bend point of a long edge)."""
    label: str
    sublabel: str = ""
    title: str = ""
    status: str = ""
    """A job's latest run state; a dataset's classification."""
    fields: list[FieldRow] = field(default_factory=list)
    layer: int = 0
    x: float = 0.0
    y: float = 0.0
    width: float = 0.0
    height: float = 0.0

    @property
    def center_y(self) -> float:
        return self.y + self.height / 2

    @property
    def anchor_y(self) -> float:
        """Where read/write edges attach: a dataset's header, keeping its field rows for
        column links; the middle of anything else."""
        return self.y + HEADER / 2 if self.kind == "dataset" else self.center_y

    def field_y(self, name: str) -> float:
        """The vertical middle of a field's row (the summary row for fields not listed)."""
        names = [f.name for f in self.fields[:MAX_FIELDS]]
        index = names.index(name) if name in names else min(len(self.fields), MAX_FIELDS)
        return self.y + HEADER + ROW * index + ROW / 2


@dataclass
class Edge:
    """A read (dataset -> job) or a write (job -> dataset), with its route."""

    source: str
    target: str
    kind: str
    """``read`` or ``write``."""
    points: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class ColumnLink:
    """An input field feeding an output field through a job, with its route."""

    source: str
    source_field: str
    job: str
    target: str
    target_field: str
    description: str
    protected: bool
    """Masked by a transformation, or a protection declared for the output field."""
    direct: bool
    personal: bool
    points: list[tuple[float, float]] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """How the link is drawn: personal data unprotected, protected, or other."""
        if self.personal and self.direct:
            return "masked" if self.protected else "exposed"
        return "plain"


@dataclass
class Graph:
    """Nodes by id, edges and column links; sizes once laid out."""

    nodes: dict[str, Node]
    edges: list[Edge]
    links: list[ColumnLink]
    width: float = 0.0
    height: float = 0.0

    def visible_nodes(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.kind != "dummy"]


# --- building ----------------------------------------------------------------------------------


def _flatten(fields: object, prefix: str = "") -> list[str]:
    names: list[str] = []
    if isinstance(fields, list):
        for item in fields:
            if isinstance(item, Mapping) and item.get("name"):
                name = prefix + str(item["name"])
                names.append(name)
                names.extend(_flatten(item.get("fields"), name + "."))
    return names


def _dataset_node(
    log: EventLog, dataset: DatasetId, extra_fields: Iterable[str], governance: Governance | None
) -> Node:
    schema = log.latest_dataset_facet(dataset, "schema")
    names = _flatten(schema.get("fields") if schema else None)
    known = set(names)
    declared = governance.fields if governance else {}
    names += sorted((set(declared) | set(extra_fields)) - known)
    rows = [
        FieldRow(n, declared[n].classification, declared[n].protection)
        if n in declared
        else FieldRow(n)
        for n in names
    ]
    classification = governance.classification if governance else "unclassified"
    frameworks = ", ".join(governance.frameworks) if governance and governance.frameworks else "-"
    sublabel = dataset.namespace if dataset.namespace != "file" else "file"
    return Node(
        id=dataset.node_id,
        kind="dataset",
        label=dataset.short_name,
        sublabel=sublabel,
        title=f"{dataset.uri}\nclassification: {classification}\nframeworks: {frameworks}",
        status=classification,
        fields=rows,
    )


def _job_node(job: JobId, runs: list[Run]) -> Node:
    last = runs[-1]
    kind = last.processing_type.lower()
    failed = sum(r.failed for r in runs)
    return Node(
        id=job.node_id,
        kind="job",
        label=job.name,
        sublabel=f"{len(runs)} run(s), last {last.state}",
        title=f"{job}\n{kind}, {len(runs)} run(s), {failed} failed\nlast run {last.run_id}: "
        f"{last.state}",
        status=last.state,
    )


def build_graph(log: EventLog) -> Graph:
    """Nodes, edges and column links of the runs in ``log`` (not laid out yet)."""
    catalogue = dataset_governance(log)
    edges: dict[tuple[str, str], Edge] = {}
    links: dict[tuple[str, str, str, str, str], ColumnLink] = {}
    datasets: set[DatasetId] = set()
    referenced: dict[DatasetId, set[str]] = {}
    for run in log.runs:
        for use in run.inputs.values():
            datasets.add(use.dataset)
            edges[(use.dataset.node_id, run.job.node_id)] = Edge(
                use.dataset.node_id, run.job.node_id, "read"
            )
        for use in run.outputs.values():
            datasets.add(use.dataset)
            edges[(run.job.node_id, use.dataset.node_id)] = Edge(
                run.job.node_id, use.dataset.node_id, "write"
            )
            field_edges = [(e, e.target_field) for e in column_edges(use) if e.target_field]
            if field_edges:  # the latest run's lineage replaces what earlier runs said
                for key in [k for k in links if k[2:4] == (run.job.node_id, use.dataset.node_id)]:
                    del links[key]
            target_gov = governance_of(use) or catalogue.get(use.dataset)
            for edge, target_field in field_edges:
                source_gov = governance_of(run.inputs.get(edge.source)) or catalogue.get(
                    edge.source
                )
                datasets.add(edge.source)
                referenced.setdefault(edge.source, set()).add(edge.source_field)
                referenced.setdefault(use.dataset, set()).add(target_field)
                source_info = source_gov.fields.get(edge.source_field) if source_gov else None
                target_info = target_gov.fields.get(target_field) if target_gov else None
                key = (
                    edge.source.node_id,
                    edge.source_field,
                    run.job.node_id,
                    use.dataset.node_id,
                    target_field,
                )
                links[key] = ColumnLink(
                    *key,
                    description=edge.describe(),
                    protected=edge.masked or bool(target_info and target_info.protection),
                    direct=edge.direct,
                    personal=any(info and info.personal for info in (source_info, target_info)),
                )
    nodes: dict[str, Node] = {}
    for dataset in sorted(datasets):
        nodes[dataset.node_id] = _dataset_node(
            log, dataset, referenced.get(dataset, ()), catalogue.get(dataset)
        )
    for job, runs in sorted(log.jobs().items()):
        nodes[job.node_id] = _job_node(job, runs)
    return Graph(
        nodes,
        sorted(edges.values(), key=lambda e: (e.source, e.target)),
        sorted(links.values(), key=lambda k: (k.job, k.target, k.target_field, k.source)),
    )


# --- layout ------------------------------------------------------------------------------------


def _acyclic(node_ids: list[str], edges: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The edges with DFS back edges reversed (iterative DFS, nodes in id order)."""
    succ: dict[str, list[str]] = {n: [] for n in node_ids}
    for s, t in edges:
        succ[s].append(t)
    for targets in succ.values():
        targets.sort()
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    back: set[tuple[str, str]] = set()
    for root in node_ids:
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(succ[root]))]
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif state.get(child) == 1:
                back.add((node, child))
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(succ[child])))
    return [(t, s) if (s, t) in back else (s, t) for s, t in edges if s != t]


def _layers(node_ids: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Layer of every node: longest path from a source, sources then moved next to their
    first consumer (``edges`` must be acyclic)."""
    preds: dict[str, list[str]] = {n: [] for n in node_ids}
    succs: dict[str, list[str]] = {n: [] for n in node_ids}
    for s, t in edges:
        preds[t].append(s)
        succs[s].append(t)
    layer: dict[str, int] = {}
    # Kahn's order makes "longest path from a source" a single pass
    remaining = {n: len(preds[n]) for n in node_ids}
    ready = sorted(n for n in node_ids if remaining[n] == 0)
    while ready:
        node = ready.pop(0)
        layer[node] = max((layer[p] + 1 for p in preds[node]), default=0)
        for child in sorted(succs[node]):
            remaining[child] -= 1
            if remaining[child] == 0:
                ready.append(child)
        ready.sort()
    for node in node_ids:
        if not preds[node] and succs[node]:
            layer[node] = min(layer[c] for c in succs[node]) - 1
    return layer


def _crossings(order: list[list[str]], edges: list[tuple[str, str]]) -> int:
    """Edge crossings between adjacent layers: the pairs whose ends are in opposite order."""
    position = {n: i for layer in order for i, n in enumerate(layer)}
    by_layer: dict[int, list[tuple[int, int]]] = {}
    layer_of = {n: k for k, layer in enumerate(order) for n in layer}
    for s, t in edges:
        by_layer.setdefault(layer_of[s], []).append((position[s], position[t]))
    total = 0
    for pairs in by_layer.values():
        pairs.sort()
        for i, (_, a) in enumerate(pairs):
            total += sum(1 for _, b in pairs[i + 1 :] if b < a)
    return total


def _order(layers: dict[str, int], edges: list[tuple[str, str]]) -> list[list[str]]:
    """Node order within each layer: barycenter sweeps, keeping the fewest crossings."""
    depth = max(layers.values(), default=-1) + 1
    order: list[list[str]] = [[] for _ in range(depth)]
    for node in sorted(layers):
        order[layers[node]].append(node)
    preds: dict[str, list[str]] = {n: [] for n in layers}
    succs: dict[str, list[str]] = {n: [] for n in layers}
    for s, t in edges:
        preds[t].append(s)
        succs[s].append(t)

    def sweep(rank: int, neighbours: dict[str, list[str]], ref: int) -> None:
        position = {n: i for i, n in enumerate(order[ref])}

        def barycenter(node: str) -> float:
            near = [position[n] for n in neighbours[node] if n in position]
            return sum(near) / len(near) if near else float(order[rank].index(node))

        order[rank] = sorted(order[rank], key=lambda n: (barycenter(n), order[rank].index(n), n))

    best = [list(layer) for layer in order]
    best_crossings = _crossings(order, edges)
    for iteration in range(SWEEPS):
        if iteration % 2 == 0:
            for rank in range(1, depth):
                sweep(rank, preds, rank - 1)
        else:
            for rank in range(depth - 2, -1, -1):
                sweep(rank, succs, rank + 1)
        crossings = _crossings(order, edges)
        if crossings < best_crossings:
            best, best_crossings = [list(layer) for layer in order], crossings
    return best


def _size(node: Node) -> None:
    """Width from the longest text (bold labels, badges and protection names included)."""
    if node.kind == "dummy":
        node.width, node.height = 0.0, 8.0
        return
    widths = [CHAR_WIDTH * 1.1 * len(node.label) + 24, CHAR_WIDTH * 0.85 * len(node.sublabel) + 24]
    if node.kind == "dataset":
        widths.append(CHAR_WIDTH * 0.85 * len(f"{node.sublabel} · {node.status}") + 24)
        for row in node.fields[:MAX_FIELDS]:
            text = (38 if row.personal else 10) + CHAR_WIDTH * len(row.name) + 12
            if row.protection:
                text += CHAR_WIDTH * 0.85 * len(row.protection) + 8
            widths.append(text)
        rows = min(len(node.fields), MAX_FIELDS) + (len(node.fields) > MAX_FIELDS)
        node.height = HEADER + ROW * rows + (6 if rows else 0)
    else:
        node.height = JOB_HEIGHT
    node.width = min(max(max(widths), 150.0), MAX_WIDTH)


def _components(node_ids: list[str], edges: list[tuple[str, str]]) -> list[list[str]]:
    """Weakly connected parts, largest first (ties by first node id)."""
    parent = {n: n for n in node_ids}

    def root(node: str) -> str:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for s, t in edges:
        parent[root(s)] = root(t)
    groups: dict[str, list[str]] = {}
    for node in node_ids:
        groups.setdefault(root(node), []).append(node)
    return sorted(groups.values(), key=lambda g: (-len(g), g[0]))


def _place_vertically(
    order: list[list[str]], nodes: dict[str, Node], edges: list[tuple[str, str]], top: float
) -> None:
    """Vertical positions of one connected part, its highest node at ``top``."""
    preds: dict[str, list[str]] = {n: [] for n in nodes}
    succs: dict[str, list[str]] = {n: [] for n in nodes}
    for s, t in edges:
        preds[t].append(s)
        succs[s].append(t)
    for layer in order:
        y = MARGIN
        for node_id in layer:
            nodes[node_id].y = y
            y += nodes[node_id].height + NODE_GAP

    def settle(layer: list[str], neighbours: dict[str, list[str]]) -> None:
        heights = [nodes[n].height for n in layer]
        wanted = []
        for node_id in layer:
            near = [nodes[n].center_y for n in neighbours[node_id]]
            node = nodes[node_id]
            wanted.append(sum(near) / len(near) - node.height / 2 if near else node.y)
        # Two placements that keep order and gaps, one packed from the top and one from the
        # bottom; their average keeps both properties and does not drift one way.
        down, floor = [], MARGIN
        for want, height in zip(wanted, heights, strict=True):
            down.append(max(want, floor))
            floor = down[-1] + height + NODE_GAP
        up, ceiling = [0.0] * len(layer), float("inf")
        for i in reversed(range(len(layer))):
            up[i] = min(wanted[i], ceiling - heights[i] - NODE_GAP)
            ceiling = up[i]
        floor = MARGIN
        for i, node_id in enumerate(layer):
            nodes[node_id].y = max((down[i] + up[i]) / 2, floor)
            floor = nodes[node_id].y + heights[i] + NODE_GAP

    for _ in range(4):
        for layer in order[1:]:
            settle(layer, preds)
        for layer in reversed(order[:-1]):
            settle(layer, succs)
    highest = min((n.y for n in nodes.values()), default=top)
    for node in nodes.values():
        node.y += top - highest


def layout(graph: Graph) -> Graph:
    """Positions every node and routes every edge and column link, in place."""
    node_ids = sorted(graph.nodes)
    pairs = [(e.source, e.target) for e in graph.edges if e.source != e.target]
    layers = _layers(node_ids, _acyclic(node_ids, pairs))

    # dummy nodes for edges spanning more than one layer (either direction after reversal)
    chains: dict[tuple[str, str], list[str]] = {}
    split: list[tuple[str, str]] = []
    for s, t in pairs:
        low, high = (s, t) if layers[s] < layers[t] else (t, s)
        chain = [low]
        for step in range(layers[low] + 1, layers[high]):
            dummy = f"~{low}->{high}#{step}"
            graph.nodes[dummy] = Node(dummy, "dummy", "")
            layers[dummy] = step
            chain.append(dummy)
        chain.append(high)
        chains[(s, t)] = chain if low == s else list(reversed(chain))
        split.extend(pairwise(chain))
    split = sorted(set(split))
    for node in graph.nodes.values():
        node.layer = layers[node.id]
        _size(node)

    # each connected part laid out on its own and stacked: unrelated pipelines neither
    # interleave nor push each other around
    top = MARGIN
    for component in _components(sorted(graph.nodes), split):
        members = set(component)
        local = [e for e in split if e[0] in members]
        base = min(layers[n] for n in component)
        order = _order({n: layers[n] - base for n in component}, local)
        x = MARGIN
        for layer in order:
            width = max((graph.nodes[n].width for n in layer), default=0.0)
            for node_id in layer:
                node = graph.nodes[node_id]
                node.x = x + (width - node.width) / 2
            x += width + LAYER_GAP
        part = {n: graph.nodes[n] for n in component}
        _place_vertically(order, part, local, top)
        top = max(n.y + n.height for n in part.values()) + COMPONENT_GAP

    for edge in graph.edges:
        edge.points = _route(graph, chains.get((edge.source, edge.target), []), None, None)
    for link in graph.links:
        into = chains.get((link.source, link.job), [link.source, link.job])
        out = chains.get((link.job, link.target), [link.job, link.target])
        link.points = _route(graph, into, link.source_field, None) + _route(
            graph, out, None, link.target_field
        )
    visible = graph.visible_nodes() or list(graph.nodes.values())
    graph.width = max((n.x + n.width for n in visible), default=0.0) + MARGIN
    graph.height = max((n.y + n.height for n in graph.nodes.values()), default=0.0) + MARGIN
    return graph


def _route(
    graph: Graph, chain: list[str], source_field: str | None, target_field: str | None
) -> list[tuple[float, float]]:
    """Points from the right side of the first node, through the dummies, to the left side of
    the last one; at a field's row when one is given. Edges running right to left (a broken
    cycle) leave from the left and arrive on the right."""
    if len(chain) < 2:
        return []
    first, last = graph.nodes[chain[0]], graph.nodes[chain[-1]]
    forward = first.layer <= last.layer
    y0 = first.field_y(source_field) if source_field else first.anchor_y
    y1 = last.field_y(target_field) if target_field else last.anchor_y
    points = [(first.x + first.width if forward else first.x, y0)]
    for dummy_id in chain[1:-1]:
        dummy = graph.nodes[dummy_id]
        points.append((dummy.x, dummy.center_y))
    points.append((last.x if forward else last.x + last.width, y1))
    return points


def build_laid_out_graph(log: EventLog) -> Graph:
    """The graph of ``log``, laid out: what the renderers draw."""
    return layout(build_graph(log))
