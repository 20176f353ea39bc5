"""The lineage graph page in a real headless Chromium: it must draw nodes and edges.

Screenshots are decoded with Pillow (a dependency of Apache Beam, so always installed here)
and checked by counting pixels of the colours the graph uses for jobs, dataset headers,
read/write edges and personal-data column links. A negative control renders a graph without
runs, so a check that could pass on a blank page would fail that test.

Needs Debian's ``chromium`` package (``apt-get install -y chromium``); skipped without it.
Chromium is started offline: ``--host-resolver-rules`` resolves every name to nothing, the
page loads from ``file://`` and needs no network.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from PIL import Image

from lineage.reports.events import build_log, read_files
from lineage.reports.graph import build_laid_out_graph
from lineage.reports.svg import COLOURS, render_graph_html

CHROMIUM = Path("/usr/bin/chromium")
EVENTS = Path(__file__).parent / "data" / "lineage" / "events.jsonl"
WINDOW = (1100, 1100)

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium package at /usr/bin/chromium (apt-get install -y chromium)",
)


def chromium(tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    profile = tmp_path / "profile"
    return subprocess.run(
        [
            str(CHROMIUM),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--user-data-dir={profile}",
            f"--window-size={WINDOW[0]},{WINDOW[1]}",
            *extra,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    )


def screenshot(tmp_path: Path, page: Path, fragment: str = "") -> Image.Image:
    png = tmp_path / f"shot{len(list(tmp_path.glob('shot*.png')))}.png"
    chromium(tmp_path, page.as_uri() + fragment, f"--screenshot={png}")
    return Image.open(png).convert("RGB")


def count_colours(image: Image.Image, names: list[str], tolerance: int = 8) -> dict[str, int]:
    """Pixels within ``tolerance`` of each named graph colour (anti-aliased edges excluded)."""
    targets = {name: tuple(int(COLOURS[name][i : i + 2], 16) for i in (1, 3, 5)) for name in names}
    counts = dict.fromkeys(names, 0)
    for n, colour in image.getcolors(maxcolors=image.width * image.height):
        for name, target in targets.items():
            if all(abs(a - b) <= tolerance for a, b in zip(colour, target, strict=True)):
                counts[name] += n
    return counts


def graph_drawn(counts: dict[str, int], jobs: int, datasets: int) -> list[str]:
    """What is missing from a screenshot for the graph to count as drawn (empty: all there).

    Thresholds are a fraction of the area the nodes cover (150 px minimum width: 50 px job
    boxes, 42 px dataset headers), leaving room for the labels drawn over them.
    """
    expected = {
        "job": jobs * 150 * 50 * 0.5,
        "dataset": datasets * 150 * 42 * 0.5,
        "edge": 800,
        "exposed": 150,
        "masked": 150,
    }
    return [
        f"{name}: {counts[name]} < {int(least)}"
        for name, least in expected.items()
        if counts[name] < least
    ]


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("graph") / "graph.html"
    graph = build_laid_out_graph(read_files([EVENTS]))
    assert graph.width <= WINDOW[0] and graph.height + 140 <= WINDOW[1], "window too small"
    path.write_text(render_graph_html(graph, title="Lineage", source=str(EVENTS)))
    return path


NAMES = ["job", "dataset", "edge", "exposed", "masked", "highlight"]


def test_graph_page_draws_jobs_datasets_edges_and_column_links(page, tmp_path):
    counts = count_colours(screenshot(tmp_path, page), NAMES)
    assert graph_drawn(counts, jobs=4, datasets=8) == [], counts
    assert counts["highlight"] == 0  # nothing focused


def test_the_pixel_check_fails_on_a_graph_without_runs(tmp_path):
    empty = tmp_path / "empty.html"
    graph = build_laid_out_graph(build_log([], "nothing"))
    empty.write_text(render_graph_html(graph, title="Lineage", source="nothing"))
    counts = count_colours(screenshot(tmp_path, empty), NAMES)
    assert len(graph_drawn(counts, jobs=4, datasets=8)) == 5, counts


def test_focus_in_the_address_highlights_the_lineage_and_dims_the_rest(page, tmp_path):
    plain = count_colours(screenshot(tmp_path, page), NAMES)
    focus = "#focus=" + "dataset:file:/srv/ref/customers.csv"
    focused = count_colours(screenshot(tmp_path, page, focus), NAMES)
    # the three readers of customers.csv and everything downstream outlined in pink
    assert focused["highlight"] > 3000, focused
    # claims.ingest and the orders input are dimmed: fewer solid violet and blue pixels
    assert focused["job"] < plain["job"] - 150 * 50 * 0.5, (plain, focused)
    assert focused["dataset"] < plain["dataset"] - 2 * 150 * 42 * 0.5, (plain, focused)


def test_the_page_script_runs_and_indexes_every_node(page, tmp_path):
    dom = chromium(tmp_path, page.as_uri(), "--dump-dom").stdout
    assert 'data-graph-ready="12"' in dom  # set by the script's last line: no exception before
    # the checkboxes were applied on load: column links shown, not only personal ones
    svg_tag = dom[dom.index("<svg") : dom.index(">", dom.index("<svg"))]
    assert 'class="lineage-graph"' in svg_tag
