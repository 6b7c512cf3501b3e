"""The data of a run: training pairs, the images of sample grids, the validation pairs, and their overlap.

By default all three are [PairedImageDataset][imgtrans.data.paired.PairedImageDataset]s on the run's
folders: the training pairs with the paper's jitter and mirroring, the sample and validation
pairs centre-cropped without augmentation. Validation that shares images with training measures
memory, not generalisation: [overlap][imgtrans.train.datasets.overlap] finds the shared files
cheaply (same name and size, then same SHA-256), and the trainer warns.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import torch
from torch.utils.data import Dataset

from imgtrans.data.paired import PairedImageDataset
from imgtrans.store.config import ModelConfig
from imgtrans.train.settings import SettingError, TrainConfig
from imgtrans.train.validation import Validator


def resolve_direction(config: TrainConfig, model: ModelConfig, needed: bool) -> str | None:
    """``config.direction``, else the model configuration's; required when the trainer reads a folder of pairs."""
    direction = config.direction or model.direction
    if direction is None and needed:
        raise SettingError(
            "direction",
            f"is needed: {model.name} is not made for one dataset, so say which half of the AB "
            "images is the input: AtoB or BtoA (facades labels -> photo is BtoA)",
        )
    return direction


def run_datasets(
    config: TrainConfig, direction: str | None, channels: tuple[int, int], world_size: int,
    train_data: Dataset | None, sample_data: Dataset | None,
) -> tuple[Dataset, Dataset]:
    """The training and the sample datasets: those given, else folders of ``config.data``."""
    c = config
    if train_data is None:
        if c.data is None:
            raise ValueError("no training data: set config.data to a folder of paired images (or pass a dataset)")
        common = dict(direction=direction, in_channels=channels[0], out_channels=channels[1], seed=c.seed,
                      check_pairs=c.check_pairs, skip_bad_images=c.skip_bad_images)  # fmt: skip
        train_data = PairedImageDataset(c.data, load_size=c.load_size, crop_size=c.crop_size, flip=c.flip, **common)
        if sample_data is None:
            sample_data = PairedImageDataset(
                c.data, load_size=c.crop_size, crop_size=c.crop_size, train=False, **common
            )
    if len(train_data) < world_size:
        raise ValueError(f"{len(train_data)} training images cannot feed {world_size} processes")
    return train_data, sample_data if sample_data is not None else train_data


def validation_dataset(config: TrainConfig, direction: str | None, channels: tuple[int, int]) -> Dataset:
    """The folder ``config.val_data`` as pairs without augmentation."""
    return PairedImageDataset(
        config.val_data, direction=direction, in_channels=channels[0], out_channels=channels[1],
        load_size=config.crop_size, crop_size=config.crop_size, train=False, seed=config.seed,
    )  # fmt: skip


def run_validator(
    config: TrainConfig, direction: str | None, channels: tuple[int, int], train: Dataset, val_data: Dataset | None,
    device: torch.device,
) -> Validator | None:
    """Validation on ``val_data``, or on the folder ``config.val_data``, or none; a warning if it overlaps ``train``."""
    c = config
    if val_data is None and c.val_data is None:
        return None
    if val_data is None:
        val_data = validation_dataset(c, direction, channels)
    if shared := overlap(train, val_data):  # memory, not generalisation, would be measured
        warnings.warn(f"{len(shared)} of the {len(val_data)} validation images are also training images "
                      f"(e.g. {shared[0]}): validation scores will be optimistic; validate on held-out pairs")
    return Validator(
        val_data, Path(c.out), c.val_metric, c.val_every, batch_size=8, device=device,
        data=c.val_data if c.val_data is not None else type(val_data).__name__,
        inception_weights=c.inception_weights,
    )  # fmt: skip


def overlap(train: Dataset, val: Dataset) -> list[Path]:
    """The validation files that are also training files: same name and size, and the same bytes."""
    train_files, val_files = _files(train), _files(val)
    if not train_files or not val_files:
        return []
    by_key = {(p.name, p.stat().st_size): p for p in train_files}
    shared = []
    for path in val_files:
        twin = by_key.get((path.name, path.stat().st_size))
        if twin is not None and (twin.resolve() == path.resolve() or _sha256(twin) == _sha256(path)):
            shared.append(path)
    return shared


def _files(data: Dataset) -> list[Path]:
    pairs = getattr(data, "pairs", None)
    return [] if pairs is None else [p for pair in pairs for p in pair if p is not None and p.is_file()]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
