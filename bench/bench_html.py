"""Benchmark the HTML report: how long it takes to write, and to open in headless Chromium.

Run by hand (not part of the test suite; needs Debian's chromium and `pip install playwright`):

    python3 bench/bench_html.py

For ResNet-50 (specs/resnet50.yaml) and the 10k-node bench models of bench_onnx.py (cnn-10k:
Conv -> Relu x 5,000; residual-10k: 2,000 residual blocks) it prints the time to render the
page in Python and its size, then, opened from disk in Chromium: first contentful paint and
"interactive" (the page's own `archcalc-ready` mark: everything drawn, clicks answered), the
best of 3 loads each. The reference, measured in the same run and browser, is a static HTML
page of the same model's table (every row, no script): the ratios say what the drawing costs
over showing the numbers at all.
"""

from __future__ import annotations

import html
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
LOADS = 3


def static_table(analysis) -> str:
    """The reference page: every layer as a plain table row, no script."""
    from archcalc.engine.rows import rows

    cells = "".join(f"<tr><td>{html.escape(r.name)}</td><td>{r.op}</td><td>{r.output_shape}</td><td>{r.params}</td>"
                    f"<td>{r.macs}</td></tr>" for r in rows(analysis))
    return f"<!DOCTYPE html><html><body><h1>{html.escape(analysis.name)}</h1><table>{cells}</table></body></html>"


def open_times(context, path: str, ready: bool) -> tuple[float, float]:
    """Best of LOADS: (first contentful paint, interactive) in ms from navigation start."""
    best_paint = best_ready = float("inf")
    for _ in range(LOADS):
        page = context.new_page()
        page.goto("file://" + path)
        if ready:
            page.wait_for_selector("html[data-ready]", timeout=120_000)
        page.wait_for_function("performance.getEntriesByName('first-contentful-paint').length > 0", timeout=120_000)
        paint = page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime")
        done = (page.evaluate("performance.getEntriesByName('archcalc-ready')[0].startTime") if ready
                else page.evaluate("performance.timing.loadEventEnd - performance.timing.navigationStart"))
        # Interactive: drawn, painted and answering clicks (the script draws before the first paint).
        best_paint, best_ready = min(best_paint, paint), min(best_ready, max(done, paint))
        page.close()
    return best_paint, best_ready


def main() -> None:
    from bench_onnx import deep_cnn, residual_dag
    from playwright.sync_api import sync_playwright

    import archcalc
    from archcalc.report.html import analysis_page

    folder = tempfile.mkdtemp(prefix="archcalc-bench-html-")
    models = [("resnet50", "specs/resnet50.yaml")]
    for label, model in (("cnn-10k", deep_cnn(5000)), ("residual-10k", residual_dag(2000))):
        import onnx

        path = os.path.join(folder, label + ".onnx")
        onnx.save(model, path)
        models.append((label, path))
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            os.path.join(folder, "profile"), executable_path=os.environ.get("ARCHCALC_CHROMIUM", "/usr/bin/chromium"),
            headless=True, args=FLAGS, viewport={"width": 1400, "height": 900})
        print(f"{'model':14} {'layers':>7} {'render':>8} {'size':>9} | {'paint':>8} {'ready':>8} | "
              f"{'ref paint':>9} {'ref load':>8} | ratios paint, ready/ref load")
        for label, path in models:
            analysis = archcalc.analyze(path)
            started = time.perf_counter()
            page = analysis_page(analysis)
            render = time.perf_counter() - started
            report = os.path.join(folder, label + ".html")
            with open(report, "w", encoding="utf-8") as handle:
                handle.write(page)
            reference = os.path.join(folder, label + "-table.html")
            with open(reference, "w", encoding="utf-8") as handle:
                handle.write(static_table(analysis))
            paint, ready = open_times(context, report, True)
            ref_paint, ref_load = open_times(context, reference, False)
            print(f"{label:14} {len(analysis.layers):>7,} {render * 1e3:>6.0f}ms {len(page) / 2**20:>7.2f}MB | "
                  f"{paint:>6.0f}ms {ready:>6.0f}ms | {ref_paint:>7.0f}ms {ref_load:>6.0f}ms | "
                  f"{paint / ref_paint:.2f}x, {ready / ref_load:.2f}x")
        context.close()


if __name__ == "__main__":
    main()
