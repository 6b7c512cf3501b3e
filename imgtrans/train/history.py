"""A run's history: each resume that changed what a step or an epoch means, said at start and kept.

``OUT/history.jsonl`` gets one record per such resume, e.g.

```json
{"step": 400, "epoch": 2.0, "time": "2026-12-01 09:40:00", "steps_per_epoch": 200,
 "changed": {"batch_size": [1, 2]}}
```

so that a reader of ``log.jsonl`` knows why the images per step or the epoch length changed at
step 400. The step count goes on; epochs and the learning-rate schedule go on from the epochs
done (see [EpochClock][imgtrans.train.state.EpochClock]).
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

from imgtrans.io import atomic_write
from imgtrans.train.manifest import Manifest
from imgtrans.train.state import EpochClock

HISTORY_FILE = "history.jsonl"


class ResumeWarning(UserWarning):
    """A run was resumed with settings that change what a step or an epoch means."""


def record_history(out: Path, step: int, clock: EpochClock, changed: dict[str, list], manifest: Manifest) -> dict:
    """Say the change once (a [ResumeWarning][imgtrans.train.history.ResumeWarning]) and append it to the history."""
    record = {"step": step, "epoch": round(clock.epochs(step), 6), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
              "steps_per_epoch": clock.per_epoch, "changed": changed}  # fmt: skip
    path = Path(out) / HISTORY_FILE
    previous = path.read_text() if path.is_file() else ""
    atomic_write(path, previous + json.dumps(record) + "\n")
    manifest.add(path)
    what = ", ".join(f"{name} {old} -> {new}" for name, (old, new) in changed.items())
    warnings.warn(ResumeWarning(
        f"resuming at step {step} (epoch {record['epoch']:.3g}) with changed settings: {what}; an epoch is now "
        f"{clock.per_epoch} steps, and epochs and the schedule go on from the epochs done (recorded in {path})"
    ))  # fmt: skip
    return record
