"""Write `analyze --format json` of every bundled spec and committed ONNX fixture to a
folder, or compare two such folders: the check that a refactoring changed no output.

    python bench/json_snapshot.py write /tmp/before      # on the old code
    python bench/json_snapshot.py write /tmp/after       # on the new code
    python bench/json_snapshot.py compare /tmp/before /tmp/after
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Each model is written plain and with --training, so the training figures are held too.
VARIANTS = {"": [], ".training": ["--training"]}


def models() -> list[Path]:
    return sorted(ROOT.glob("specs/*.yaml")) + sorted(ROOT.glob("tests/fixtures/onnx/*.onnx"))


def bindings(model: Path) -> list[str]:
    """The dims a fixture's generator recorded (a dynamic-shape export needs them bound)."""
    record = model.with_suffix(".json")
    dims = json.loads(record.read_text()).get("dims") or {} if record.exists() else {}
    return [arg for name, value in dims.items() for arg in ("--dim", f"{name}={value}")]


def write(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for model in models():
        for suffix, extra in VARIANTS.items():
            run = subprocess.run([sys.executable, "-m", "archcalc", "analyze", str(model.relative_to(ROOT)),
                                  "--format", "json", *bindings(model), *extra], cwd=ROOT, capture_output=True)
            (folder / f"{model.name}{suffix}.json").write_bytes(run.stdout + run.stderr
                                                                 + f"\nexit {run.returncode}\n".encode())
    print(f"wrote {len(models()) * len(VARIANTS)} documents to {folder}")


def compare(before: Path, after: Path) -> int:
    names = sorted({p.name for p in before.iterdir()} | {p.name for p in after.iterdir()})
    differing = [n for n in names if not (before / n).exists() or not (after / n).exists()
                 or (before / n).read_bytes() != (after / n).read_bytes()]
    for name in differing:
        print(f"differs: {name}")
    print(f"{len(names) - len(differing)} of {len(names)} documents byte-identical")
    return 1 if differing else 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "write":
        write(Path(sys.argv[2]))
    elif len(sys.argv) == 4 and sys.argv[1] == "compare":
        sys.exit(compare(Path(sys.argv[2]), Path(sys.argv[3])))
    else:
        sys.exit(__doc__)
