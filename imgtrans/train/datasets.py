"""The data of a run: training pairs, the images of sample grids, the validation pairs, and their overlap.

By default all three are read from the run's folders in the layout the model trains on
([folder_dataset][imgtrans.train.datasets.folder_dataset]: AB pairs, label maps, or unpaired
domains): the training set with the paper's jitter and mirroring, the sample and validation
images centre-cropped without augmentation. Validation that shares images with training measures
memory, not generalisation: [overlap][imgtrans.train.datasets.overlap] finds the shared files
cheaply (same name and size, then same SHA-256), and the trainer warns.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import torch
from torch.utils.data import Dataset

from imgtrans.data.labels import LabelMapDataset
from imgtrans.data.paired import PairedImageDataset
from imgtrans.data.unpaired import UnpairedImageDataset, evaluation_domains
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


def model_arguments(config: TrainConfig) -> dict:
    """``config.model_args``, with ``in_channels`` from ``label_nc`` (and ``instance``) when label maps are read."""
    arguments = dict(config.model_args)
    if not config.label_nc:
        return arguments
    channels = config.label_nc + int(config.instance)
    if arguments.get("in_channels", channels) != channels:
        raise SettingError(
            "label_nc",
            f"({config.label_nc}{' + 1 instance channel' if config.instance else ''}) sets the model's in_channels to "
            f"{channels}, but --model-args gives in_channels {arguments['in_channels']}: leave it out",
        )
    return {**arguments, "in_channels": channels}


def pairs_dataset(config: TrainConfig, root, *, direction, in_channels: int, out_channels: int, **augmentation):
    """The paired dataset of ``root``: label maps and images with ``config.label_nc``, else pairs of images."""
    if not config.label_nc:
        return PairedImageDataset(root, direction=direction, in_channels=in_channels, out_channels=out_channels,
                                  skip_bad_images=config.skip_bad_images, **augmentation)  # fmt: skip
    if direction != "AtoB":
        raise SettingError("direction", "must be AtoB with label maps (--label-nc): the label maps are the input")
    augmentation.pop("check_pairs", None)
    return LabelMapDataset(root, config.label_nc, config.instance, out_channels, **augmentation)


def folder_dataset(layout: str, root, config: TrainConfig, *, direction, channels: tuple[int, int], train: bool) -> Dataset:
    """The dataset on the folder ``root`` for a model whose ``data_layout`` is ``layout``, as ``config`` says.

    ``"paired"`` (pix2pix, pix2pixHD; the default): AB files or A/ and B/ read in ``direction``, or
    label maps with ``label_nc`` ([pairs_dataset][imgtrans.train.datasets.pairs_dataset]);
    ``"unpaired"`` (CycleGAN): trainA/ and trainB/, B drawn at random unless ``serial_batches``.
    Training sets get the random jitter and mirroring; the others (samples, validation) the centre crop.
    """
    in_ch, out_ch = channels
    size = (dict(load_size=config.load_size, crop_size=config.crop_size, flip=config.flip) if train
            else dict(load_size=config.crop_size, crop_size=config.crop_size, train=False))  # fmt: skip
    if layout == "unpaired":
        return UnpairedImageDataset(root, in_channels=in_ch, out_channels=out_ch, seed=config.seed,
                                    serial=config.serial_batches, **size)  # fmt: skip
    if layout != "paired":
        raise ValueError(f"the model's data_layout must be 'paired' or 'unpaired'; got {layout!r}")
    return pairs_dataset(config, root, direction=direction, in_channels=in_ch, out_channels=out_ch, seed=config.seed,
                         check_pairs=config.check_pairs, **size)  # fmt: skip


def run_datasets(
    config: TrainConfig, direction: str | None, channels: tuple[int, int], world_size: int,
    train_data: Dataset | None, sample_data: Dataset | None, layout: str = "paired",
) -> tuple[Dataset, Dataset]:
    """The training and the sample datasets: those given, else folders of ``config.data`` in ``layout``."""
    c = config
    if train_data is None:
        if c.data is None:
            raise ValueError("no training data: set config.data to a folder of images (or pass a dataset)")
        train_data = folder_dataset(layout, c.data, c, direction=direction, channels=channels, train=True)
        if sample_data is None:
            sample_data = folder_dataset(layout, c.data, c, direction=direction, channels=channels, train=False)
    if len(train_data) < world_size:
        raise ValueError(f"{len(train_data)} training images cannot feed {world_size} processes")
    return train_data, sample_data if sample_data is not None else train_data


def validation_dataset(
    config: TrainConfig, direction: str | None, channels: tuple[int, int], layout: str = "paired"
) -> tuple[Dataset, Dataset | None]:
    """The folder ``config.val_data`` without augmentation, and the real images to compare with, if any.

    Pairs (or label maps), with ``None``; for a model of unpaired domains (CycleGAN) the source
    domain of ``direction`` and the target domain's real images, of ``testA/`` and ``testB/`` (else
    ``trainA/`` and ``trainB/``), at the training crop size.
    """
    if layout != "unpaired":
        pairs = folder_dataset("paired", config.val_data, config, direction=direction, channels=channels, train=False)
        return pairs, None
    root = Path(config.val_data)
    split = "test" if (root / "testA").is_dir() or (root / "testB").is_dir() else "train"
    return evaluation_domains(root, direction or "AtoB", split, *channels, config.crop_size)


def run_validator(
    config: TrainConfig, direction: str | None, channels: tuple[int, int], train: Dataset, val_data: Dataset | None,
    device: torch.device, layout: str = "paired",
) -> Validator | None:
    """Validation on ``val_data``, or on the folder ``config.val_data`` read in the model's ``layout``, or none.

    A warning if it overlaps ``train``.
    """
    c = config
    if val_data is None and c.val_data is None:
        return None
    real = None
    if val_data is None:
        val_data, real = validation_dataset(c, direction, channels, layout)
    if real is not None and c.val_metric != "fid":
        raise SettingError("val_metric", f"is {c.val_metric}, but {c.val_data} is unpaired (no targets for l1, psnr "
                           "or ssim): validate by fid, the translations against the other domain's real images")
    if shared := overlap(train, val_data):  # memory, not generalisation, would be measured
        warnings.warn(f"{len(shared)} of the {len(val_data)} validation images are also training images "
                      f"(e.g. {shared[0]}): validation scores will be optimistic; validate on held-out pairs")
    return Validator(
        val_data, Path(c.out), c.val_metric, c.val_every, batch_size=8, device=device,
        data=c.val_data if c.val_data is not None else type(val_data).__name__,
        inception_weights=c.inception_weights, real=real,
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
    if pairs is None:  # unpaired domains (training) or one domain (validation), or another dataset
        files = [*getattr(data, "a_files", []), *getattr(data, "b_files", []), *getattr(data, "files", [])]
        return [p for p in files if isinstance(p, Path) and p.is_file()]
    return [p for pair in pairs for p in pair if p is not None and p.is_file()]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
