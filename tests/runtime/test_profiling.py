"""Reading onnxruntime's profile: each node's least kernel time past the warm-up runs."""

from __future__ import annotations

import json

from archcalc.runtime.profiling import node_times_us


def test_least_time_past_the_warm_up_runs(tmp_path):
    # Two nodes over three runs, in time order, among events of other kinds; run 1 is a warm-up.
    events = [{"cat": "Session", "name": "model_run", "dur": 999}]
    for a, b in ((5960, 40), (117, 38), (116, 41)):
        events += [{"cat": "Node", "name": "act_kernel_time", "dur": a},
                   {"cat": "Node", "name": "act_fence_before", "dur": 1},
                   {"cat": "Node", "name": "norm_kernel_time", "dur": b}]
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(events))
    assert node_times_us(str(path), skip_runs=1) == {"act": 116.0, "norm": 38.0}
    assert not path.exists()  # read once, then removed
    path.write_text(json.dumps(events[:4]))  # one run only: nothing past the warm-up, so that run
    assert node_times_us(str(path), skip_runs=1) == {"act": 5960.0, "norm": 40.0}
