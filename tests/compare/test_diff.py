"""`archcalc diff`: pairing by name and by rename, per-layer and total deltas, the three formats.

Every expected number is worked by hand in the comment beside it (batch 1, float32, so an
activation costs 4 bytes per element). Refresh the golden files after an intended change
with ARCHCALC_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from goldens import check_golden
from hypothesis import given
from hypothesis import strategies as st

from archcalc.cli.main import cli
from archcalc.compare.diff import Delta, ModelDiff, diff_analyses, is_generated_name, pair_rows
from archcalc.engine.inference import analyze
from archcalc.readers.spec.build import parse_spec
from archcalc.report.diff import percent_text, render_markdown

ROOT = Path(__file__).resolve().parents[2]
RESNET18, RESNET34 = "specs/resnet18.yaml", "specs/resnet34.yaml"

# conv1 : (3*3*3 + 1) * 4 = 112 params; 3*3*3 * 4 * 8*8 = 6,912 MACs; 4*8*8 * 4 B = 1,024 B
# act1  : 1,024 B; 256 FLOPs (one per element)
# conv2 : (3*3*4 + 1) * 8 = 296 params; 3*3*4 * 8 * 8*8 = 18,432 MACs; 8*8*8 * 4 B = 2,048 B
# act2  : 2,048 B;  flatten: [batch, 512], 2,048 B
# fc    : (512 + 1) * 10 = 5,130 params; 512 * 10 = 5,120 MACs; 10 * 4 B = 40 B
# total : 112 + 296 + 5,130 = 5,538 params
BASE = """
name: base
input: [3, 8, 8]
layers:
  - conv2d: {filters: 4, kernel: 3, padding: 1}
    name: conv1
  - relu:
    name: act1
  - conv2d: {filters: 8, kernel: 3, padding: 1}
    name: conv2
  - relu:
    name: act2
  - flatten:
    name: flatten
  - dense: 10
    name: fc
"""


def diff_of(old_text: str, new_text: str, depth: int | None = None) -> ModelDiff:
    return diff_analyses(analyze(parse_spec(old_text, "old.yaml")), analyze(parse_spec(new_text, "new.yaml")),
                         depth)


def statuses(diff: ModelDiff) -> list[tuple[str, str]]:
    return [(layer.status, layer.name) for layer in diff.layers]


def test_identical_models_have_no_changes():
    diff = diff_of(BASE, BASE)
    assert diff.identical
    assert diff.listed() == ()
    assert len(diff.listed(include_unchanged=True)) == 6
    assert all(delta.change == 0 for delta in diff.totals.values())


def test_renamed_layers_pair_by_op_and_position():
    new = BASE.replace("name: act1", "name: relu_a").replace("name: conv2", "name: conv_mid")
    diff = diff_of(BASE, new)
    assert statuses(diff) == [("unchanged", "conv1"), ("renamed", "relu_a"), ("renamed", "conv_mid"),
                              ("unchanged", "act2"), ("unchanged", "flatten"), ("unchanged", "fc")]
    renamed = diff.listed()
    assert [(x.old.name, x.new.name) for x in renamed] == [("act1", "relu_a"), ("conv2", "conv_mid")]
    # A pure rename costs nothing.
    assert all(x.params.change == 0 and x.macs.change == 0 for x in renamed)
    assert all(delta.change == 0 for delta in diff.totals.values())
    assert diff.counts() == {"changed": 0, "added": 0, "removed": 0, "renamed": 2, "unchanged": 4}


def test_renamed_and_widened_layer_keeps_its_deltas():
    new = BASE.replace("filters: 8, kernel: 3, padding: 1}\n    name: conv2",
                       "filters: 16, kernel: 3, padding: 1}\n    name: conv_wide")
    diff = diff_of(BASE, new)
    conv = next(x for x in diff.layers if x.status == "renamed")
    assert (conv.old.name, conv.new.name) == ("conv2", "conv_wide")
    # (3*3*4 + 1) * 16 = 592 params, was 296: +296, +100%
    assert conv.params == Delta(296, 592)
    assert percent_text(conv.params) == "+100.0%"
    # 3*3*4 * 16 * 8*8 = 36,864 MACs, was 18,432
    assert conv.macs == Delta(18_432, 36_864)


def test_inserted_layer_is_added_and_nothing_else_changes():
    new = BASE.replace("    name: act1\n", "    name: act1\n  - conv2d: {filters: 4, kernel: 3, padding: 1}\n"
                                         "    name: conv1b\n")
    diff = diff_of(BASE, new)
    assert statuses(diff)[:4] == [("unchanged", "conv1"), ("unchanged", "act1"), ("added", "conv1b"),
                                  ("unchanged", "conv2")]
    (added,) = diff.listed()
    assert added.old is None and added.new.output_shape == "[batch, 4, 8, 8]"
    t = diff.totals
    # conv1b: (3*3*4 + 1) * 4 = 148 params; 3*3*4 * 4 * 8*8 = 9,216 MACs
    assert t["params"] == Delta(5_538, 5_538 + 148)
    assert t["trainable_params"].change == 148
    assert t["macs"].change == 9_216
    # FLOPs: 2 * 9,216 + one bias add per output element (4*8*8 = 256) = 18,688
    assert t["flops"].change == 18_688
    # 148 params * 4 B = 592 B of weights; 4*8*8 * 4 B = 1,024 B of activations
    assert t["weight_bytes"].change == 592
    assert t["activation_bytes"].change == 1_024
    assert added.params == Delta(0, 148) and added.activation_bytes == Delta(0, 1_024)
    assert percent_text(added.params) == "new"


def test_removed_layer_sits_where_it_was():
    new = BASE.replace("  - relu:\n    name: act1\n", "")
    diff = diff_of(BASE, new)
    assert statuses(diff)[:3] == [("unchanged", "conv1"), ("removed", "act1"), ("unchanged", "conv2")]
    (removed,) = diff.listed()
    assert removed.new is None and removed.old.op == "Relu"
    t = diff.totals
    # act1 has no params or MACs; its 4*8*8 = 256 elements cost 256 FLOPs and 1,024 B.
    assert (t["params"].change, t["macs"].change) == (0, 0)
    assert t["flops"].change == -256
    assert t["activation_bytes"].change == -1_024
    assert removed.activation_bytes == Delta(1_024, 0)


def test_changed_layers_report_shapes_and_exact_deltas():
    diff = diff_of(BASE, BASE.replace("filters: 8", "filters: 16"))
    changed = {x.name: x for x in diff.listed()}
    assert list(changed) == ["conv2", "act2", "flatten", "fc"]
    conv2, fc = changed["conv2"], changed["fc"]
    assert (conv2.old.output_shape, conv2.new.output_shape) == ("[batch, 8, 8, 8]", "[batch, 16, 8, 8]")
    # (3*3*4 + 1) * 16 = 592 params; 3*3*4 * 16 * 64 = 36,864 MACs; 16*64 * 4 B = 4,096 B
    assert conv2.params == Delta(296, 592)
    assert conv2.macs == Delta(18_432, 36_864)
    assert conv2.activation_bytes == Delta(2_048, 4_096)
    # fc sees 16*8*8 = 1,024 features: (1,024 + 1) * 10 = 10,250 params, +5,120 = +99.8% of 5,130
    assert fc.params == Delta(5_130, 10_250)
    assert percent_text(fc.params) == "+99.8%"
    assert fc.macs == Delta(5_120, 10_240)
    # Totals: 296 + 5,120 = +5,416 params, 5,416 / 5,538 = +97.8%
    assert diff.totals["params"] == Delta(5_538, 10_954)
    assert percent_text(diff.totals["params"]) == "+97.8%"
    # MACs: +18,432 (conv2) + 5,120 (fc) = +23,552
    assert diff.totals["macs"].change == 23_552
    assert diff.layers[0].status == "unchanged"


def test_a_moved_layer_is_removed_and_added_not_renamed():
    # drop_a leaves the gap between act1 and conv2; drop_b arrives after act2. Both are
    # Dropout, but they sit between different name-matched neighbours.
    old = BASE.replace("    name: act1\n", "    name: act1\n  - dropout: 0.5\n    name: drop_a\n")
    new = BASE.replace("    name: act2\n", "    name: act2\n  - dropout: 0.5\n    name: drop_b\n")
    diff = diff_of(old, new)
    assert [(x.status, x.name) for x in diff.listed()] == [("removed", "drop_a"), ("added", "drop_b")]


def test_pair_rows_first_by_name_then_by_op_within_gaps():
    pairs, renamed = pair_rows(["a", "b", "c"], ["Conv", "Relu", "Conv"], ["a", "x", "c"], ["Conv", "Relu", "Conv"])
    assert pairs == [(0, 0), (1, 1), (2, 2)] and renamed == {(1, 1)}
    # Different ops never pair: b (Relu) is removed and y (Sigmoid) added.
    pairs, renamed = pair_rows(["a", "b"], ["Conv", "Relu"], ["a", "y"], ["Conv", "Sigmoid"])
    assert pairs == [(0, 0)] and renamed == set()
    # A run of renames keeps its order (longest common subsequence of ops).
    pairs, renamed = pair_rows(["p", "q", "r"], ["Conv", "Relu", "Conv"], ["u", "v", "w", "z"],
                               ["Conv", "Relu", "MaxPool", "Conv"])
    assert renamed == {(0, 0), (1, 1), (2, 3)}
    # Repeated names (folded rows) pair occurrence by occurrence.
    pairs, _ = pair_rows(["s", "t", "s"], ["A", "B", "A"], ["s", "s"], ["A", "A"])
    assert pairs == [(0, 0), (2, 1)]


def test_pair_rows_first_by_identical_rows_then_by_op():
    # Old: a, conv2 (Conv, key K), z; new: a, extra (Conv, key E), convB (Conv, key K), z.
    # By op alone conv2 would take extra's place; identical rows pair first.
    names = (["a", "conv2", "z"], ["a", "extra", "convB", "z"])
    ops = (["Relu", "Conv", "Relu"], ["Relu", "Conv", "Conv", "Relu"])
    keys = (["r", "K", "r"], ["r", "E", "K", "r"])
    pairs, renamed = pair_rows(names[0], ops[0], names[1], ops[1], keys[0], keys[1])
    assert pairs == [(0, 0), (1, 2), (2, 3)] and renamed == {(1, 2)}
    assert pair_rows(names[0], ops[0], names[1], ops[1])[1] == {(1, 1)}  # without keys: by op and place
    # Leftovers pair by op only within the sub-gap between identical pairs: q (after p = v) and
    # u (before it) are in different sub-gaps, so q is removed and u added, not paired.
    pairs, renamed = pair_rows(["p", "q", "r"], ["Conv", "Conv", "Conv"], ["u", "v", "w"], ["Conv", "Conv", "Conv"],
                               ["A", "B", "C"], ["X", "A", "C"])
    assert pairs == [(0, 1), (2, 2)] and renamed == {(0, 1), (2, 2)}


@pytest.mark.parametrize(("name", "generated"), [
    ("relu_1", True), ("relu_12", True), ("layer1.0.relu_2", True), ("conv_transpose2d_3", True),
    ("flatten_1", True), ("relu", False), ("relu_0", False), ("relu_a", False), ("stage_1", False),
    ("Relu_1", False), ("conv1", False), ("layer1.0", False), ("relu_1.conv", False),
])
def test_generated_names_are_a_layer_type_and_a_count(name, generated):
    assert is_generated_name(name) is generated


def test_generated_names_pair_by_place_not_by_name():
    # Removing the first unnamed relu renumbers the others: relu_2 becomes relu_1, ... By name,
    # relu_1..3 would pair with the wrong layers ("changed") and relu_4 be "removed".
    lenet = (ROOT / "specs/lenet5.yaml").read_text()
    assert "  - maxpool: 2\n    name: pool1\n" in lenet
    fewer = lenet.replace("  - relu\n  - maxpool: 2\n    name: pool1\n", "  - maxpool: 2\n    name: pool1\n", 1)
    diff = diff_of(lenet, fewer)
    (removed,) = diff.listed()
    assert (removed.status, removed.name, removed.old.output_shape) == ("removed", "relu_1", "[batch, 6, 28, 28]")
    assert diff.counts() == {"changed": 0, "added": 0, "removed": 1, "renamed": 0, "unchanged": 11}
    # Each relu left pairs with the one in its place; renumbering is not a rename.
    pairs = [(x.old.name, x.new.name) for x in diff.layers if x.old and x.new and x.old.op == "Relu"]
    assert pairs == [("relu_2", "relu_1"), ("relu_3", "relu_2"), ("relu_4", "relu_3")]
    # And back: one relu added.
    assert [(x.status, x.name) for x in diff_of(fewer, lenet).listed()] == [("added", "relu_1")]


def test_inserted_conv_before_a_renamed_one():
    # /tmp/audit5/l_ins_ren.yaml: conv2 renamed convB, and a conv `extra` inserted before it.
    # By op and place, conv2 paired with extra (2,416 -> 330 params) and convB was "added".
    lenet = (ROOT / "specs/lenet5.yaml").read_text()
    new = lenet.replace("    name: conv2\n", "    name: convB\n").replace(
        "    name: pool1\n", "    name: pool1\n  - conv2d: {filters: 6, kernel: 3, padding: 1}\n    name: extra\n")
    diff = diff_of(lenet, new)
    assert [(x.status, x.name) for x in diff.listed()] == [("added", "extra"), ("renamed", "convB")]
    renamed = diff.listed()[1]
    assert (renamed.old.name, renamed.params, renamed.macs) == ("conv2", Delta(2_416, 2_416), Delta(240_000, 240_000))
    # extra: (3*3*6 + 1) * 6 = 330 params; 3*3*6 * 6 * 14*14 = 63,504 MACs
    added = diff.listed()[0]
    assert (added.params, added.macs) == (Delta(0, 330), Delta(0, 63_504))
    assert diff.totals["params"].change == 330
    text = render_markdown(diff)
    assert "| conv2 → convB | renamed | Conv | [batch, 16, 10, 10] | 2,416 | 0 | 240,000 | 0 | 0 |" in text


layer_lists = st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d", "e", "relu_1", "relu_2", "conv_1"]),
                                 st.sampled_from(["Conv", "Relu", "Add"]), st.sampled_from("xy")), max_size=12)


@given(layer_lists, layer_lists)
def test_pair_rows_pairs_each_row_at_most_once(old, new):
    old_names, old_ops, old_keys = ([row[k] for row in old] for k in range(3))
    new_names, new_ops, new_keys = ([row[k] for row in new] for k in range(3))
    old_keys = list(zip(old_ops, old_keys))
    new_keys = list(zip(new_ops, new_keys))
    pairs, renamed = pair_rows(old_names, old_ops, new_names, new_ops, old_keys, new_keys)
    assert len({i for i, _ in pairs}) == len(pairs) == len({j for _, j in pairs})
    assert renamed <= set(pairs)
    generated = {"relu_1", "relu_2", "conv_1"}  # `relu` and `conv` are layer types
    for i, j in pairs:
        if (i, j) in renamed:
            assert old_ops[i] == new_ops[j] and old_names[i] != new_names[j]
        elif old_names[i] != new_names[j]:  # paired by place, not a rename: both names are generated
            assert old_ops[i] == new_ops[j] and {old_names[i], new_names[j]} <= generated
    # Every given name the two sides share as often as it occurs is paired by name.
    for name in (set(old_names) & set(new_names)) - generated:
        by_name = sum(1 for i, j in pairs if old_names[i] == new_names[j] == name)
        assert by_name == min(old_names.count(name), new_names.count(name))


def test_depth_diffs_folded_block_rows():
    blocks = """
name: staged
input: [3, 8, 8]
blocks:
  pair:
    layers:
      - conv2d: {filters: 3, kernel: 3, padding: 1}
        name: conv
      - relu:
        name: act
layers:
  - pair:
    name: stage
    repeat: REPEAT
  - flatten:
    name: flatten
"""
    diff = diff_of(blocks.replace("REPEAT", "2"), blocks.replace("REPEAT", "3"), depth=1)
    (stage,) = diff.listed()
    assert (stage.name, stage.old.op, stage.new.op) == ("stage", "block (4 layers)", "block (6 layers)")
    # one more conv: (3*3*3 + 1) * 3 = 84 params, 3*3*3 * 3 * 8*8 = 5,184 MACs
    assert stage.params == Delta(168, 252)
    assert stage.macs == Delta(10_368, 15_552)
    # At layer level the same change is two added layers.
    layer_level = diff_of(blocks.replace("REPEAT", "2"), blocks.replace("REPEAT", "3"))
    assert [(x.status, x.name) for x in layer_level.listed()] == [("added", "stage.2.conv"), ("added", "stage.2.act")]


# --- ResNet-18 -> ResNet-34 and the CLI --------------------------------------------------------


@pytest.fixture(autouse=True)
def _run_from_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def invoke(*args: str, code: int = 0) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result.output



def test_resnet18_to_resnet34_totals():
    document = json.loads(invoke("diff", RESNET18, RESNET34, "--format", "json"))
    totals = document["totals"]
    # torchvision's num_params (tests/test_zoo.py pins both).
    assert totals["params"]["delta"] == 21_797_672 - 11_689_512 == 10_108_160
    # ResNet-34 adds 1 + 2 + 4 + 1 basic blocks = 16 more 3x3 convs, each
    # 3*3*C*C*H*W = 115,605,504 MACs (C*H = 64*56 = 128*28 = 256*14 = 512*7).
    assert totals["macs"]["delta"] == 3_663_761_408 - 1_814_073_344 == 16 * 115_605_504
    assert totals["params"]["percent"] == pytest.approx(10_108_160 / 11_689_512 * 100, abs=1e-4)
    # Every ResNet-18 layer name exists in ResNet-34 with the same shape: 125 - 69 = 56 added.
    assert document["counts"] == {"changed": 0, "added": 56, "removed": 0, "renamed": 0, "unchanged": 69}
    assert sum(x["delta"]["params"] for x in document["layers"]) == totals["params"]["delta"]
    assert sum(x["delta"]["macs"] for x in document["layers"]) == totals["macs"]["delta"]


def test_resnet_depth1_folds_to_stages():
    document = json.loads(invoke("diff", RESNET18, RESNET34, "--format", "json", "--depth", "1"))
    rows = {x["name"]: x for x in document["layers"]}
    assert list(rows) == ["layer1", "layer2", "layer3", "layer4"]
    # layer1 gains one block: 2 convs 3*3*64*64 = 36,864 params each + 2 BNs 2*64 = 73,984
    assert rows["layer1"]["delta"]["params"] == 2 * 36_864 + 2 * 128 == 73_984
    assert rows["layer1"]["old"]["layers"] == 14 and rows["layer1"]["new"]["layers"] == 21
    assert document["counts"]["unchanged"] == 7
    everything = json.loads(invoke("diff", RESNET18, RESNET34, "--format", "json", "--depth", "1", "--all"))
    assert len(everything["layers"]) == 11 and everything["include_unchanged"] is True


def test_json_structure_is_documented_and_stable():
    document = json.loads(invoke("diff", RESNET18, RESNET34, "--format", "json"))
    assert set(document) == {"schema_version", "old", "new", "depth", "totals", "counts", "include_unchanged",
                             "layers"}
    assert document["schema_version"] == 1 and document["depth"] is None
    assert document["old"] == {"model": "resnet18", "path": RESNET18, "bindings": {"batch": 1},
                               "partial": False, "rows": 69}
    assert set(document["totals"]) == {"params", "trainable_params", "non_trainable_params", "buffers", "macs",
                                       "flops", "weight_bytes", "activation_bytes", "peak_activation_bytes",
                                       "frozen_params"}
    assert set(document["totals"]["macs"]) == {"old", "new", "delta", "percent"}
    layer = document["layers"][0]
    assert set(layer) == {"status", "name", "old", "new", "delta", "percent"}
    assert (layer["status"], layer["name"], layer["old"]) == ("added", "layer1.2.conv1", None)
    assert layer["new"] == {"name": "layer1.2.conv1", "op": "Conv", "output_shape": "[batch, 64, 56, 56]",
                            "layers": 1, "modelled": True, "params": 36_864, "trainable_params": 36_864,
                            "buffers": 0, "macs": 115_605_504, "flops": 231_211_008,
                            "activation_bytes": 64 * 56 * 56 * 4}
    assert layer["percent"]["params"] is None  # no old value to compare with


def test_markdown_golden():
    text = invoke("diff", RESNET18, RESNET34, "--format", "markdown")
    check_golden("diff.resnet18-resnet34.md", text)
    assert "**params +10,108,160 (+86.5%), MACs +1,849,688,064 (+102.0%)" in text
    # 56 rows are too many for a comment: they fold away.
    assert "<details><summary>56 rows: 56 added</summary>" in text


def test_markdown_depth1_golden():
    text = invoke("diff", RESNET18, RESNET34, "--format", "markdown", "--depth", "1")
    check_golden("diff.resnet18-resnet34.depth1.md", text)
    assert "| layer1 | changed | block (14 layers) → block (21 layers) | [batch, 64, 56, 56] | 147,968 → 221,952 " \
           "| +73,984 (+50.0%) |" in text
    assert "<details>" not in text


def test_markdown_escapes_and_labels_by_path_when_names_agree():
    diff = diff_of(BASE, BASE.replace("filters: 8", "filters: 16"))
    text = render_markdown(diff)
    assert text.startswith("### archcalc diff: `old.yaml` → `new.yaml`\n")
    assert "| conv2 | changed | Conv | [batch, 8, 8, 8] → [batch, 16, 8, 8] | 296 → 592 | +296 (+100.0%) |" in text


def test_table_output():
    text = invoke("diff", RESNET18, RESNET34, "--depth", "1", "--exact")
    assert text.startswith("diff: resnet18 → resnet34 (depth 1)\n")
    assert "params +10,108,160 (+86.5%)" in text
    assert "layer4" in text and "+4,720,640" in text
    assert "Rows at depth 1: 4 changed, 0 added, 0 removed, 0 renamed; 7 unchanged not shown" in text


def test_identical_models_exit_zero():
    text = invoke("diff", RESNET18, RESNET18, "--format", "markdown")
    assert "params unchanged, MACs unchanged" in text
    assert "Layers: no differences, 69 unchanged" in text


@pytest.mark.parametrize("args", [
    ("diff", "specs/missing.yaml", RESNET34),
    ("diff", RESNET18, "specs/missing.onnx"),
    ("diff", RESNET18, RESNET34, "--depth", "0"),
    ("diff", RESNET18, RESNET34, "--format", "csv"),
    ("diff", RESNET18),
], ids=["missing-old", "missing-new", "depth-0", "bad-format", "one-model"])
def test_bad_input_exits_2(args):
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 2
    assert "Traceback" not in result.output


def test_invalid_spec_exits_2_with_a_located_message(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("input: [3, 8, 8]\nlayers:\n  - conv2d: {filters: 4, kernel: 9}\n")
    result = CliRunner().invoke(cli, ["diff", RESNET18, str(broken)])
    assert result.exit_code == 2
    assert "broken.yaml" in result.output and "error:" in result.output


def test_spec_against_its_onnx_export(tmp_path):
    try:
        import archcalc.readers.onnx  # noqa: F401
    except ImportError as error:
        pytest.skip(f"the ONNX front end (archcalc/onnx_front.py) is not importable yet: {error}")
    exported = tmp_path / "resnet18.onnx"
    invoke("export", RESNET18, "-o", str(exported), "--weights", "omit")
    # Export keeps layer names, so every layer pairs by name and nothing changes.
    document = json.loads(invoke("diff", RESNET18, str(exported), "--format", "json"))
    assert document["counts"] == {"changed": 0, "added": 0, "removed": 0, "renamed": 0, "unchanged": 69}
    assert all(total["delta"] == 0 for total in document["totals"].values())
    # An ONNX file has no blocks; it borrows the spec's by layer name, so both sides fold alike.
    folded = json.loads(invoke("diff", RESNET18, str(exported), "--format", "json", "--depth", "1"))
    assert folded["new"]["rows"] == folded["old"]["rows"] == 11
    assert folded["counts"]["unchanged"] == 11
    # And against ResNet-34, across formats, the totals are those of the two specs.
    across = json.loads(invoke("diff", str(exported), RESNET34, "--format", "json"))
    assert across["totals"]["params"]["delta"] == 10_108_160


def test_batch_scales_mac_deltas_not_params():
    one = json.loads(invoke("diff", RESNET18, RESNET34, "--format", "json"))["totals"]
    four = json.loads(invoke("diff", RESNET18, RESNET34, "--format", "json", "--batch", "4"))["totals"]
    assert four["macs"]["delta"] == 4 * one["macs"]["delta"]
    assert four["params"]["delta"] == one["params"]["delta"]


def test_unmodelled_op_shows_unknown_macs_and_partial_totals(tmp_path):
    try:
        import archcalc.readers.onnx  # noqa: F401
    except ImportError as error:
        pytest.skip(f"the ONNX front end (archcalc/onnx_front.py) is not importable yet: {error}")
    import onnx
    from onnx import TensorProto, helper

    def model(filters: int) -> str:
        # x -> Conv (filters x 3 x 3x3, no bias) -> an op archcalc has no rule for
        nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
                 helper.make_node("Mystery", ["c"], ["y"], name="mystery", domain="example.ops")]
        graph = helper.make_graph(
            nodes, "partial", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, filters, 8, 8])],
            initializer=[helper.make_tensor("w", TensorProto.FLOAT, [filters, 3, 3, 3], [0.0] * filters * 27)])
        proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                        helper.make_opsetid("example.ops", 1)])
        path = tmp_path / f"partial{filters}.onnx"
        onnx.save(proto, str(path))
        return str(path)

    text = invoke("diff", model(4), model(8), "--format", "markdown")
    # conv: 3*3*3 * 4 = 108 -> 216 params; 3*3*3 * 4 * 8*8 = 6,912 -> 13,824 MACs
    assert "| conv | changed | Conv | [1, 4, 8, 8] → [1, 8, 8, 8] | 108 → 216 | +108 (+100.0%) | " \
           "6,912 → 13,824 | +6,912 (+100.0%) |" in text
    assert "are partial: some ops have no rule" in text
    mystery = next(line for line in text.splitlines() if line.startswith("| mystery "))
    assert "| ? | ? |" in mystery


@pytest.mark.parametrize("old, new, text", [
    (10**7, 10**7 + 6, "+0.000060%"),     # 6 / 10**7 * 100 = 0.00006 %: two significant digits, no e-05
    (100_000, 100_050, "+0.050%"),        # 50 / 10**5 * 100 = 0.05 %
    (1000, 999, "-0.1%"),                 # -1 / 1000 * 100 = -0.1 %: one decimal from 0.1 up
    (2000, 2000, "0.0%"),
])
def test_small_percentages_are_written_out(old, new, text):
    from archcalc.compare.diff import Delta

    assert percent_text(Delta(old, new)) == text
