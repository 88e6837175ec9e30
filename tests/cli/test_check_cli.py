"""`archcalc check` through click's CliRunner: exit codes, every output format against golden
files, the GitHub job summary, several models, partial analyses, and the exact commands that
action.yml and the pre-commit hook run.

Refresh the golden files after an intended change with ARCHCALC_UPDATE_GOLDEN=1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from click.testing import CliRunner
from goldens import check_golden
from onnx import TensorProto, helper, numpy_helper

from archcalc.cli import check as check_command
from archcalc.cli.main import cli

ROOT = Path(__file__).parents[2]
LENET = "specs/lenet5.yaml"
RESNET18 = "specs/resnet18.yaml"
BUDGET = "tests/golden/check.budget.yaml"  # resnet18: 3 layers over a per-layer limit, 1 warning
EXAMPLE = "budgets/example.yaml"
BOTH = (LENET, RESNET18)


def invoke(*args: str, env: dict[str, str] | None = None, code: int | None = None):
    result = CliRunner().invoke(cli, ["check", *args], env=env)
    if code is not None:
        assert result.exit_code == code, result.output
    return result



@pytest.fixture(autouse=True)
def _run_from_repo_root(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)


# ---------------------------------------------------------------------------------------------
# Exit codes


def test_within_budget_exits_0():
    result = invoke(LENET, "--budget", BUDGET, code=0)
    assert "lenet5: PASS, 0 failed, 0 warnings, 8 passed (8 limits)" in result.stdout


def test_example_budget_passes_resnet50():
    result = invoke("specs/resnet50.yaml", "--budget", EXAMPLE, code=0)
    assert "resnet50: PASS, 0 failed, 0 warnings" in result.stdout


def test_warnings_alone_exit_0(tmp_path):
    budget = tmp_path / "warn.yaml"
    budget.write_text("warn:\n  total:\n    params: 10K\n")
    result = invoke(LENET, "--budget", str(budget), code=0)
    assert "lenet5: WARN, 0 failed, 1 warning, 0 passed (1 limit)" in result.stdout


def test_over_budget_exits_1():
    invoke(RESNET18, "--budget", BUDGET, code=1)


@pytest.mark.parametrize("args", [
    ("specs/missing.yaml", "--budget", BUDGET),
    (LENET, "--budget", "budgets/missing.yaml"),
    (LENET, "--budget", BUDGET, "--dim", "seq"),
    (LENET, "--budget", BUDGET, "--format", "xml"),
    (LENET, "--budget", BUDGET, "--batch", "0"),
    ("--budget", BUDGET),
    (LENET,),
])
def test_bad_input_exits_2(args):
    result = invoke(*args, code=2)
    assert result.stdout == "" and "Traceback" not in result.output


def test_bad_model_among_several_exits_2_before_any_report():
    result = invoke(LENET, "specs/missing.yaml", "--budget", BUDGET, "--format", "json", code=2)
    assert result.stdout == ""
    assert "specs/missing.yaml does not exist" in result.stderr


# ---------------------------------------------------------------------------------------------
# Every format against golden output; the over-budget layer and limit named in each


def test_table_golden():
    result = invoke(*BOTH, "--budget", BUDGET, code=1)
    check_golden("check.table.txt", result.stdout)
    row = next(line for line in result.stdout.splitlines() if "layer4.0.conv2" in line)
    assert "params" in row and "2M" in row and "FAIL" in row and "-18.0%" in row


def test_github_golden(tmp_path):
    summary = tmp_path / "summary.md"
    result = invoke(*BOTH, "--budget", BUDGET, "--format", "github", env={"GITHUB_STEP_SUMMARY": str(summary)},
                    code=1)
    check_golden("check.github.txt", result.stdout)
    check_golden("check.summary.md", summary.read_text())
    errors = [line for line in result.stdout.splitlines() if line.startswith("::error ")]
    assert [line.split(",title=")[0] for line in errors] == [
        # each annotation points at the spec line of the layer (inside the `basic` block)
        "::error file=specs/resnet18.yaml,line=18", "::error file=specs/resnet18.yaml,line=12",
        "::error file=specs/resnet18.yaml,line=18",
    ]
    assert errors[0].endswith(
        "::resnet18: layer 'layer4.0.conv2' (Conv) has 2,359,296 (2.36 M) params, over the per-layer limit 2M of "
        "layers[0] (match 'layer4.*') at tests/golden/check.budget.yaml:13 by 18.0%25")
    assert "title=archcalc budget%3A params over budget%3A layer4.0.conv2::" in errors[0]
    note, warning = [line for line in result.stdout.splitlines() if line.startswith("::warning ")]
    assert note.endswith("::lenet5: layers[0] (match 'layer4.*') at tests/golden/check.budget.yaml:13 "
                         "matches no layer of this model, so it checks nothing")
    assert "over the whole-model warning limit 10M" in warning


def test_junit_golden():
    result = invoke(*BOTH, "--budget", BUDGET, "--format", "junit", code=1)
    check_golden("check.junit.xml", result.stdout)
    root = ET.fromstring(result.stdout)
    assert (root.tag, root.get("tests"), root.get("failures")) == ("testsuites", "19", "3")
    lenet, resnet = root.findall("testsuite")
    assert lenet.get("name") == "lenet5 (specs/lenet5.yaml)" and lenet.get("failures") == "0"
    assert resnet.get("failures") == "3" and len(resnet.findall("testcase")) == 11
    names = [case.get("name") for case in resnet.findall("testcase")]
    assert len(set(names)) == len(names)  # unique, though a layer may be checked by several entries
    failed = [case for case in resnet.findall("testcase") if case.find("failure") is not None]
    assert [case.get("name") for case in failed] == [
        "params layer4.0.conv2 (layers[0])", "params layer4.1.conv1 (layers[0])", "params layer4.1.conv2 (layers[0])"]
    message = failed[0].find("failure").get("message")
    assert "layer 'layer4.0.conv2' (Conv)" in message and "per-layer limit 2M" in message
    warned = [case for case in resnet.findall("testcase") if (case.findtext("system-out") or "").startswith("warn")]
    assert [case.get("name") for case in warned] == ["params total (warn.total)"]


def test_json_golden():
    result = invoke(*BOTH, "--budget", BUDGET, "--format", "json", code=1)
    check_golden("check.json", result.stdout)
    document = json.loads(result.stdout)
    assert document["result"] == "fail"
    lenet, resnet = document["models"]
    assert (lenet["result"], resnet["result"]) == ("pass", "fail")
    assert resnet["counts"] == {"fail": 3, "warn": 1, "pass": 7}
    failed = [r for r in resnet["results"] if r["level"] == "fail"]
    assert [(r["scope"], r["metric"], r["actual"], r["limit"]) for r in failed] == [
        ("layer4.0.conv2", "params", 2_359_296, 2_000_000), ("layer4.1.conv1", "params", 2_359_296, 2_000_000),
        ("layer4.1.conv2", "params", 2_359_296, 2_000_000)]
    assert failed[0]["headroom_percent"] == -17.96  # (2,000,000 - 2,359,296) / 2,000,000
    assert failed[0]["where"] == f"{BUDGET}:13" and failed[0]["op"] == "Conv"
    assert lenet["notes"] == [
        f"layers[0] (match 'layer4.*') at {BUDGET}:13 matches no layer of this model, so it checks nothing"]


def test_output_option_writes_the_report(tmp_path):
    target = tmp_path / "report.xml"
    result = invoke(RESNET18, "--budget", BUDGET, "--format", "junit", "-o", str(target), code=1)
    # The console still says how it went (it said nothing), as the table's last line does.
    assert result.stdout == f"resnet18: FAIL, 3 failed, 1 warning, 7 passed (11 limits)\nreport written to {target}\n"
    assert target.read_text() == invoke(RESNET18, "--budget", BUDGET, "--format", "junit").stdout


def test_table_to_output_file(tmp_path):
    target = tmp_path / "report.txt"
    invoke(LENET, "--budget", BUDGET, "-o", str(target), code=0)
    assert target.read_text() == invoke(LENET, "--budget", BUDGET).stdout


# ---------------------------------------------------------------------------------------------
# GitHub job summary


def test_step_summary_is_appended(tmp_path):
    summary = tmp_path / "summary.md"
    summary.write_text("## earlier step\n\n")
    invoke(RESNET18, "--budget", BUDGET, "--format", "github", env={"GITHUB_STEP_SUMMARY": str(summary)}, code=1)
    text = summary.read_text()
    assert text.startswith("## earlier step\n\n### archcalc budget: resnet18: FAIL\n")
    # globs and names are escaped for Markdown: `layer4.*` must not start emphasis
    assert ("| :x: fail | params | layers[0] (match 'layer4.\\*') | layer4.0.conv2 (Conv) | 2.36 M | 2M | -18.0% |"
            in text)


def test_step_summary_only_for_github_format(tmp_path):
    summary = tmp_path / "summary.md"
    invoke(RESNET18, "--budget", BUDGET, "--format", "json", env={"GITHUB_STEP_SUMMARY": str(summary)}, code=1)
    assert not summary.exists()


def test_github_format_without_step_summary():
    result = invoke(LENET, "--budget", BUDGET, "--format", "github", code=0)
    assert result.stdout.splitlines()[-1] == (
        f"archcalc check lenet5 ({LENET}) against {BUDGET}: PASS, 0 failed, 0 warnings, 8 passed (8 limits)")


# ---------------------------------------------------------------------------------------------
# Several models, batch, progress


def test_several_models_are_each_checked():
    result = invoke(RESNET18, LENET, "specs/resnet18.yaml", "--budget", BUDGET, code=1)
    lines = result.stdout.splitlines()
    assert sum(line.startswith("resnet18: FAIL") for line in lines) == 2
    assert sum(line.startswith("lenet5: PASS") for line in lines) == 1
    assert lines[-1] == "3 models: FAIL, 2 over budget, 0 within budget with warnings, 1 within budget"


def test_batch_option_overrides_the_budget(tmp_path):
    budget = tmp_path / "b.yaml"
    budget.write_text("batch: 2\ntotal:\n  macs: 1G\n")
    (two,) = json.loads(invoke(LENET, "--budget", str(budget), "--format", "json").stdout)["models"]
    (eight,) = json.loads(invoke(LENET, "--budget", str(budget), "--format", "json", "--batch", "8").stdout)["models"]
    assert (two["bindings"], eight["bindings"]) == ({"batch": 2}, {"batch": 8})
    assert eight["results"][0]["actual"] == 4 * two["results"][0]["actual"] == 8 * 416_520


def test_progress_bar_when_stderr_is_a_terminal(monkeypatch):
    calls = []
    real = check_command._analyse_all

    def spy(models, bindings, input_shapes, show_progress):
        calls.append(show_progress)
        return real(models, bindings, input_shapes, show_progress)

    monkeypatch.setattr(check_command, "_analyse_all", spy)
    monkeypatch.setattr(check_command, "_stderr_is_terminal", lambda: True)
    with_bar = invoke(*BOTH, "--budget", BUDGET, "--format", "json", code=1)
    single = invoke(LENET, "--budget", BUDGET, "--format", "json", code=0)
    monkeypatch.setattr(check_command, "_stderr_is_terminal", lambda: False)
    without = invoke(*BOTH, "--budget", BUDGET, "--format", "json", code=1)
    assert calls == [True, False, False]  # a bar only for several models on a terminal
    assert with_bar.stdout == without.stdout  # the bar never touches stdout
    assert json.loads(single.stdout)["result"] == "pass"


def test_check_help_and_light_import():
    assert "--budget" in invoke("--help", code=0).stdout
    heavy = ("rich", "yaml", "archcalc.engine.inference", "archcalc.compare.budget")
    code = f"import sys, archcalc.cli.check; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


# ---------------------------------------------------------------------------------------------
# Partial analyses (an op without a rule) say so in every format


@pytest.fixture
def partial_model(tmp_path) -> str:
    """conv1 -> FancyAct (a custom op, no rule) -> conv2."""
    def zeros(name, shape):
        return numpy_helper.from_array(np.zeros(shape, np.float32), name)

    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("FancyAct", ["c1"], ["act"], name="custom", domain="com.example"),
             helper.make_node("Conv", ["act", "w2"], ["y"], name="conv2")]
    graph = helper.make_graph(
        nodes, "partialnet", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [onnx.ValueInfoProto(name="y")], initializer=[zeros("w1", [4, 3, 3, 3]), zeros("w2", [6, 4, 3, 3])],
        value_info=[helper.make_tensor_value_info("act", TensorProto.FLOAT, ["batch", 4, 8, 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid("com.example", 1)])
    model.ir_version = 8
    path = tmp_path / "partial.onnx"
    onnx.save(model, str(path))
    return str(path)


@pytest.mark.parametrize("fmt", ["table", "github", "junit", "json"])
def test_partial_analysis_is_reported_in_every_format(tmp_path, partial_model, fmt):
    summary = tmp_path / "summary.md"
    result = invoke(partial_model, "--budget", BUDGET, "--format", fmt, env={"GITHUB_STEP_SUMMARY": str(summary)},
                    code=0)
    text = result.stdout
    assert "partial analysis: 1 layer not modelled (custom (FancyAct))" in text
    assert "lower bound" in text
    if fmt == "table":
        assert "[partial: lower bounds]" in text and "≥ 14.69 K" in text  # conv1 + conv2 MACs, FancyAct unknown
    elif fmt == "github":
        assert "::warning file=" in text and "at least 14,688 (14.69 K) MACs" in text
        assert "Partial analysis: actual values are lower bounds" in summary.read_text()
    elif fmt == "junit":
        suite = ET.fromstring(text).find("testsuite")
        assert {p.get("name"): p.get("value") for p in suite.iter("property")}["partial"] == "true"
        assert "partial analysis" in suite.findtext("system-out")
    else:
        (model,) = json.loads(text)["models"]
        assert model["partial"] is True and model["unmodelled"] == ["custom (FancyAct)"]
        macs = next(r for r in model["results"] if r["metric"] == "macs")
        assert macs["lower_bound"] is True and macs["actual"] == 14_688


# ---------------------------------------------------------------------------------------------
# What action.yml, the example workflow and the pre-commit hook run


def load_yaml_file(path: str):
    with open(ROOT / path, encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def action_step(step_id: str) -> dict:
    return next(step for step in load_yaml_file("action.yml")["runs"]["steps"] if step.get("id") == step_id)


@pytest.fixture
def archcalc_on_path(tmp_path) -> dict[str, str]:
    """An environment whose `archcalc` is this checkout's, run by this interpreter."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "archcalc"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m archcalc.cli.main "$@"\n')
    shim.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "INPUT_"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env["PYTHONPATH"] = str(ROOT)
    return env


def run_step(step_id: str, env: dict[str, str], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run an action step's script the way GitHub runs `shell: bash`."""
    step = action_step(step_id)
    assert step["shell"] == "bash"
    return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]], env=env,
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def test_action_interface():
    action = load_yaml_file("action.yml")
    assert set(action["inputs"]) == {"models", "budget", "python-version"}
    assert action["inputs"]["models"]["required"] and action["inputs"]["budget"]["required"]
    assert action["runs"]["using"] == "composite"
    assert "pip install" in action_step("install")["run"] and "$GITHUB_ACTION_PATH" in action_step("install")["run"]
    check = action_step("check")
    assert check["env"] == {"MODELS": "${{ inputs.models }}", "BUDGET": "${{ inputs.budget }}"}
    assert 'archcalc check $MODELS --budget "$BUDGET" --format github' in check["run"]
    assert "archcalc diff --help >/dev/null 2>&1" in action_step("diff")["run"]


def test_workflow_uses_the_action_on_resnet50():
    workflow = load_yaml_file(".github/workflows/archcalc-budget.yml")
    steps = workflow["jobs"]["budget"]["steps"]
    (uses,) = [step for step in steps if step.get("uses") == "./"]
    assert uses["with"]["models"] == "specs/resnet50.yaml" and uses["with"]["budget"] == EXAMPLE
    assert (ROOT / uses["with"]["budget"]).exists()


def test_action_check_step_passes_the_example(tmp_path, archcalc_on_path):
    summary = tmp_path / "summary.md"
    env = {**archcalc_on_path, "MODELS": "specs/resnet50.yaml", "BUDGET": EXAMPLE, "GITHUB_STEP_SUMMARY": str(summary)}
    done = run_step("check", env)
    assert done.returncode == 0, done.stderr
    assert "archcalc check resnet50 (specs/resnet50.yaml) against budgets/example.yaml: PASS" in done.stdout
    assert summary.read_text().startswith("### archcalc budget: resnet50: PASS\n")


def test_action_check_step_fails_over_budget(tmp_path, archcalc_on_path):
    env = {**archcalc_on_path, "MODELS": f"{LENET}\n  specs/resnet1[8].yaml\n", "BUDGET": BUDGET,
           "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}  # newline-separated, with a glob
    done = run_step("check", env)
    assert done.returncode == 1
    assert done.stdout.count("::error file=specs/resnet18.yaml") == 3
    assert "archcalc check lenet5" in done.stdout


def test_action_diff_step_skips_outside_a_pull_request(archcalc_on_path):
    done = run_step("diff", {**archcalc_on_path, "MODELS": LENET, "BASE_REF": ""})
    assert done.returncode == 0, done.stderr
    assert "not a pull request" in done.stdout or "no diff command" in done.stdout


def test_action_diff_step_skips_without_a_diff_command(tmp_path, archcalc_on_path):
    old = tmp_path / "old-bin"
    old.mkdir()
    (old / "archcalc").write_text('#!/bin/sh\n[ "$1" = diff ] && exit 2\nexit 0\n')
    (old / "archcalc").chmod(0o755)
    env = {**archcalc_on_path, "PATH": f"{old}{os.pathsep}{archcalc_on_path['PATH']}", "MODELS": LENET,
           "BASE_REF": "main"}
    done = run_step("diff", env)
    assert done.returncode == 0 and "no diff command" in done.stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_action_diff_step_writes_the_base_branch_diff(tmp_path, archcalc_on_path):
    if subprocess.run(["archcalc", "diff", "--help"], env=archcalc_on_path, capture_output=True).returncode:
        pytest.skip("this archcalc has no diff command yet")
    git_env = {**archcalc_on_path, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_GLOBAL": os.devnull}

    def git(*args, cwd):
        subprocess.run(["git", *args], cwd=cwd, env=git_env, check=True, capture_output=True)

    origin, work = tmp_path / "origin.git", tmp_path / "work"
    git("init", "--quiet", "--bare", "--initial-branch=main", str(origin), cwd=tmp_path)
    git("clone", "--quiet", str(origin), str(work), cwd=tmp_path)
    (work / "specs").mkdir()
    spec = (ROOT / LENET).read_text()
    (work / LENET).write_text(spec)
    git("add", ".", cwd=work)
    git("commit", "--quiet", "-m", "base", cwd=work)
    git("push", "--quiet", "origin", "HEAD:main", cwd=work)
    (work / LENET).write_text(spec.replace("dense: 120", "dense: 240"))  # the pull request's changes
    (work / "specs/new.yaml").write_text(spec)
    summary = tmp_path / "summary.md"
    env = {**git_env, "MODELS": f"{LENET} specs/new.yaml specs/none*.yaml", "BASE_REF": "main",
           "GITHUB_STEP_SUMMARY": str(summary)}
    done = run_step("diff", env, cwd=work)
    assert done.returncode == 0, done.stderr
    text = summary.read_text()
    assert text.startswith(f"Changes to `{LENET}` from `main` to this pull request:\n\n"
                           f"### archcalc diff: `main:{LENET}` → `{LENET}`")
    assert "fc1" in text  # the changed layer
    assert "/tmp" not in text  # the base version's temporary copy is not what readers see
    assert text.endswith("`specs/new.yaml` is new in this pull request: it is not on `main`.\n\n"
                         "no file matches `specs/none*.yaml`\n")


def test_pre_commit_hook_runs_check():
    (hook,) = load_yaml_file(".pre-commit-hooks.yaml")
    assert hook["id"] == "archcalc-check" and hook["language"] == "python"
    assert hook["entry"] == "archcalc check"
    # pre-commit runs `entry args files...`
    args = hook["entry"].split()[1:] + ["--budget", EXAMPLE, RESNET18, LENET]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output


def test_training_memory_limit(tmp_path):
    budget = tmp_path / "training.yaml"
    # ResNet-18, batch 8, Adam fp32: 4 * 4 * 11,689,512 bytes of weights, gradients and
    # state, 9,600 BN buffers, plus saved activations: PyTorch saved 44,398,080 bytes at
    # batch 2, of which 38,400 are per-channel BN statistics that do not grow with the batch.
    expected = 4 * 4 * 11_689_512 + 4 * 9_600 + 4 * (44_398_080 - 38_400) + 38_400
    budget.write_text(f"batch: 8\ntotal:\n  training_memory: {expected}\n")
    result = CliRunner().invoke(cli, ["check", "specs/resnet18.yaml", "--budget", str(budget), "--format", "json"])
    assert result.exit_code == 0, result.output
    (limit,) = json.loads(result.output)["models"][0]["results"]
    assert (limit["metric"], limit["actual"]) == ("training_memory", expected)
    budget.write_text(f"batch: 8\ntotal:\n  training_memory: {expected - 1}\n")
    over = CliRunner().invoke(cli, ["check", "specs/resnet18.yaml", "--budget", str(budget)])
    assert over.exit_code == 1 and "training memory" in over.output


# ---------------------------------------------------------------------------------------------
# Output paths that cannot be written: bad input (exit 2), never a traceback (exit 1 is "over budget")


@pytest.mark.parametrize("where", ["missing-dir", "a-directory"])
def test_unwritable_step_summary_exits_2_after_the_annotations(tmp_path, where):
    path = str(tmp_path / "missing" / "summary.md") if where == "missing-dir" else str(tmp_path)
    reason = "No such file or directory" if where == "missing-dir" else "Is a directory"
    result = invoke(RESNET18, "--budget", BUDGET, "--format", "github", env={"GITHUB_STEP_SUMMARY": path}, code=2)
    # The annotations are out before the summary is tried.
    assert sum(line.startswith("::error file=specs/resnet18.yaml,line=") for line in result.stdout.splitlines()) == 3
    assert result.stderr == (f"error: cannot write {path}: {reason}\n  fix: GITHUB_STEP_SUMMARY must name a "
                             "writable file (the runner sets it); unset it to skip the summary\n")
    assert f"::error title=archcalc check%3A bad input::cannot write {path}" in result.stdout
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize("fmt", ["table", "github", "junit", "json"])
@pytest.mark.parametrize("where", ["missing-dir", "a-directory"])
def test_unwritable_output_file_exits_2(tmp_path, fmt, where):
    path = str(tmp_path / "missing" / "report.txt") if where == "missing-dir" else str(tmp_path)
    reason = "No such file or directory" if where == "missing-dir" else "Is a directory"
    result = invoke(LENET, "--budget", BUDGET, "--format", fmt, "-o", path, code=2)
    assert (f"error: cannot write {path}: {reason}\n  fix: give -o/--output a file path in an existing, "
            "writable directory\n") == result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize("weights", ["random", "external"])
def test_export_to_an_unwritable_path_exits_2(tmp_path, weights):
    path = str(tmp_path / "missing" / "lenet5.onnx")
    result = CliRunner().invoke(cli, ["export", LENET, "-o", path, "--weights", weights])
    assert result.exit_code == 2, result.output
    assert result.stderr == (f"error: cannot write {path}: No such file or directory\n"
                             "  fix: give -o a file path in an existing, writable directory\n")
    directory = CliRunner().invoke(cli, ["export", LENET, "-o", str(tmp_path)])
    assert directory.exit_code == 2 and f"cannot write {tmp_path}: Is a directory" in directory.stderr


# ---------------------------------------------------------------------------------------------
# --format github annotates bad input too (then exits 2, the message on stderr as ever)


def test_github_annotates_a_bad_budget_at_its_line(tmp_path):
    budget = tmp_path / "budget.yaml"
    budget.write_text("total:\n  macs: 5GiB\n")
    result = invoke(LENET, "--budget", str(budget), "--format", "github", code=2)
    assert result.stdout == (
        f"::error file={budget},line=2,title=archcalc check%3A bad input::{budget}:2: limit `macs`: '5GiB': 'GiB' "
        "is a unit of bytes, but this limit is a count%0A  fix: write a count like 30M%3A K, M, G, T are powers of "
        "1000\n".replace("30M%3A", "30M:"))
    assert result.stderr.startswith(f"error: {budget}:2: limit `macs`")


def test_github_annotates_a_bad_spec_at_the_layer_line(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("input: [1, 8, 8]\nlayers:\n  - conv2d: {filters: 2, kernel: 9}\n    name: c\n")
    result = invoke(str(spec), "--budget", BUDGET, "--format", "github", code=2)
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"::error file={spec},line=3,title=archcalc check%3A bad input::{spec}:3: layer 'c' (Conv)")


def test_github_annotates_input_without_a_place():
    missing = invoke("specs/missing.yaml", "--budget", BUDGET, "--format", "github", code=2)
    assert missing.stdout == ("::error title=archcalc check%3A bad input::specs/missing.yaml does not exist"
                              "%0A  fix: check the path (specs live in specs/)\n")
    usage = invoke(LENET, "--budget", BUDGET, "--format", "github", "--dim", "seq", code=2)
    assert usage.stdout == ("::error title=archcalc check%3A bad input::Invalid value for --dim: 'seq' is not "
                            "NAME=N with N >= 0\n")


# ---------------------------------------------------------------------------------------------
# The training step: pinned by the budget's `training:`, overridden by the flags, shown wherever
# a training limit is checked; --training shows its totals without one

# LeNet-5, batch 1: 61,706 params, 49,040 B of activations saved for backward (fp32).
# SGD: weights + gradients = 2 * 4 * 61,706 = 493,648 B, no state: 542,688 B.
# AdamW: + 2 fp32 states = 2 * 4 * 61,706 = 493,648 B more: 1,036,336 B.
LENET_SGD, LENET_ADAM = 2 * 4 * 61_706 + 49_040, 4 * 4 * 61_706 + 49_040


def training_budget(tmp_path, pinned: str = "training:\n  optimizer: sgd\n") -> str:
    budget = tmp_path / "training.yaml"
    budget.write_text(f"{pinned}total:\n  training_memory: 1000KiB\n  params: 1M\n")
    return str(budget)


def test_budget_pins_the_training_step(tmp_path):
    budget = training_budget(tmp_path)
    (model,) = json.loads(invoke(LENET, "--budget", budget, "--format", "json", code=0).stdout)["models"]
    memory = model["results"][0]
    assert (memory["metric"], memory["actual"]) == ("training_memory", LENET_SGD)
    assert "training memory (sgd, fp32)" in memory["message"]
    totals = model["training"]["totals"]
    assert (totals["optimizer"], totals["precision"], totals["memory_bytes"]) == ("sgd", "fp32", LENET_SGD)
    # The flag overrides the budget: AdamW's two states put LeNet over 1000 KiB (1,024,000 B).
    over = invoke(LENET, "--budget", budget, "--format", "json", "--optimizer", "adamw", code=1)
    (model,) = json.loads(over.stdout)["models"]
    assert model["results"][0]["actual"] == LENET_ADAM
    assert model["training"]["totals"]["optimizer"] == "adamw"


def test_training_setup_in_every_format(tmp_path):
    budget = training_budget(tmp_path, "training:\n  optimizer: momentum\n  precision: mixed\n")
    table = invoke(LENET, "--budget", budget, code=0).stdout
    title = " ".join(table.split("┏")[0].split())  # a title wider than the terminal wraps
    assert title == f"lenet5 ({LENET}) against {budget}, batch=1; training: momentum, mixed"
    assert "Training memory" not in table  # totals only with --training
    root = ET.fromstring(invoke(LENET, "--budget", budget, "--format", "junit", code=0).stdout)
    properties = {p.get("name"): p.get("value") for p in root.iter("property")}
    assert (properties["optimizer"], properties["precision"]) == ("momentum", "mixed")
    summary = tmp_path / "summary.md"
    github = invoke(LENET, "--budget", budget, "--format", "github", env={"GITHUB_STEP_SUMMARY": str(summary)},
                    code=0)
    assert f"`{LENET}` against `{budget}` (batch=1; training: momentum, mixed): PASS" in summary.read_text()
    assert "training memory (momentum, mixed)" in github.stdout


def test_no_training_setup_without_a_training_limit():
    (model,) = json.loads(invoke(LENET, "--budget", BUDGET, "--format", "json", code=0).stdout)["models"]
    assert "training" not in model
    assert "training:" not in invoke(LENET, "--budget", BUDGET, code=0).stdout


def test_training_flag_shows_the_step_without_a_training_limit():
    table = invoke(LENET, "--budget", BUDGET, "--training", "--optimizer", "sgd", code=0).stdout
    assert f"against {BUDGET}, batch=1; training: sgd, fp32" in table
    assert "Training step        batch 1, sgd, fp32" in table
    assert f"Training memory      {LENET_SGD / 1024:.2f} KiB" in table  # as analyze --training prints it
    (model,) = json.loads(invoke(LENET, "--budget", BUDGET, "--training", "--format", "json", code=0).stdout)["models"]
    analyzed = json.loads(CliRunner().invoke(cli, ["analyze", LENET, "--training", "--format", "json"]).stdout)
    assert model["training"]["totals"] == analyzed["training"]["totals"]  # adam, fp32 by default
    assert model["training"]["totals"]["memory_bytes"] == LENET_ADAM
    assert [r["metric"] for r in model["results"]] == [r["metric"] for r in json.loads(
        invoke(LENET, "--budget", BUDGET, "--format", "json").stdout)["models"][0]["results"]]
