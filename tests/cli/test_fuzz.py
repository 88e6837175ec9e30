"""Hostile input, property-based: whatever a spec, ONNX model or budget file holds, every command
exits 0, 1 or 2, prints no traceback, says why on stderr when it exits 2, and finishes within
30 s and 2 GiB (RLIMIT_AS of the driver subprocess, see tests/fuzz_cases.py).

Each example is a recipe: a valid base (specs/*.yaml, a small ONNX model, budgets/example.yaml)
and one to three named mutations with their seeds; a failure prints the recipe, the argv and the
output. Runs are derandomized (the same examples every time) and not shrunk: shrinking a hang
would re-run 30 s cases for minutes, and a recipe is short already. For long runs with a tally
and saved reproducers: `python3 bench/fuzz.py --examples 100000 --seed N`.
"""

from __future__ import annotations

from pathlib import Path

import fuzz_cases as fc
import pytest
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

EXAMPLES_PER_COMMAND = 20  # x 27 commands: 540 examples, ~2 minutes once they all pass

FUZZ = settings(max_examples=EXAMPLES_PER_COMMAND, deadline=None, derandomize=True, database=None,
                phases=[Phase.explicit, Phase.generate], print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    runner = fc.Runner(tmp_path_factory.mktemp("fuzz"))
    yield runner
    runner.close()


def recipes(kind: str, command: str) -> st.SearchStrategy[fc.Recipe]:
    bases, mutations, _ = fc.KINDS[kind]
    steps = st.lists(st.tuples(st.sampled_from(mutations), st.integers(0, 2**32 - 1)), min_size=1, max_size=3)
    return st.builds(fc.Recipe, st.just(kind), st.sampled_from(bases), steps.map(tuple), st.just(command))


def check_recipe(runner: fc.Runner, recipe: fc.Recipe) -> None:
    note(f"recipe: {recipe}")
    folder = Path(runner.workdir) / "case"
    outcome = fc.run_recipe(runner, recipe, folder)
    problems = fc.judge(outcome)
    if problems:
        argv = (folder / "argv.txt")
        argv.write_text(" ".join(fc.build_case(recipe, folder)))
        pytest.fail(f"{recipe}\n  archcalc {argv.read_text()}\n  " + "\n  ".join(problems)
                    + f"\n--- stderr (tail)\n{outcome.stderr[-3000:]}\n--- stdout (tail)\n{outcome.stdout[-1000:]}",
                    pytrace=False)


@pytest.mark.parametrize("command", fc.SPEC_COMMANDS)
@FUZZ
@given(data=st.data())
def test_hostile_spec(runner, command, data):
    check_recipe(runner, data.draw(recipes("spec", command)))


@pytest.mark.parametrize("command", fc.ONNX_COMMANDS)
@FUZZ
@given(data=st.data())
def test_hostile_onnx(runner, command, data):
    check_recipe(runner, data.draw(recipes("onnx", command)))


@pytest.mark.parametrize("command", fc.BUDGET_COMMANDS)
@FUZZ
@given(data=st.data())
def test_hostile_budget(runner, command, data):
    check_recipe(runner, data.draw(recipes("budget", command)))


def test_unmutated_bases_pass(runner, tmp_path):
    """The harness itself: every base, unmutated, runs clean under every command, so a failure
    above is the mutation's doing (verify and check may exit 1; that is a ran-and-failed check).
    `export --opset 30` is left out: that option is hostile on its own, fuzzed above."""
    failures = []
    for kind, (bases, _, commands) in fc.KINDS.items():
        for base in bases:
            for command in (c for c in commands if c not in fc.HOSTILE_COMMANDS):
                recipe = fc.Recipe(kind, base, (), command)
                outcome = fc.run_recipe(runner, recipe, tmp_path / "case")
                problems = fc.judge(outcome) or ([] if outcome.code in (0, 1) else [outcome.stderr.strip()[:300]])
                failures += [f"{recipe}: {problem}" for problem in problems]
    assert not failures, "\n".join(failures)
