"""The record of what a run wrote into its folder, so that replacing the run removes only that.

A run folder is the user's: they may keep notes in ``model/``, a README at the top, their own
images beside ``samples/``. ``OUT/.imgtrans-run.json`` lists every file the run wrote (relative
paths), rewritten atomically each time a new one appears; ``train --overwrite``
(``fit(overwrite=True)``) removes exactly those files and the folders they leave empty, and
nothing else. A folder written before this record existed (imgtrans 0.2) is read by the names
imgtrans gives its files (``checkpoints/last.safetensors``, ``samples/step-000500.png``,
``model/config.json``...): [written_files][imgtrans.train.manifest.written_files].
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from imgtrans.io import atomic_write

MANIFEST = ".imgtrans-run.json"
_MODEL_FILES = ("config.json", "model.safetensors", "README.md")
_NAMES = re.compile(
    r"^(checkpoints/(last|previous)\.safetensors|log\.jsonl|samples/step-\d{6,}\.png"
    rf"|(model|best)/({'|'.join(re.escape(f) for f in _MODEL_FILES)})|best/best\.json"
    r"|tensorboard/events\.out\.tfevents\.[^/]+)$"
)
"""The names imgtrans gives the files of a run (for folders without a record)."""


class Manifest:
    """The files a run wrote in ``folder``, as relative POSIX paths; ``add`` records more."""

    def __init__(self, folder: str | Path, active: bool = True) -> None:
        self.folder, self.active = Path(folder), active
        self.path = self.folder / MANIFEST
        self.files: set[str] = set(_read(self.path))

    def add(self, *paths: str | Path) -> None:
        """Record ``paths`` (inside the folder) as the run's; the record is replaced atomically."""
        root = self.folder.resolve()
        resolved = [Path(p).resolve() for p in paths]
        names = {p.relative_to(root).as_posix() for p in resolved if p.is_relative_to(root)}
        if not self.active or names <= self.files:
            return
        self.files |= names
        atomic_write(self.path, json.dumps({"files": sorted(self.files)}, indent=1) + "\n")

    def add_model(self, folder: Path) -> None:
        """Record the files [save_pretrained][imgtrans.store.factory.save_pretrained] wrote to ``folder``."""
        self.add(*(folder / name for name in _MODEL_FILES if (folder / name).is_file()))

    def add_matching(self, folder: Path, prefix: str) -> None:
        """Record the files of ``folder`` whose names start with ``prefix`` (TensorBoard's event files)."""
        if folder.is_dir():
            self.add(*(p for p in folder.iterdir() if p.is_file() and p.name.startswith(prefix)))


def _read(path: Path) -> list[str]:
    try:
        files = json.loads(path.read_text())["files"]
    except FileNotFoundError:
        return []
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{path} is not imgtrans's record of a run's files; move it away") from None
    return [f for f in files if isinstance(f, str) and ".." not in Path(f).parts and not Path(f).is_absolute()]


def written_files(folder: Path) -> list[Path]:
    """The files of ``folder`` that a run wrote: those its record lists, else those with imgtrans's names."""
    if (folder / MANIFEST).is_file():
        return [folder / name for name in sorted(_read(folder / MANIFEST)) if (folder / name).is_file()]
    return sorted(p for p in folder.rglob("*") if p.is_file() and _NAMES.match(p.relative_to(folder).as_posix()))


def remove_run(folder: Path) -> tuple[list[Path], list[Path]]:
    """Remove what a run wrote in ``folder``, and the folders that leaves empty; returns (removed, kept).

    ``kept`` are the other files: the user's, left where they were.
    """
    removed = written_files(folder)
    for path in removed:
        path.unlink(missing_ok=True)
    for directory in sorted({p.parent for p in removed}, key=lambda p: len(p.parts), reverse=True):
        while directory != folder and directory.is_dir() and not any(directory.iterdir()):
            directory.rmdir()
            directory = directory.parent
    (folder / MANIFEST).unlink(missing_ok=True)
    kept = sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in (MANIFEST, ".lock"))
    return removed, kept
