"""The HTML report's data, layout and writing, without a browser (tests/report/test_html_browser.py
drives the page itself): the page embeds exactly the --format json document, one graph node
per row and one edge per pair of rows a tensor joins, the live-bytes curve worked by hand, a
layout whose boxes never overlap, and bad -o paths refused with exit 2."""

from __future__ import annotations

import json
import os
import re

import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

import archcalc
from archcalc.cli.main import cli
from archcalc.report.graph_layout import NODE_HEIGHT, NODE_WIDTH, layered_layout
from archcalc.report.html import MAX_GRAPH_NODES, analysis_page

DATA = re.compile(r'<script type="application/json" id="archcalc-data">(.*?)</script>', re.S)


def page_data(text: str) -> dict:
    return json.loads(DATA.search(text).group(1))


def run(*args: str):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_live_bytes_of_lenet5_worked_by_hand():
    """LeNet-5, fp32, batch 1. The input (1x32x32 = 4,096 B) stays live; each output is freed
    after its last consumer. Outputs: conv1 6x28x28 = 18,816 B, relu 18,816, pool 6x14x14 =
    4,704, conv2 16x10x10 = 6,400, relu 6,400, pool 16x5x5 = 1,600, flatten 1,600, fc 120 =
    480, relu 480, fc 84 = 336, relu 336, fc 10 = 40. Live after each layer = live before +
    its output, then its inputs are freed: 4096+18816 = 22912; +18816 = 41728 (the peak);
    -18816 +4704 = 27616; -18816 +6400 = 15200; +6400 = 16896; -6400 +1600 = 12096;
    +1600 = 7296; -1600 +480 = 6176; +480 = 5056; -480 +336 = 4912; +336 = 4768; -336 +40 = 4472."""
    analysis = archcalc.analyze("specs/lenet5.yaml")
    assert analysis.live_bytes == (22912, 41728, 27616, 15200, 16896, 12096, 7296, 6176, 5056, 4912, 4768, 4472)
    assert analysis.totals.peak_activation_bytes == max(analysis.live_bytes) == 41728


def test_analysis_page_embeds_the_json_document(tmp_path):
    target = tmp_path / "r.html"
    printed = json.loads(run("analyze", "specs/resnet50.yaml", "--format", "json").output)
    run("analyze", "specs/resnet50.yaml", "--format", "html", "-o", str(target))
    data = page_data(target.read_text(encoding="utf-8"))
    assert data["json"] == printed
    assert data["page"]["live"]["bytes"][:1] and max(data["page"]["live"]["bytes"]) == \
        printed["totals"]["peak_activation_bytes"]
    assert not [name for name in os.listdir(tmp_path) if name != "r.html"]  # no temporary file left


def test_training_page_embeds_the_training_document(tmp_path):
    target = tmp_path / "t.html"
    args = ("analyze", "specs/lenet5.yaml", "--training", "--batch", "8", "--optimizer", "sgd")
    printed = json.loads(run(*args, "--format", "json").output)
    run(*args, "--format", "html", "-o", str(target))
    data = page_data(target.read_text(encoding="utf-8"))
    assert data["json"] == printed
    # Per row: forward MACs, backward MACs and saved bytes, the same per-layer numbers as the JSON.
    full = data["page"]["levels"][-1]
    assert [row[:2] for row in full["training"]] == [
        [layer["forward_macs"], layer["backward_macs"]] for layer in printed["training"]["layers"]]


def test_diff_page_embeds_the_diff_json_with_unchanged_rows(tmp_path):
    target = tmp_path / "d.html"
    printed = json.loads(run("diff", "specs/resnet18.yaml", "specs/resnet34.yaml", "--format", "json", "--all").output)
    run("diff", "specs/resnet18.yaml", "specs/resnet34.yaml", "--format", "html", "-o", str(target))
    data = page_data(target.read_text(encoding="utf-8"))
    assert data["json"] == printed
    full = data["page"]["levels"][-1]
    status = dict(zip((row[0] for row in full["rows"]), full["status"]))
    # ResNet-34 adds blocks layer1.2, layer2.2, layer2.3, ...: each of their layers is marked added.
    assert status["layer1.2.conv1"] == "added" and status["layer1.0.conv1"] == "unchanged"
    assert sum(s == "added" for s in full["status"]) == printed["counts"]["added"]


def layer_pairs(document: dict) -> set[tuple[str, str]]:
    """(producer, consumer) pairs of layers that a tensor joins, read from the JSON document."""
    producer = {out["name"]: layer["name"] for layer in document["layers"] for out in layer["outputs"]}
    return {(producer[t["name"]], layer["name"]) for layer in document["layers"] for t in layer["inputs"]
            if t["name"] in producer}


@pytest.mark.parametrize("model", ["specs/resnet50.yaml", "specs/googlenet.yaml",
                                   "tests/fixtures/onnx/resnet18_torchscript.onnx"])
def test_one_node_per_layer_and_one_edge_per_joined_pair(model):
    analysis = archcalc.analyze(model)
    data = page_data(analysis_page(analysis))
    document = data["json"]
    full = data["page"]["levels"][-1]
    assert [row[0] for row in full["rows"]] == [layer["name"] for layer in document["layers"] if not layer["parent"]]
    names = [row[0] for row in full["rows"]]
    drawn = {(names[s], names[t]) for s, t, *_ in full["edges"] if s < len(names)}
    assert len(drawn) == sum(s < len(names) for s, *_ in full["edges"])  # no pair twice
    assert drawn == layer_pairs(document)


def test_folded_levels_are_the_depth_rows_and_the_first_view_is_small():
    """ResNet-50 at depth 2: conv1, bn1, relu, maxpool, 16 bottlenecks, avgpool, flatten, fc =
    23 boxes, as `analyze --depth 2 --format csv` lists; the page opens on them."""
    data = page_data(analysis_page(archcalc.analyze("specs/resnet50.yaml")))
    page = data["page"]
    csv_rows = run("analyze", "specs/resnet50.yaml", "--depth", "2", "--format", "csv").output.splitlines()[1:]
    first = page["levels"][page["first_level"]]
    assert first["depth"] == 2 and [row[0] for row in first["rows"]] == [line.split(",")[0] for line in csv_rows]
    assert len(first["rows"]) == 23
    assert sum(row[3] for row in first["rows"]) == data["json"]["totals"]["params"] == 25_557_032
    assert sum(row[4] for row in first["rows"]) == data["json"]["totals"]["macs"] == 4_089_184_256
    # Edges between blocks: each block feeds the next only (the skip connections are inside).
    assert len(first["edges"]) == 22 + 1  # 22 between consecutive rows, 1 from the input


def test_depth_chooses_the_view_the_page_opens_on(tmp_path):
    target = tmp_path / "r.html"
    run("analyze", "specs/resnet50.yaml", "--depth", "1", "--format", "html", "-o", str(target))
    page = page_data(target.read_text(encoding="utf-8"))["page"]
    first = page["levels"][page["first_level"]]
    assert first["depth"] == 1 and [row[0] for row in first["rows"]] == [
        "conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool", "flatten", "fc"]


def test_onnx_export_folds_by_name_scope():
    page = page_data(analysis_page(archcalc.analyze("tests/fixtures/onnx/resnet18_torchscript.onnx")))["page"]
    first = page["levels"][page["first_level"]]
    # The reader makes TorchScript's module scopes the layers' blocks, so the page folds by them.
    assert [row[0] for row in first["rows"]][3:7] == ["layer1.0", "layer1.1", "layer2.0", "layer2.1"]


def test_an_exported_spec_folds_by_its_dotted_names_as_the_spec_does(tmp_path):
    path = str(tmp_path / "resnet18.onnx")
    run("export", "specs/resnet18.yaml", "-o", path, "--weights", "omit")
    exported = page_data(analysis_page(archcalc.analyze(path)))["page"]["levels"]
    spec = page_data(analysis_page(archcalc.analyze("specs/resnet18.yaml")))["page"]["levels"]
    # Depths 1 and 2 (stages, blocks) agree; deeper, `downsample.0` and `.1` read as one scope.
    assert [[row[0] for row in level["rows"]] for level in exported[:2]] == \
        [[row[0] for row in level["rows"]] for level in spec[:2]]
    assert [level["depth"] for level in spec[:2]] == [1, 2] and exported[-1]["rows"] == spec[-1]["rows"]


def chain_model(count: int) -> onnx.ModelProto:
    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"], name=f"relu{i}") for i in range(count)]
    graph = helper.make_graph(nodes, "chain", [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info(f"t{count}", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_graph_too_large_to_draw_is_folded_with_a_note(tmp_path):
    path = tmp_path / "chain.onnx"
    onnx.save(chain_model(MAX_GRAPH_NODES + 2), str(path))
    page = page_data(analysis_page(archcalc.analyze(str(path))))["page"]
    full = page["levels"][-1]
    assert "x" not in full and "too many to draw" in full["note"] and len(full["rows"]) == MAX_GRAPH_NODES + 2
    first = page["levels"][page["first_level"]]
    assert first["depth"] == 0 and len(first["x"]) == len(first["rows"]) + 1  # groups of layers, and the input
    assert sum(len(members) for members in first["members"]) == MAX_GRAPH_NODES + 2


def test_names_cannot_close_the_data_script(tmp_path):
    model = chain_model(2)
    model.graph.node[0].name = "</script><script>alert(1)</script>"
    path = tmp_path / "evil.onnx"
    onnx.save(model, str(path))
    text = analysis_page(archcalc.analyze(str(path)))
    assert "<script>alert" not in text and text.count("</script>") == 2
    assert page_data(text)["page"]["levels"][-1]["rows"][0][0] == "</script><script>alert(1)</script>"


def test_layout_ranks_are_generations_and_boxes_never_overlap():
    # A diamond with a skip edge: 0 -> 1 -> 2 -> 3, 0 -> 3 (spans two ranks), 1 -> 3.
    layout = layered_layout(4, [(0, 1), (1, 2), (2, 3), (0, 3), (1, 3)])
    assert layout.y[0] < layout.y[1] < layout.y[2] < layout.y[3]
    skip = layout.edges[3]
    assert len(skip) == 2 * 4  # source, a lane point on each of ranks 1 and 2, target
    assert skip[:2] == [layout.x[0], layout.y[0] + NODE_HEIGHT] and skip[-2:] == [layout.x[3], layout.y[3]]
    # The skip edge's lane points stay clear of the boxes on their ranks.
    for lane_x, node in ((skip[2], 1), (skip[4], 2)):
        assert abs(lane_x - layout.x[node]) >= NODE_WIDTH / 2


def test_a_weak_edge_gets_no_lane_and_leaves_the_chain_straight():
    # 0 -> 1 -> 2 -> 3 with a shape edge 0 -> 3: the chain stays in one column.
    layout = layered_layout(4, [(0, 1), (1, 2), (2, 3), (0, 3)], weak=[False, False, False, True])
    assert len(set(layout.x)) == 1 and len(layout.edges[3]) == 4
    strong = layered_layout(4, [(0, 1), (1, 2), (2, 3), (0, 3)])
    assert len(strong.edges[3]) == 8  # as data, the same edge runs in a lane of its own


def test_layout_of_resnet50_keeps_boxes_apart():
    data = page_data(analysis_page(archcalc.analyze("specs/resnet50.yaml")))
    full = data["page"]["levels"][-1]
    boxes: dict[int, list[int]] = {}
    for x, y in zip(full["x"], full["y"]):
        boxes.setdefault(y, []).append(x)
    for row in boxes.values():
        row.sort()
        assert all(b - a >= NODE_WIDTH for a, b in zip(row, row[1:]))
    assert all(NODE_WIDTH / 2 <= x <= full["width"] - NODE_WIDTH / 2 for x in full["x"])


def test_api_to_html_is_the_cli_page(tmp_path):
    from archcalc.api import to_html

    analysis = archcalc.analyze("specs/lenet5.yaml")
    target = tmp_path / "l.html"
    run("analyze", "specs/lenet5.yaml", "--format", "html", "-o", str(target))
    assert to_html(analysis) == target.read_text(encoding="utf-8")


def test_html_report_to_an_unwritable_place_is_bad_input(tmp_path):
    result = CliRunner().invoke(cli, ["analyze", "specs/lenet5.yaml", "--format", "html", "-o",
                                      str(tmp_path / "missing" / "r.html")])
    assert result.exit_code == 2
    assert "cannot write" in result.output and "Traceback" not in result.output
    result = CliRunner().invoke(cli, ["diff", "specs/lenet5.yaml", "specs/lenet5.yaml", "--format", "html", "-o",
                                      str(tmp_path)])
    assert result.exit_code == 2 and "Traceback" not in result.output


def test_a_failed_run_leaves_the_previous_report_whole(tmp_path, monkeypatch):
    target = tmp_path / "r.html"
    target.write_text("previous report", encoding="utf-8")

    def broken(*args, **kwargs):  # a page that fails half-way through being written
        return "<p>" * 100_000 + "\udc80"  # a lone surrogate: UTF-8 cannot encode it

    import archcalc.report.html as html

    monkeypatch.setattr(html, "analysis_page", broken)
    result = CliRunner().invoke(cli, ["analyze", "specs/lenet5.yaml", "--format", "html", "-o", str(target)])
    assert result.exit_code != 0
    assert target.read_text(encoding="utf-8") == "previous report"
    assert os.listdir(tmp_path) == ["r.html"]


def test_a_notebook_shows_the_page_in_an_iframe(tmp_path):
    from archcalc.api import to_html

    page = to_html(archcalc.analyze("specs/lenet5.yaml"))
    shown = page._repr_html_()
    assert shown.startswith("<iframe srcdoc=\"") and "<script" not in shown  # the page, escaped into the attribute
    import html as html_module

    assert html_module.unescape(shown[len("<iframe srcdoc=\""):shown.index("\" style=")]) == page
    page.save(str(tmp_path / "l.html"))
    assert (tmp_path / "l.html").read_text(encoding="utf-8") == page
