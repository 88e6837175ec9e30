"""The HTML report in a real headless Chromium (Debian's, driven by Playwright without its
own browser download): the page loads with no console error and no request, shows the JSON's
totals, one graph box per layer (or folded block) and one edge per joined pair, a click shows
`archcalc explain`'s text, and sorting by MACs puts the largest layer first. Screenshots of
ResNet-50's page and a diff page go to $ARCHCALC_ARTIFACTS (default .ci/artifacts/, not
committed).

Without Chromium or Playwright these tests skip, except under CI=true, where they fail: CI
installs both (.ci/run)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from archcalc.cli.main import cli

ROOT = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = Path(os.environ.get("ARCHCALC_ARTIFACTS", ROOT / ".ci" / "artifacts"))
# As the machine notes advise for a closed network: no background connections, no sandbox as root.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    given = os.environ.get("ARCHCALC_CHROMIUM")
    if given:
        return given if os.path.isfile(given) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    executable = chromium_path()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        executable = None
    if executable is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the browser tests: install Debian's chromium and `pip install playwright`")
        pytest.skip("no chromium or playwright here (CI installs them)")
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        # A persistent context on a fresh folder: Chromium gets the --user-data-dir it is given.
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=executable, headless=True, args=FLAGS,
            viewport={"width": 1400, "height": 900})
        yield context
        context.close()


class Page:
    """A report opened in the browser, with every request and console message it made."""

    def __init__(self, context, path: Path):
        self.requests: list[str] = []
        self.problems: list[str] = []
        self.page = context.new_page()
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("console", lambda message: self.problems.append(f"{message.type}: {message.text}")
                     if message.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        self.url = path.resolve().as_uri()
        self.page.goto(self.url)
        self.page.wait_for_selector("html[data-ready]", timeout=30_000)

    def numbers(self, selector: str) -> dict[str, int]:
        """Exact numbers shown by elements with attribute `selector` ('data-total'), by its value."""
        found = self.page.eval_on_selector_all(f"[{selector}]", f"els => els.map(e => [e.getAttribute('{selector}'), "
                                                                  "e.textContent])")
        numbers = {key: text.replace(",", "").removesuffix(" B").lstrip("+") for key, text in found}
        return {key: int(text) for key, text in numbers.items() if text.lstrip("-").isdigit()}

    def show_level(self, index: int) -> None:
        self.page.select_option("#level", index=index)


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def resnet50(browser, tmp_path_factory):
    target = tmp_path_factory.mktemp("pages") / "resnet50.html"
    run("analyze", "specs/resnet50.yaml", "--format", "html", "-o", str(target))
    return Page(browser, target), json.loads(run("analyze", "specs/resnet50.yaml", "--format", "json"))


@pytest.fixture(scope="module")
def diff(browser, tmp_path_factory):
    target = tmp_path_factory.mktemp("pages") / "diff.html"
    args = ("diff", "specs/resnet18.yaml", "specs/resnet34.yaml")
    run(*args, "--format", "html", "-o", str(target))
    return Page(browser, target), json.loads(run(*args, "--format", "json", "--all"))


def test_page_loads_alone_without_errors(resnet50, diff):
    for page, _ in (resnet50, diff):
        assert page.problems == []
        assert page.requests == [page.url]  # the page itself, nothing else


def test_totals_on_the_page_are_the_json_totals(resnet50):
    page, document = resnet50
    shown = page.numbers("data-total")
    expected = {key: value for key, value in document["totals"].items() if key != "partial"}
    assert shown == expected
    assert shown["params"] == 25_557_032 and shown["macs"] == 4_089_184_256  # torchvision's published counts


def test_one_box_per_layer_and_one_edge_per_joined_pair(resnet50):
    page, document = resnet50
    layers = [layer["name"] for layer in document["layers"] if not layer["parent"]]
    page.show_level(page.page.locator("#level option").count() - 1)  # every layer
    boxes = page.page.eval_on_selector_all("g.node.layer", "els => els.map(e => e.dataset.name)")
    assert boxes == layers
    producer = {out["name"]: layer["name"] for layer in document["layers"] for out in layer["outputs"]}
    pairs = {(producer[t["name"]], layer["name"]) for layer in document["layers"] for t in layer["inputs"]
             if t["name"] in producer}
    drawn = page.page.eval_on_selector_all("path.edge", "els => els.map(e => [+e.dataset.from, +e.dataset.to])")
    between_layers = {(layers[s], layers[t]) for s, t in drawn if s < len(layers)}
    assert between_layers == pairs and len(between_layers) == sum(s < len(layers) for s, _ in drawn)
    # And the graph input feeds conv1 alone.
    assert page.page.locator("g.node.input").count() == 1
    assert [(s, t) for s, t in drawn if s >= len(layers)] == [(len(layers), layers.index("conv1"))]


def test_the_page_opens_on_the_blocks(resnet50):
    page, _ = resnet50
    page.page.reload()
    page.page.wait_for_selector("html[data-ready]")
    csv = run("analyze", "specs/resnet50.yaml", "--depth", "2", "--format", "csv").splitlines()[1:]
    boxes = page.page.eval_on_selector_all("g.node.layer", "els => els.map(e => e.dataset.name)")
    assert boxes == [line.split(",")[0] for line in csv]  # 23 boxes: the --depth 2 rows


def test_clicking_a_box_shows_its_explain_text(resnet50):
    page, document = resnet50
    page.show_level(page.page.locator("#level option").count() - 1)
    page.page.click("g.node.layer[data-name='layer2.0.conv2']")
    shown = page.page.inner_text("#explain")
    explained = run("explain", "specs/resnet50.yaml", "layer2.0.conv2").strip().splitlines()
    assert "H_out = floor((56 + 2*1 - 3)/2) + 1 = 28" in shown
    for line in explained:
        assert line.strip() in shown


def test_sorting_by_macs_puts_the_largest_first(resnet50):
    page, document = resnet50
    page.show_level(page.page.locator("#level option").count() - 1)
    page.page.click("#layers th[data-sort=macs]")
    first = page.page.inner_text("#layers tr[data-row] td.name >> nth=0")
    largest = max(document["layers"], key=lambda layer: layer["macs"])
    assert first == largest["name"] == "conv1"  # 112*112*64 * 3*7*7 = 118,013,952 MACs


def test_screenshots_for_the_artifacts(resnet50, diff):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for (page, _), name in ((resnet50, "resnet50"), (diff, "diff-resnet18-resnet34")):
        page.page.reload()
        page.page.wait_for_selector("html[data-ready]")
        page.page.evaluate("window.scrollTo(0, 0)")  # a reload keeps the scroll position
        page.page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
        page.page.screenshot(path=str(ARTIFACTS / f"{name}-full.png"), full_page=True)
        page.page.locator("#graph-section").screenshot(path=str(ARTIFACTS / f"{name}-graph.png"))
        assert (ARTIFACTS / f"{name}.png").stat().st_size > 10_000


def test_diff_page_shows_both_totals_and_marks_the_changes(diff):
    page, document = diff
    for side in ("old", "new", "delta"):
        shown = page.numbers(f"data-{side}")
        for key, value in shown.items():
            if not key.endswith("bytes"):
                assert value == document["totals"][key][side], (side, key)
    assert page.numbers("data-old")["params"] == 11_689_512 and page.numbers("data-new")["params"] == 21_797_672
    page.show_level(page.page.locator("#level option").count() - 1)
    assert page.page.locator("g.node.st-added").count() == document["counts"]["added"]
    assert page.page.locator("#layers tr.status-added").count() == document["counts"]["added"]
    assert page.page.locator("#difflayers tr.status-added").count() == document["counts"]["added"]


def test_a_graph_too_large_to_draw_opens_folded_with_a_note(browser, tmp_path):
    import onnx
    from test_html import chain_model

    from archcalc.report.html import MAX_GRAPH_NODES

    model = tmp_path / "chain.onnx"
    onnx.save(chain_model(MAX_GRAPH_NODES + 2), str(model))
    target = tmp_path / "chain.html"
    run("analyze", str(model), "--format", "html", "-o", str(target))
    page = Page(browser, target)
    assert page.problems == [] and page.requests == [page.url]
    assert 0 < page.page.locator("g.node.layer").count() <= MAX_GRAPH_NODES
    assert "too many to draw" in page.page.inner_text("#graph-note")
    page.show_level(page.page.locator("#level option").count() - 1)  # every layer: not drawn, the note says why
    assert page.page.locator("g.node").count() == 0 and "too many to draw" in page.page.inner_text("#graph-note")
    assert page.page.locator("#layers tr[data-row]").count() == 1000  # the table shows the first thousand rows


def test_opening_one_block_shows_its_layers_among_the_folded_others(resnet50):
    page, document = resnet50
    page.page.reload()
    page.page.wait_for_selector("html[data-ready]")
    page.page.click("g.node.layer[data-name='layer2.0']")
    page.page.click("#open-block")
    boxes = page.page.eval_on_selector_all("g.node.layer", "els => els.map(e => e.dataset.name)")
    inside = [layer["name"] for layer in document["layers"] if layer["block"] == "layer2.0"]
    assert len(inside) == 12  # conv, bn, relu x3 (the last relu after the add), downsample conv and bn, add
    assert boxes == boxes[:boxes.index(inside[0])] + inside + boxes[boxes.index(inside[-1]) + 1:]
    assert len(boxes) == 23 - 1 + 12 and "layer1.0" in boxes and "layer2.1" in boxes
    assert page.page.inner_text("#explain").startswith("layer2.0.conv1 (Conv)")  # its first layer, selected
    page.page.click("#fold-block")
    assert page.page.locator("g.node.layer").count() == 23


def test_an_op_without_a_rule_is_named_and_the_totals_marked_partial(browser, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["x"], ["a"], name="relu"),
             helper.make_node("Mystery", ["a"], ["y"], name="mystery", domain="example.custom")]
    graph = helper.make_graph(nodes, "partial", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8])])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("example.custom", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    path = tmp_path / "partial.onnx"
    onnx.save(model, str(path))
    target = tmp_path / "partial.html"
    run("analyze", str(path), "--format", "html", "-o", str(target))
    document = json.loads(run("analyze", str(path), "--format", "json"))
    page = Page(browser, target)
    assert page.problems == []
    assert "partial" in page.page.inner_text("#totals")
    warnings = page.page.inner_text("#warnings")
    assert "Mystery" in warnings and all(w in warnings for w in document["warnings"])
    page.show_level(page.page.locator("#level option").count() - 1)
    assert page.page.inner_text("#layers tr.unmodelled td:nth-child(5)") == "?"  # MACs unknown, not 0
