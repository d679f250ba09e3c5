"""Check that TensorBoard reads evalverse's event files: load a run's tb/ folder with the
tensorboard package's own EventAccumulator and compare every scalar with metrics.jsonl.

    python scripts/check_tensorboard.py RUN_DIR      (e.g. runs/tiny/sft)
"""
import json
import math
import sys
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main(run: Path) -> int:
    acc = EventAccumulator(str(run / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    tags = acc.Tags()["scalars"]
    expected = {}
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        for k, v in row.items():
            if k != "step":
                expected[(k, row["step"])] = v
    checked = 0
    for tag in tags:
        for ev in acc.Scalars(tag):
            want = expected.get((tag, ev.step))
            if want is None or not math.isclose(ev.value, want, rel_tol=1e-6, abs_tol=1e-6):
                print(f"mismatch: {tag} step {ev.step}: tensorboard {ev.value} vs jsonl {want}")
                return 1
            checked += 1
    missing = {k for (k, _) in expected} - set(tags)
    if missing or checked == 0:
        print(f"tensorboard is missing tags {sorted(missing)} (read {checked} values)")
        return 1
    print(f"ok: tensorboard read {checked} scalars in {len(tags)} tags, all equal to metrics.jsonl: {sorted(tags)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
