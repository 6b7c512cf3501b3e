"""A run folder belongs to one run: its lock, its history, and what starting a run may do to it.

A user's run is their property. [RunFolder][imgtrans.train.run.RunFolder] makes three promises:

- **one writer.** A training process holds an exclusive lock on ``OUT/.lock`` (``fcntl.flock``)
  for as long as it runs; a second process into the same folder fails at once and names the
  holder. The kernel releases the lock when its holder exits, however it exits, so a lock left
  by a killed process never blocks the next run: nothing has to be "recovered" by hand.
- **no silent overwrite.** A folder that already holds a run (a checkpoint, a log, samples or an
  exported model) is continued only when asked (``resume``), replaced only when asked
  (``overwrite``); otherwise starting fails and names the three ways on. Replacing removes only
  the files the run wrote (see [imgtrans.train.manifest][imgtrans.train.manifest]); the user's
  own files in the folder stay.
- **no leftovers.** Unfinished files of writers that died (``.NAME.tmp-PID``, ``.NAME.part-PID``)
  are removed when a run starts.

What a run left on disk is summed up by a [RunSummary][imgtrans.train.run.RunSummary], and a
resumed run trims its log back to its checkpoint (``trim_log``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping

import torch
from safetensors import SafetensorError
from torch import nn

from imgtrans.io import atomic_write, remove_stale_temporaries
from imgtrans.train.manifest import remove_run, written_files
from imgtrans.store.checkpoint import load_good_checkpoint, previous_path

LOCK_FILE = ".lock"
HISTORY = ("checkpoints", "log.jsonl", "samples", "model", "best", "tensorboard")
"""What a run writes into its folder; any of it present means the folder holds a run."""


class RunInUseError(RuntimeError):
    """Another process is training into the same run folder."""


class RunExistsError(FileExistsError):
    """The run folder already holds a run, and neither resuming nor overwriting it was asked for."""

    def __init__(self, folder: Path, found: list[str]) -> None:
        self.folder, self.found = folder, found
        super().__init__(self._message("fit(resume=True)", "fit(overwrite=True)", "another config.out"))

    @property
    def cli_message(self) -> str:
        """The message in the command line's words."""
        return self._message("--resume", "--overwrite", "another --out")

    def _message(self, resume: str, overwrite: str, other: str) -> str:
        return (
            f"{self.folder} already holds a run ({', '.join(self.found)}); nothing was changed. To continue it use "
            f"{resume}, to replace it use {overwrite} (it removes only the files the run wrote), or train into {other}"
        )


class RunFolder:
    """The lock on a run folder and what may be done to its contents; a context manager.

    Args:
        folder: the run folder (created if needed).
        active: whether this process writes the folder (rank 0 under torchrun); other processes
            neither lock nor change it.
    """

    def __init__(self, folder: str | os.PathLike, active: bool = True) -> None:
        self.folder, self.active = Path(folder), active
        self._handle = None

    def __enter__(self) -> "RunFolder":
        if self.active:
            self.lock()
        return self

    def __exit__(self, *exc) -> None:
        self.unlock()

    def lock(self) -> None:
        """Take the folder's lock, or fail at once naming the process that holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.folder / LOCK_FILE, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = _describe(handle.read())
            handle.close()
            raise RunInUseError(
                f"{self.folder} is in use by another training run ({holder}); wait for it to finish or stop it, "
                "or train into another folder"
            ) from None
        handle.seek(0)
        handle.truncate()
        holder = {"pid": os.getpid(), "host": os.uname().nodename, "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                  "command": " ".join(sys.argv)}  # fmt: skip
        handle.write(json.dumps(holder) + "\n")
        handle.flush()
        self._handle = handle

    def unlock(self) -> None:
        """Release the lock (the kernel does it anyway when the process exits)."""
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def history(self) -> list[str]:
        """What of a run the folder holds (``checkpoints``, ``log.jsonl``...), in ``HISTORY`` order.

        Only what a run wrote counts (see [imgtrans.train.manifest][]): a folder holding the user's
        own files alone holds no run.
        """
        written = [p.relative_to(self.folder).parts[0] for p in written_files(self.folder) if p.stat().st_size > 0]
        return [name for name in HISTORY if name in written]

    def prepare(self, *, resume: bool, overwrite: bool) -> str | None:
        """Check what starting may do to the folder, then clear the leftovers of dead writers.

        Returns, after an overwrite, what was removed and what was kept, in a line.

        Raises:
            RunExistsError: the folder holds a run, and neither ``resume`` nor ``overwrite`` is set.
            ValueError: both are set.
        """
        if not self.active:
            return None
        if resume and overwrite:
            raise ValueError("resume continues the run in the folder and overwrite replaces it: choose one")
        found, said = self.history(), None
        if found and overwrite:
            removed, kept = remove_run(self.folder)
            said = f"replaced the run in {self.folder}: removed the {len(removed)} files it wrote ({', '.join(found)})"
            if kept:
                shown = ", ".join(str(p.relative_to(self.folder)) for p in kept[:3])
                shown += ", ..." if len(kept) > 3 else ""
                said += f"; kept {len(kept)} other files ({shown})"
        elif found and not resume:
            raise RunExistsError(self.folder, found)
        for folder in (self.folder, *(p for p in self.folder.rglob("*") if p.is_dir())):
            remove_stale_temporaries(folder)
        return said


def _describe(text: str) -> str:
    try:
        holder = json.loads(text)
        return f"process {holder['pid']} on {holder['host']} since {holder['since']}: {holder['command']}"
    except (ValueError, KeyError, TypeError):
        return "a process that left no description"


@dataclass
class RunSummary:
    """What a finished (or interrupted) run left on disk."""

    out: Path
    steps: int
    checkpoint: Path
    samples: list[Path] = field(default_factory=list)
    model: Path | None = None
    interrupted: bool = False
    # with validation (imgtrans.train.validation): the last and the best model's scores
    best: Path | None = None
    best_step: int | None = None
    best_scores: dict | None = None
    last_scores: dict | None = None
    val_metric: str | None = None
    train_seconds: float = 0.0
    val_seconds: float = 0.0
    exit_status: int = 0
    """0 for a finished run; ``128 + signal`` for one stopped by a signal (130: Ctrl-C, 143: SIGTERM, 129: SIGHUP)."""

    def add_validation(self, validator) -> None:
        """The scores of a [Validator][imgtrans.train.validation.Validator] (or none)."""
        if validator is None:
            return
        self.val_metric, self.last_scores, self.val_seconds = validator.metric, validator.last, validator.seconds
        if validator.best is not None:
            best = validator.best
            self.best, self.best_step, self.best_scores = validator.directory, best.step, best.scores


def trim_log(path: Path, step: int) -> None:
    """Drop the log records after ``step`` (and a line cut short by a crash), atomically.

    A resumed run trains the steps after its checkpoint again; without this, a run that crashed
    after its last checkpoint would log those steps twice.
    """
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if (logged := _logged_step(line)) is not None and logged <= step]
    if len(kept) == len(lines):
        return
    atomic_write(path, "".join(kept))


def _logged_step(line: str) -> int | None:
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None


# ------------------------------------------------------------------------ good checkpoints only
def kept(checkpoint: Path) -> str:
    """Which checkpoint a failure leaves, in words (the previous one, when the last is damaged)."""
    if not checkpoint.exists() and not previous_path(checkpoint).exists():
        return "no checkpoint was written"
    try:
        good = load_good_checkpoint(checkpoint, warn=False)  # checked against its checksum
        return f"the last good checkpoint is {good.path} (step {good.meta['step']})"
    except (ValueError, OSError, KeyError):
        return f"the checkpoint {checkpoint} was left as it was"


class WriteError(OSError):
    """A failed write of a run's file (a full or read-only disk), said in one line with what was kept."""

    def __str__(self) -> str:
        return self.args[0]


@contextlib.contextmanager
def writing(what: str, path: Path, checkpoint: Path, then: str = "then resume the run") -> Iterator[None]:
    """Turn a failed write of ``what`` to ``path`` into one line that says what was kept."""
    try:
        yield
    except (OSError, SafetensorError) as error:  # safetensors reports a failed write as its own error
        reason = getattr(error, "strerror", None) or str(error)
        failure = WriteError(
            f"cannot write {what} {path}: {reason}. Nothing was lost: {kept(checkpoint)}; free some space "
            f"(or make the folder writable), {then}"
        )
        failure.errno = getattr(error, "errno", None)
        raise failure from None


def non_finite_tensors(model: nn.Module, optimizers: Mapping[str, torch.optim.Optimizer]) -> list[str]:
    """Names of the model's and optimisers' floating-point tensors holding NaN or infinity."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for name, optimizer in optimizers.items():
        for slots in optimizer.state.values():
            tensors.update({f"optimizer {name}.{k}": v for k, v in slots.items() if isinstance(v, torch.Tensor)})
    return [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
