"""Where a run's numbers go: ``log.jsonl`` always, TensorBoard when asked.

``log.jsonl`` is the source of truth: one JSON object per line, each with its ``step`` (the
loss terms, rate and speed every ``log_every`` steps; the validation scores at each
validation). Other destinations receive the same records as scalars, and the sample grids as
images:

| record key | TensorBoard tag |
| --- | --- |
| ``d_loss``, ``d_real``, ``d_fake``, ``g_loss``, ``g_gan``, ``g_l1``, ... | ``loss/<key>`` |
| ``lr`` | ``train/lr`` |
| ``img_per_s`` | ``train/img_per_s`` |
| ``epoch`` | ``train/epoch`` |
| ``skipped_images`` (with ``skip_bad_images``; ``skipped`` names the file) | ``train/skipped_images`` |
| ``val_<metric>``, ``best_<metric>``, ``val_seconds`` | ``val/<metric>``, ``val/best_<metric>``, ``val/seconds`` |
| a sample grid | image ``samples`` |

TensorBoard's event files go to ``RUN/tensorboard/`` (``tensorboard --logdir RUN/tensorboard``);
it needs ``pip install "imgtrans[tensorboard]"``. A resumed run tells TensorBoard to drop the
events after its checkpoint's step, as ``log.jsonl`` drops its lines, so each step shows once.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from typing import Any, Iterable, Protocol

import numpy as np
from PIL import Image

DESTINATIONS = ("tensorboard",)
LOG_FILE = "log.jsonl"
TENSORBOARD_DIR = "tensorboard"
_NOT_SCALARS = ("step", "val_best", "best_step", "val_images", "skipped")


class Logger(Protocol):
    """A destination for a run's records."""

    def record(self, record: dict[str, Any]) -> None:
        """One log record, with its ``"step"``."""

    def image(self, step: int, path: Path) -> None:
        """A sample grid saved at ``path``."""

    def close(self) -> None:
        """Flush and close."""


class JsonlLogger:
    """Appends records to ``RUN/log.jsonl``, one JSON object per line, flushed at once."""

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / LOG_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a")

    def record(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def image(self, step: int, path: Path) -> None:
        pass  # the grids are files of the run folder already

    def close(self) -> None:
        self._file.close()


def tag(key: str) -> str | None:
    """The TensorBoard tag of a record key (``None``: not a scalar to plot)."""
    if key in _NOT_SCALARS:
        return None
    if key.startswith("val_"):
        return f"val/{key[4:]}"
    if key.startswith("best_"):
        return f"val/{key}"
    if key in ("lr", "img_per_s", "epoch", "skipped_images"):
        return f"train/{key}"
    return f"loss/{key}"


class TensorBoardLogger:
    """Scalars and sample grids for TensorBoard, under ``RUN/tensorboard``.

    Args:
        out: the run folder.
        purge_step: on resume, the step after the checkpoint's: the events the interrupted run
            logged from it on are discarded by TensorBoard.
    """

    def __init__(self, out: Path, purge_step: int | None = None) -> None:
        require("tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.directory = Path(out) / TENSORBOARD_DIR
        self.writer = SummaryWriter(str(self.directory), purge_step=purge_step)

    def record(self, record: dict[str, Any]) -> None:
        step = record["step"]
        for key, value in record.items():
            name = tag(key)
            if name is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
                if math.isfinite(value):
                    self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def image(self, step: int, path: Path) -> None:
        with Image.open(path) as grid:
            array = np.asarray(grid.convert("RGB"))
        self.writer.add_image("samples", array, step, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def require(destination: str) -> None:
    """Check that a destination's library is installed; one line naming the extra if not."""
    if destination not in DESTINATIONS:
        raise ValueError(f"cannot log to {destination!r}; log_to (--log-to) takes: {', '.join(DESTINATIONS)}")
    if importlib.util.find_spec("tensorboard") is None:
        raise ModuleNotFoundError(
            'logging to TensorBoard needs the tensorboard package: pip install "imgtrans[tensorboard]"'
        )


class RunLoggers:
    """``log.jsonl`` and every destination of ``log_to``, fed the same records.

    Args:
        out: the run folder.
        log_to: extra destinations: ``("tensorboard",)`` or nothing.
        resume_step: the step a resumed run continues from (``None`` for a new run).
    """

    def __init__(self, out: str | Path, log_to: Iterable[str] = (), resume_step: int | None = None) -> None:
        out = Path(out)
        for destination in log_to:
            require(destination)
        self.loggers: list[Logger] = [JsonlLogger(out)]
        if "tensorboard" in log_to:
            # TensorBoard drops the events from purge_step on: the checkpoint's own step stays
            self.loggers.append(TensorBoardLogger(out, purge_step=None if resume_step is None else resume_step + 1))

    def record(self, record: dict[str, Any]) -> None:
        """Send one record to every destination."""
        for logger in self.loggers:
            logger.record(record)

    def image(self, step: int, path: Path) -> None:
        """Send a sample grid to every destination."""
        for logger in self.loggers:
            logger.image(step, path)

    def close(self) -> None:
        """Close every destination."""
        for logger in self.loggers:
            logger.close()
