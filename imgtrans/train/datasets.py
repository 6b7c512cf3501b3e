"""The data of a run: training pairs, the images of sample grids, the validation pairs, and their overlap.

By default all three are [PairedImageDataset][imgtrans.data.paired.PairedImageDataset]s on the run's
folders: the training pairs with the paper's jitter and mirroring, the sample and validation
pairs centre-cropped without augmentation. Validation that shares images with training measures
memory, not generalisation: [overlap][imgtrans.train.datasets.overlap] finds the shared files
cheaply (same name and size, then same SHA-256), and the trainer warns.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from torch.utils.data import Dataset

from imgtrans.data.paired import PairedImageDataset
from imgtrans.train.settings import TrainConfig


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
            sample_data = PairedImageDataset(c.data, load_size=c.crop_size, crop_size=c.crop_size, train=False, **common)
    if len(train_data) < world_size:
        raise ValueError(f"{len(train_data)} training images cannot feed {world_size} processes")
    return train_data, sample_data if sample_data is not None else train_data


def validation_dataset(config: TrainConfig, direction: str | None, channels: tuple[int, int]) -> Dataset:
    """The folder ``config.val_data`` as pairs without augmentation."""
    return PairedImageDataset(
        config.val_data, direction=direction, in_channels=channels[0], out_channels=channels[1],
        load_size=config.crop_size, crop_size=config.crop_size, train=False, seed=config.seed,
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
