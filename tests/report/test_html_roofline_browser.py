"""The HTML report's roofline section (`analyze --format html --device X`) in real headless
Chromium: one point per layer with FLOPs, the roof's ridge at peak / bandwidth, hover text
naming the layer, its time and bound, and the time-by-op bars in the JSON's order.
Skips without Chromium or Playwright, as tests/report/test_html_browser.py does."""

from __future__ import annotations

import json
import math

import pytest

from tests.report.test_html_browser import ARTIFACTS, Page, browser, run  # noqa: F401 (browser: a fixture)

ARGS = ("analyze", "specs/resnet50.yaml", "--device", "a100", "--precision", "fp16", "--batch", "32")


@pytest.fixture(scope="module")
def on_a100(browser, tmp_path_factory):  # noqa: F811 (the imported fixture)
    target = tmp_path_factory.mktemp("pages") / "resnet50-a100.html"
    run(*ARGS, "--format", "html", "-o", str(target))
    return Page(browser, target), json.loads(run(*ARGS, "--format", "json"))


def test_one_point_per_layer_with_flops_and_nothing_fetched(on_a100):
    page, document = on_a100
    assert page.problems == [] and page.requests == [page.url]
    with_flops = [layer["name"] for layer in document["roofline"]["layers"] if layer["flops"] and layer["time_s"]]
    drawn = page.page.eval_on_selector_all("#roofline-chart circle.point", "els => els.map(e => e.dataset.name)")
    assert drawn == with_flops and len(drawn) == 175 - 1  # every ResNet-50 layer but the flatten (a view)
    intensities = page.page.eval_on_selector_all("#roofline-chart circle.point",
                                                 "els => els.map(e => +e.dataset.intensity)")
    assert intensities == pytest.approx([layer["intensity"] for layer in document["roofline"]["layers"]
                                         if layer["flops"] and layer["time_s"]])


def test_the_ridge_is_at_peak_over_bandwidth(on_a100):
    page, _ = on_a100
    # A100 fp16: 312e12 FLOP/s over 2039e9 B/s = 153.0 FLOPs per byte.
    ridge = float(page.page.get_attribute("#ridge", "data-intensity"))
    assert ridge == pytest.approx(312e12 / 2039e9) and round(ridge, 1) == 153.0
    # The roof bends where the ridge line stands: the path's second point has the ridge's x.
    knee_x = float(page.page.get_attribute("#roof-line", "d").split(" L")[1].split(",")[0])
    assert knee_x == pytest.approx(float(page.page.get_attribute("#ridge", "x1")))
    # On a log axis from x0 to x1, the ridge sits log(153 / x0) / log(x1 / x0) of the way along.
    x0 = float(page.page.get_attribute("#roofline-chart", "data-x0"))
    x1 = float(page.page.get_attribute("#roofline-chart", "data-x1"))
    share = math.log10(ridge / x0) / math.log10(x1 / x0)
    assert knee_x == pytest.approx(70 + share * (900 - 70 - 20))
    # Points left of the ridge are memory-bound, right of it compute-bound (no efficiencies on the A100).
    bounds = page.page.eval_on_selector_all("#roofline-chart circle.point", "els => els.map(e => "
                                            "[+e.dataset.intensity, e.querySelector('title').textContent])")
    assert all(("compute-bound" in text) == (intensity >= ridge) for intensity, text in bounds)


def test_hovering_a_point_names_the_layer_its_time_and_bound(on_a100):
    page, document = on_a100
    conv1 = next(layer for layer in document["roofline"]["layers"] if layer["name"] == "conv1")
    page.page.hover("#roofline-chart circle.point[data-name='conv1']")
    text = page.page.text_content("#roofline-hover")
    # conv1 at batch 32 on the A100, fp16: 61,032,832 bytes / 2039e9 + 4 us = 33.93 us, memory-bound.
    assert text.startswith("conv1 (Conv): 33.93 us, memory-bound") and conv1["bound"] == "memory"


def test_time_by_op_bars_follow_the_jsons_share_by_op(on_a100):
    page, document = on_a100
    rows = page.page.eval_on_selector_all("#time-by-op tr[data-op]", "els => els.map(e => [e.dataset.op, "
                                          "+e.dataset.fraction])")
    expected = [[entry["op"], entry["fraction"]] for entry in document["roofline"]["share_by_op"]]
    assert [op for op, _ in rows] == [op for op, _ in expected]
    assert [fraction for _, fraction in rows] == pytest.approx([fraction for _, fraction in expected])
    assert sum(fraction for _, fraction in rows) == pytest.approx(1.0)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.page.locator("#roofline").screenshot(path=str(ARTIFACTS / "resnet50-a100-roofline.png"))


def test_without_a_device_there_is_no_roofline_section(browser, tmp_path):  # noqa: F811
    target = tmp_path / "plain.html"
    run("analyze", "specs/lenet5.yaml", "--format", "html", "-o", str(target))
    page = Page(browser, target)
    assert page.problems == [] and page.page.locator("#roofline").count() == 0
