"""A long fuzz run of archcalc on hostile specs, ONNX models and budgets: the generators of
tests/fuzz_cases.py (the CI test, tests/test_fuzz.py, runs a few hundred of them), here for as
many examples or seconds as you like, over parallel driver subprocesses.

    python3 bench/fuzz.py --examples 100000 --seed 1
    python3 bench/fuzz.py --seconds 600 --seed 2 --jobs 2 --kind onnx

Prints a tally of outcomes per command (exit 0/1/2, traceback, timeout, memory, crash,
silent-exit2, bad-exit) and the distinct failures, and saves failing cases (up to --keep per
distinct failure) each in a folder with its files, recipe.json, repro.sh and outcome.txt.
The same --seed draws the same recipes in the same order.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import fuzz_cases as fc  # noqa: E402  after the path to tests/ is set

# Mutations that make a case big or slow by design: when one is present, it is what a
# timeout or memory failure is grouped by.
HEAVY_MUTATIONS = {"alias_bomb", "huge_name", "huge_tensor_name", "huge_repeat", "hostile_expression", "deep_nesting",
                   "many_nodes", "huge_input", "edge_number", "trip_count", "dim_edge", "deep_subgraphs"}
LABELS = ("exit0", "exit1", "exit2", "traceback", "timeout", "memory", "crash", "silent-exit2", "bad-exit",
          "outside-read", "generator")


def signature(recipe: fc.Recipe, outcome: fc.Outcome) -> str:
    """What makes two failures the same: the class and the error with its numbers, quoted names
    and paths blanked; hangs and crashes have no message, so their mutations. Commands are
    listed beside it: one bug often breaks several."""
    label = outcome.label
    if label in ("timeout", "memory", "crash"):
        names = {name for name, _ in recipe.mutations}
        detail = "+".join(sorted(names & HEAVY_MUTATIONS or names))
    else:
        detail = outcome.error or "; ".join(fc.judge(outcome))
        detail = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", detail)
        detail = re.sub(r"/[\w./-]+", "PATH", detail)
        detail = re.sub(r"\d+", "N", detail)[:200]
    return f"{label}: {detail}"


class Fuzz:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rnd = random.Random(args.seed)
        self.lock = threading.Lock()
        self.drawn = 0
        self.deadline = time.monotonic() + args.seconds if args.seconds else None
        self.tally: dict[str, Counter] = defaultdict(Counter)
        self.failures: dict[str, list] = defaultdict(list)  # signature -> [saved folder, ...]
        self.failure_counts: Counter = Counter()
        self.failure_commands: dict[str, Counter] = defaultdict(Counter)
        self.out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix=f"archcalc_fuzz_{args.seed}_"))
        self.started = time.monotonic()
        self.stopping = False

    def next_recipe(self) -> fc.Recipe | None:
        with self.lock:
            if self.stopping or self.drawn >= self.args.examples or \
                    (self.deadline and time.monotonic() > self.deadline):
                return None
            self.drawn += 1
            return fc.random_recipe(self.rnd, self.args.kind, self.args.command)

    def worker(self, index: int) -> None:
        runner = fc.Runner(self.out / f"worker{index}")
        folder = self.out / f"worker{index}" / "case"
        try:
            while (recipe := self.next_recipe()) is not None:
                try:
                    outcome = fc.run_recipe(runner, recipe, folder)
                except Exception as error:  # noqa: BLE001  a generator bug: report it, keep fuzzing
                    outcome = fc.Outcome("generator", error=f"{type(error).__name__}: {error}"[:300])
                self.record(recipe, outcome, folder)
        finally:
            runner.close()

    def record(self, recipe: fc.Recipe, outcome: fc.Outcome, folder: Path) -> None:
        label = outcome.label
        with self.lock:
            self.tally[f"{recipe.kind}:{recipe.command}"][label] += 1
            if label.startswith("exit"):
                return
            key = signature(recipe, outcome)
            self.failure_counts[key] += 1
            self.failure_commands[key][f"{recipe.kind}:{recipe.command}"] += 1
            keep = len(self.failures[key]) < self.args.keep
        if keep:
            saved = None
            if outcome.status != "generator":  # rebuilding it would only raise again
                try:
                    saved = fc.save_failure(recipe, outcome, folder, self.out / "failures")
                except Exception as error:  # noqa: BLE001  a reproducer not saved must not stop the run
                    print(f"could not save {recipe}: {error}", file=sys.stderr)
            with self.lock:
                self.failures[key].append(str(saved or recipe))

    def progress(self, stop: threading.Event) -> None:
        while not stop.wait(30):
            with self.lock:
                done = sum(sum(c.values()) for c in self.tally.values())
                failed = sum(self.failure_counts.values())
            print(f"[{time.monotonic() - self.started:6.0f} s] {done} cases, {failed} failing, "
                  f"{len(self.failure_counts)} distinct", file=sys.stderr, flush=True)

    def run(self) -> None:
        # SIGTERM and SIGINT (which a background job may start with ignored) both stop the run
        # after the cases under way, with the tally printed.
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        stop = threading.Event()
        reporter = threading.Thread(target=self.progress, args=(stop,), daemon=True)
        reporter.start()
        workers = [threading.Thread(target=self.worker, args=(i,)) for i in range(self.args.jobs)]
        for thread in workers:
            thread.start()
        try:
            while any(thread.is_alive() for thread in workers):
                time.sleep(0.2)  # not join(): Ctrl-C must reach this thread
        except KeyboardInterrupt:
            print("interrupted: finishing the cases under way", file=sys.stderr, flush=True)
            self.stopping = True
            for thread in workers:
                thread.join()
        stop.set()
        self.report()

    def report(self) -> None:
        seconds = time.monotonic() - self.started
        done = sum(sum(c.values()) for c in self.tally.values())
        print(f"\n{done} cases in {seconds:.0f} s ({done / max(seconds, 1e-9):.1f}/s), seed {self.args.seed}, "
              f"{self.args.jobs} jobs")
        width = max((len(k) for k in self.tally), default=10)
        print(f"{'command':<{width}} " + " ".join(f"{label:>12}" for label in LABELS))
        for command in sorted(self.tally):
            print(f"{command:<{width}} " + " ".join(f"{self.tally[command][label]:>12}" for label in LABELS))
        totals = Counter()
        for counts in self.tally.values():
            totals.update(counts)
        print(f"{'total':<{width}} " + " ".join(f"{totals[label]:>12}" for label in LABELS))
        print(f"\n{len(self.failure_counts)} distinct failures ({sum(self.failure_counts.values())} cases), "
              f"saved under {self.out / 'failures'}:")
        for key, count in self.failure_counts.most_common():
            commands = ", ".join(self.failure_commands[key])
            print(f"  {count:6}  {key}\n          in {commands}\n"
                  f"          e.g. {self.failures[key][0] if self.failures[key] else '-'}")
        summary = {"cases": done, "seconds": round(seconds, 1), "seed": self.args.seed,
                   "tally": {k: dict(v) for k, v in self.tally.items()},
                   "failures": {k: {"count": c, "commands": dict(self.failure_commands[k]), "saved": self.failures[k]}
                                for k, c in self.failure_counts.items()}}
        (self.out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=1000, help="Cases to run (default 1000).")
    parser.add_argument("--seconds", type=float, default=None, help="Stop after this long, whatever --examples.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="Parallel driver subprocesses (default 2).")
    parser.add_argument("--kind", choices=tuple(fc.KINDS), default=None, help="Only specs, ONNX models or budgets.")
    parser.add_argument("--command", default=None, help="Only this command (e.g. analyze:json; needs --kind).")
    parser.add_argument("--keep", type=int, default=3, help="Failing cases saved per distinct failure (default 3).")
    parser.add_argument("--out", default=None, help="Folder for failures and summary.json (default: a new temp dir).")
    args = parser.parse_args()
    if args.command and not args.kind:
        parser.error("--command needs --kind")
    if args.command and args.command not in fc.KINDS[args.kind][2]:
        parser.error(f"--command must be one of {', '.join(fc.KINDS[args.kind][2])}")
    Fuzz(args).run()


if __name__ == "__main__":
    main()
