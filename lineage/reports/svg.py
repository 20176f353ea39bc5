"""Drawing a laid-out lineage graph: a standalone SVG, and a self-contained HTML page.

The SVG carries its own ``<style>`` so it renders the same alone or inlined in a page, and a
``<title>`` per node and link so even the standalone file explains itself on hover. The page
adds a small inline script (no external assets: reports travel by mail and land on machines
without internet) that highlights the whole upstream and downstream lineage of the hovered
node or field, toggles column links, and honours ``#focus=<node id>`` /
``#field=<node id>|<field>`` in the address, so a link can point at one dataset's lineage.

Colours are solid and distinct (dataset headers blue, jobs violet, read/write edges amber,
unprotected personal-data links red, protected ones green, highlight pink) so a screenshot can
be checked by counting pixels, and so they survive printing in greyscale as different shades.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from string import Template

from lineage.reports.graph import CHAR_WIDTH, HEADER, MAX_FIELDS, ROW, Graph, Node

COLOURS = {
    "dataset": "#2563eb",
    "dataset_fill": "#eff6ff",
    "job": "#7c3aed",
    "edge": "#f59e0b",
    "exposed": "#dc2626",
    "masked": "#16a34a",
    "plain": "#94a3b8",
    "personal": "#ea580c",
    "failed": "#dc2626",
    "highlight": "#db2777",
}

STYLE = Template(
    """
.lineage-graph { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif;
  font-size: 12px; background: #ffffff; }
.lineage-graph text { fill: #111827; }
.lineage-graph .edge { fill: none; stroke: $edge; stroke-width: 2.5; }
.lineage-graph .link { fill: none; stroke-width: 2; }
.lineage-graph .link.exposed { stroke: $exposed; }
.lineage-graph .link.masked { stroke: $masked; stroke-dasharray: 7 3; }
.lineage-graph .link.plain { stroke: $plain; stroke-width: 1.2; }
.lineage-graph .frame { fill: $dataset_fill; stroke: $dataset; stroke-width: 1.5; }
.lineage-graph .header { fill: $dataset; }
.lineage-graph .header-text, .lineage-graph .job-text { fill: #ffffff; font-weight: bold; }
.lineage-graph .sub-text { fill: #e0e7ff; font-size: 10px; }
.lineage-graph .job .frame { fill: $job; stroke: $job; }
.lineage-graph .job.failed .frame { stroke: $failed; stroke-width: 4; }
.lineage-graph .badge { fill: $personal; }
.lineage-graph .badge-text { fill: #ffffff; font-size: 9px; font-weight: bold; }
.lineage-graph .protection { fill: $masked; font-size: 10px; }
.lineage-graph.no-links .link, .lineage-graph.personal-only .link.plain { display: none; }
.lineage-graph.focus .node:not(.on), .lineage-graph.focus .edge:not(.on),
.lineage-graph.focus .link:not(.on) { opacity: 0.12; }
.lineage-graph.focus .node.on > .frame { stroke: $highlight; stroke-width: 4; }
.lineage-graph.focus .edge.on { stroke: $highlight; }
.lineage-graph.focus .field.on > .row { fill: #fce7f3; }
.lineage-graph .field .row { fill: transparent; }
"""
).substitute(COLOURS)

SCRIPT = r"""
(function () {
  "use strict";
  var svg = document.querySelector("svg.lineage-graph");
  if (!svg) { return; }
  var panel = document.getElementById("details");
  var nodes = {}, down = {}, up = {}, linkDown = {}, linkUp = {};
  function push(map, key, value) { (map[key] = map[key] || []).push(value); }
  svg.querySelectorAll(".node").forEach(function (n) { nodes[n.dataset.id] = n; });
  svg.querySelectorAll(".edge").forEach(function (e) {
    push(down, e.dataset.source, e); push(up, e.dataset.target, e);
  });
  svg.querySelectorAll(".link").forEach(function (l) {
    push(linkDown, l.dataset.source + "|" + l.dataset.sourceField, l);
    push(linkUp, l.dataset.target + "|" + l.dataset.targetField, l);
  });
  // everything reachable upstream and downstream of start, through the given adjacency
  function walk(start, forward, backward, ends) {
    var found = {items: [], keys: {}};
    [[forward, ends[1]], [backward, ends[0]]].forEach(function (way) {
      var queue = [start], seen = {};
      seen[start] = true;
      while (queue.length) {
        var key = queue.shift();
        (way[0][key] || []).forEach(function (item) {
          found.items.push(item);
          var next = way[1](item);
          found.keys[next] = true;
          if (!seen[next]) { seen[next] = true; queue.push(next); }
        });
      }
    });
    found.keys[start] = true;
    return found;
  }
  function clear() {
    svg.classList.remove("focus");
    svg.querySelectorAll(".on").forEach(function (el) { el.classList.remove("on"); });
  }
  function show(text) { if (panel) { panel.textContent = text; } }
  function focusNode(id) {
    clear();
    if (!nodes[id]) { return false; }
    var got = walk(id, down, up, [
      function (e) { return e.dataset.source; }, function (e) { return e.dataset.target; }]);
    svg.classList.add("focus");
    got.items.forEach(function (e) { e.classList.add("on"); });
    Object.keys(got.keys).forEach(function (k) { if (nodes[k]) { nodes[k].classList.add("on"); } });
    svg.querySelectorAll(".link").forEach(function (l) {
      if (got.keys[l.dataset.source] && got.keys[l.dataset.target]) { l.classList.add("on"); }
    });
    show(nodes[id].querySelector("title").textContent);
    return true;
  }
  function focusField(id, field) {
    clear();
    if (!nodes[id]) { return false; }
    var got = walk(id + "|" + field, linkDown, linkUp, [
      function (l) { return l.dataset.source + "|" + l.dataset.sourceField; },
      function (l) { return l.dataset.target + "|" + l.dataset.targetField; }]);
    svg.classList.add("focus");
    got.items.forEach(function (l) {
      l.classList.add("on");
      if (nodes[l.dataset.job]) { nodes[l.dataset.job].classList.add("on"); }
    });
    Object.keys(got.keys).forEach(function (k) {
      var cut = k.lastIndexOf("|"), node = nodes[k.slice(0, cut)];
      if (!node) { return; }
      node.classList.add("on");
      node.querySelectorAll(".field").forEach(function (f) {
        if (f.dataset.field === k.slice(cut + 1)) { f.classList.add("on"); }
      });
    });
    show(id + " · " + field + ": " + got.items.length + " column link(s)");
    return true;
  }
  var pinned = false;
  svg.querySelectorAll(".node").forEach(function (n) {
    n.addEventListener("mouseenter", function () { if (!pinned) { focusNode(n.dataset.id); } });
    n.addEventListener("mouseleave", function () { if (!pinned) { clear(); } });
    n.addEventListener("click", function () { pinned = !pinned; if (pinned) { focusNode(n.dataset.id); } });
    n.querySelectorAll(".field").forEach(function (f) {
      f.addEventListener("mouseenter", function (ev) {
        if (!pinned) { ev.stopPropagation(); focusField(n.dataset.id, f.dataset.field); }
      });
      f.addEventListener("mouseleave", function () { if (!pinned) { focusNode(n.dataset.id); } });
    });
  });
  function toggle(id, cls, whenChecked) {
    var box = document.getElementById(id);
    if (!box) { return; }
    var apply = function () { svg.classList.toggle(cls, box.checked === whenChecked); };
    box.addEventListener("change", apply);
    apply();
  }
  toggle("show-links", "no-links", false);
  toggle("personal-only", "personal-only", true);
  function fromHash() {
    var hash = decodeURIComponent(window.location.hash.slice(1));
    if (hash.indexOf("focus=") === 0) { pinned = focusNode(hash.slice(6)); }
    else if (hash.indexOf("field=") === 0) {
      var value = hash.slice(6), cut = value.lastIndexOf("|");
      pinned = focusField(value.slice(0, cut), value.slice(cut + 1));
    }
  }
  window.addEventListener("hashchange", fromHash);
  fromHash();
  document.documentElement.setAttribute("data-graph-ready", String(Object.keys(nodes).length));
})();
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def path_data(points: Sequence[tuple[float, float]]) -> str:
    """A smooth path through ``points``: cubic segments leaving and arriving horizontally,
    which reads as flow from left to right."""
    if not points:
        return ""
    (x0, y0), parts = points[0], [f"M{_n(points[0][0])},{_n(points[0][1])}"]
    for x1, y1 in points[1:]:
        mid = (x1 - x0) / 2
        parts.append(f"C{_n(x0 + mid)},{_n(y0)} {_n(x1 - mid)},{_n(y1)} {_n(x1)},{_n(y1)}")
        x0, y0 = x1, y1
    return " ".join(parts)


def _fit(text: str, width: float, scale: float = 1.0) -> str:
    """``text`` cut with an ellipsis to fit ``width`` (``scale``: font size relative to 12px)."""
    limit = max(int(width / (CHAR_WIDTH * scale)), 4)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _dataset(node: Node, element_id: str) -> list[str]:
    x, y, w, h = node.x, node.y, node.width, node.height
    out = [
        f'<g class="node dataset" id="{element_id}" data-id="{_e(node.id)}">',
        f"<title>{_e(node.title)}</title>",
        f'<rect class="frame" x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" rx="6"/>',
        f'<rect class="header" x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(HEADER)}" '
        'rx="6"/>',
        f'<text class="header-text" x="{_n(x + 10)}" y="{_n(y + 18)}">'
        f"{_e(_fit(node.label, w - 20, 1.1))}</text>",
        f'<text class="sub-text" x="{_n(x + 10)}" y="{_n(y + 33)}">'
        f"{_e(_fit(node.sublabel + ' · ' + node.status, w - 20, 0.85))}</text>",
    ]
    for index, row in enumerate(node.fields[:MAX_FIELDS]):
        top = y + HEADER + ROW * index
        out.append(f'<g class="field" data-field="{_e(row.name)}">')
        out.append(
            f'<rect class="row" x="{_n(x)}" y="{_n(top)}" width="{_n(w)}" height="{_n(ROW)}"/>'
        )
        text_x = x + 10
        if row.personal:
            out.append(
                f'<rect class="badge" x="{_n(x + 6)}" y="{_n(top + 3)}" width="26" height="12" '
                'rx="3"/>'
            )
            out.append(
                f'<text class="badge-text" x="{_n(x + 9)}" y="{_n(top + 12.5)}">'
                f"{_e((row.classification or '')[:3])}</text>"
            )
            text_x = x + 38
        label = row.name
        out.append(
            f'<text x="{_n(text_x)}" y="{_n(top + 13)}">{_e(_fit(label, x + w - text_x - 8))}'
            "</text>"
        )
        if row.protection:
            out.append(
                f'<text class="protection" x="{_n(x + w - 6)}" y="{_n(top + 13)}" '
                f'text-anchor="end">{_e(row.protection)}</text>'
            )
        out.append("</g>")
    if len(node.fields) > MAX_FIELDS:
        top = y + HEADER + ROW * MAX_FIELDS
        out.append(
            f'<text x="{_n(x + 10)}" y="{_n(top + 13)}">+{len(node.fields) - MAX_FIELDS} more '
            "fields</text>"
        )
    out.append("</g>")
    return out


def _job(node: Node, element_id: str) -> list[str]:
    x, y, w, h = node.x, node.y, node.width, node.height
    failed = " failed" if node.status in ("FAIL", "ABORT") else ""
    return [
        f'<g class="node job{failed}" id="{element_id}" data-id="{_e(node.id)}">',
        f"<title>{_e(node.title)}</title>",
        f'<rect class="frame" x="{_n(x)}" y="{_n(y)}" width="{_n(w)}" height="{_n(h)}" rx="12"/>',
        f'<text class="job-text" x="{_n(x + w / 2)}" y="{_n(y + 21)}" text-anchor="middle">'
        f"{_e(_fit(node.label, w - 16, 1.1))}</text>",
        f'<text class="sub-text" x="{_n(x + w / 2)}" y="{_n(y + 38)}" text-anchor="middle">'
        f"{_e(_fit(node.sublabel, w - 16, 0.85))}</text>",
        "</g>",
    ]


def render_svg(graph: Graph, *, label: str = "lineage graph") -> str:
    """The graph as one standalone SVG document (styles inside, no script)."""
    width, height = max(graph.width, 200.0), max(graph.height, 80.0)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage-graph" role="img" '
        f'aria-label="{_e(label)}" width="{_n(width)}" height="{_n(height)}" '
        f'viewBox="0 0 {_n(width)} {_n(height)}">',
        f"<style>{STYLE}</style>",
        "<defs>",
        f'<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        f'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" '
        f'fill="{COLOURS["edge"]}"/></marker>',
        "</defs>",
        f'<rect x="0" y="0" width="{_n(width)}" height="{_n(height)}" fill="#ffffff"/>',
    ]
    if not graph.nodes:
        out.append('<text x="20" y="40">No runs in the event log.</text>')
    out.append('<g class="edges">')
    for edge in graph.edges:
        out.append(
            f'<path class="edge {edge.kind}" data-source="{_e(edge.source)}" '
            f'data-target="{_e(edge.target)}" d="{path_data(edge.points)}" '
            'marker-end="url(#arrow)"/>'
        )
    out.append("</g>")
    out.append('<g class="links">')
    for link in graph.links:
        title = (
            f"{link.source.split(':', 1)[1]}#{link.source_field} → "
            f"{link.target.split(':', 1)[1]}#{link.target_field}: {link.description}"
        )
        out.append(
            f'<path class="link {link.kind}" data-source="{_e(link.source)}" '
            f'data-source-field="{_e(link.source_field)}" data-job="{_e(link.job)}" '
            f'data-target="{_e(link.target)}" data-target-field="{_e(link.target_field)}" '
            f'd="{path_data(link.points)}"><title>{_e(title)}</title></path>'
        )
    out.append("</g>")
    out.append('<g class="nodes">')
    for index, node in enumerate(sorted(graph.visible_nodes(), key=lambda n: n.id)):
        element_id = f"n{index}"
        out.extend(_dataset(node, element_id) if node.kind == "dataset" else _job(node, element_id))
    out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


PAGE = Template(
    """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>$title</title>
<style>
body { margin: 0; font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif;
  color: #111827; background: #ffffff; }
header { padding: 8px 16px; border-bottom: 1px solid #e5e7eb; font-size: 13px; }
header h1 { font-size: 16px; margin: 0 0 4px 0; }
.controls label { margin-right: 14px; }
.legend span { display: inline-block; margin-right: 12px; }
.legend i { display: inline-block; width: 18px; height: 4px; vertical-align: middle;
  margin-right: 4px; }
#details { white-space: pre-wrap; color: #374151; min-height: 1.2em; }
main { overflow: auto; }
</style>
</head>
<body>
<header>
<h1>$title</h1>
<div>$summary</div>
<div class="controls">
<label><input type="checkbox" id="show-links" checked> column lineage</label>
<label><input type="checkbox" id="personal-only"> only personal-data columns</label>
</div>
<div class="legend">$legend</div>
<div id="details">Hover a job, dataset or field to follow its lineage; click to pin.</div>
</header>
<main>
$svg
</main>
<script>$script</script>
</body>
</html>
"""
)


def render_graph_html(graph: Graph, *, title: str, source: str) -> str:
    """A self-contained page: the SVG inline, the controls, the script. No external assets."""
    jobs = sum(1 for n in graph.nodes.values() if n.kind == "job")
    datasets = sum(1 for n in graph.nodes.values() if n.kind == "dataset")
    exposed = sum(1 for link in graph.links if link.kind == "exposed")
    summary = (
        f"{jobs} job(s), {datasets} dataset(s), {len(graph.edges)} read/write edge(s), "
        f"{len(graph.links)} column link(s), {exposed} carrying personal data unprotected. "
        f"Source: {_e(source)}"
    )
    legend_items = [
        ("edge", "read / write"),
        ("exposed", "personal data, unprotected"),
        ("masked", "personal data, masked or pseudonymised"),
        ("plain", "other column lineage"),
    ]
    legend = "".join(
        f'<span><i style="background:{COLOURS[key]}"></i>{_e(text)}</span>'
        for key, text in legend_items
    )
    # the script is static: nothing read from the events is ever written into it
    return PAGE.substitute(
        title=_e(title),
        summary=summary,
        legend=legend,
        svg=render_svg(graph, label=title),
        script=SCRIPT,
    )
