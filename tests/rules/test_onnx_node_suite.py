"""onnx's own operator test suite as a conformance test (see tests/node_suite.py).

Every case of ``onnx.backend.test.case.node`` (single ops and function expansions, with
reference outputs from onnx's reference implementation) is analysed with its declared
output types and value_info stripped. No case may get a wrong shape or dtype, crash, or be
refused; every output that onnx's own inference (with data propagation) finds fully
static must be static in archcalc too. The counts are pinned for the onnx release they
were measured with, so an improvement shows as well as a regression.

Reproduce the counts and list every case that is not static and right:
``PYTHONPATH=$PWD python3 tests/node_suite.py``. Before issue 19 (onnx 1.23.2): 1,439 of
1,884 static and right, 0 wrong, 58 aborted, 92 behind onnx's inference.
"""

from __future__ import annotations

from collections import Counter

import onnx
import pytest
from node_suite import ABORTED, BEHIND, CRASHED, RIGHT, UNKNOWN, WRONG, run_all

# Measured with onnx 1.23.2. The 331 cases neither archcalc nor onnx's inference makes
# static are data-dependent outputs (NonZero, Unique, Compress, NonMaxSuppression, Loop
# trip counts, StringSplit, ...), sizes given at run time (Resize scales, Pad pads, Range
# bounds, ... fed as graph inputs) and sequence/optional outputs, which onnx infers no
# more of.
MEASURED_WITH = "1.23."
PINNED = {RIGHT: 1553, UNKNOWN: 331, BEHIND: 0, WRONG: 0, ABORTED: 0, CRASHED: 0}


@pytest.fixture(scope="module")
def results():
    return list(run_all())


def test_no_case_is_wrong_crashes_or_is_refused(results):
    bad = [f"{r.outcome} {r.name}: {r.detail}" for r in results if r.outcome in (WRONG, CRASHED, ABORTED)]
    assert not bad, "\n".join(bad)


def test_every_shape_onnx_infers_statically_is_static(results):
    behind = [f"{r.name}: {r.detail}" for r in results if r.outcome == BEHIND]
    assert not behind, "\n".join(behind)


@pytest.mark.skipif(not onnx.__version__.startswith(MEASURED_WITH),
                    reason=f"counts pinned for onnx {MEASURED_WITH}x; this is onnx {onnx.__version__}")
def test_counts_are_the_measured_ones(results):
    """A change in either direction shows here: update PINNED with the new counts."""
    counts = Counter(r.outcome for r in results)
    assert {outcome: counts[outcome] for outcome in PINNED} == PINNED
