"""Reading onnxruntime's profile: each node's kernel time, for `verify --profile` and calibration."""

from __future__ import annotations

import json
import os


def node_times_us(profile_path: str, skip_runs: int = 0) -> dict[str, float]:
    """Each node's least kernel time (us) in the profile at `profile_path`, past its first
    `skip_runs` runs (warm-ups); the file is removed. The least, as other work on the
    machine only ever adds time."""
    with open(profile_path, encoding="utf-8") as handle:
        events = json.load(handle)
    os.remove(profile_path)
    runs: dict[str, list[float]] = {}
    for event in events:  # in time order: a node's events are its runs, one each
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            runs.setdefault(event["name"][: -len("_kernel_time")], []).append(float(event.get("dur", 0)))
    return {name: min(times[skip_runs:] or times) for name, times in runs.items()}
