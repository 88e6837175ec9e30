"""The sweep's HTML page (analyze --sweep --format html): the sweep's JSON document embedded
as it is, drawn in headless Chromium (skipped without it, except under CI, as
test_html_browser.py): no console error, no request, one dot per point at the point's value,
a Latency metric only with --device."""

from __future__ import annotations

import json
import re
from pathlib import Path

from click.testing import CliRunner
from test_html_browser import Page, browser  # noqa: F401 (the browser fixture, shared)

from archcalc.cli.main import cli

GPT2 = ("analyze", "specs/gpt2.yaml", "--input-shape", "input_ids=batch,seq", "--sweep", "seq=128,512,2048",
        "--sweep", "batch=1,8", "--kv-dtype", "fp16")
DEVICE = ("--device", "a100", "--precision", "fp16")


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def embedded(page: str) -> dict:
    payload = re.search(r'<script type="application/json" id="archcalc-data">(.*?)</script>', page, re.S)
    assert payload is not None
    return json.loads(payload.group(1))["json"]


def test_the_page_embeds_the_sweep_json_document(tmp_path):
    target = tmp_path / "sweep.html"
    run(*GPT2, *DEVICE, "--format", "html", "-o", str(target))
    assert embedded(target.read_text()) == json.loads(run(*GPT2, *DEVICE, "--format", "json"))
    assert "<script src" not in target.read_text() and "<title>archcalc sweep: gpt2</title>" in target.read_text()


def test_the_chart_in_a_browser(browser, tmp_path: Path):  # noqa: F811 (the fixture imported above)
    target = tmp_path / "sweep.html"
    run(*GPT2, *DEVICE, "--format", "html", "-o", str(target))
    document = json.loads(run(*GPT2, *DEVICE, "--format", "json"))
    page = Page(browser, target)
    assert page.problems == [] and page.requests == [page.url]
    metrics = page.page.eval_on_selector_all("#sweep-metric button", "els => els.map(e => e.dataset.metric)")
    assert metrics == ["macs", "flops", "peak_activation_bytes", "activation_bytes", "kv_cache_bytes", "latency_s"]
    assert page.page.locator("#sweep-points tr.point-row").count() == len(document["points"]) == 6
    for metric in ("macs", "latency_s"):
        page.page.click(f"button[data-metric={metric}]")
        dots = page.page.eval_on_selector_all("circle.point", "els => els.map(e => [+e.dataset.x, e.dataset.value])")
        # one line per batch, each along seq in order: the points batch 1 first, then batch 8
        expected = sorted(((p["bindings"]["batch"], p["bindings"]["seq"]), p[metric]) for p in document["points"])
        assert [(x, float(v)) for x, v in dots] == [(seq, float(value)) for (_, seq), value in expected]
        lines = page.page.eval_on_selector_all("polyline.series", "els => els.map(e => e.dataset.series)")
        assert lines == ["batch=1", "batch=8"]


def test_no_latency_without_a_device(browser, tmp_path: Path):  # noqa: F811
    target = tmp_path / "sweep.html"
    run(*GPT2, "--format", "html", "-o", str(target))
    page = Page(browser, target)
    assert page.problems == []
    metrics = page.page.eval_on_selector_all("#sweep-metric button", "els => els.map(e => e.dataset.metric)")
    assert "latency_s" not in metrics and "kv_cache_bytes" in metrics
