"""The datasets a run reads, the batches of an epoch, a function of (seed, epoch) alone, and loading errors in one line.

A run reads pairs of images ([PairedImageDataset][imgtrans.data.paired.PairedImageDataset]), or,
with ``label_nc``, integer label maps one-hot encoded with their images
([LabelMapDataset][imgtrans.data.labels.LabelMapDataset]); then the model's ``in_channels`` is
``label_nc`` (+1 for the instance-boundary map), set here so that data and model cannot disagree.

Every process draws its share of a seeded ``DistributedSampler`` permutation (the whole of it
without ``torchrun``), so a resumed run sees the same batches from the step it resumes at, with
or without loading processes.
"""

from __future__ import annotations

import signal
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from imgtrans.data.labels import LabelMapDataset
from imgtrans.data.paired import PairedImageDataset
from imgtrans.data.unpaired import UnpairedImageDataset
from imgtrans.train.distributed import Distributed
from imgtrans.train.settings import SettingError, TrainConfig


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


def pairs_dataset(config: TrainConfig, root: str, *, direction, in_channels: int, out_channels: int, **augmentation):
    """The paired dataset of ``root``: label maps and images with ``config.label_nc``, else pairs of images."""
    if not config.label_nc:
        return PairedImageDataset(
            root, direction=direction, in_channels=in_channels, out_channels=out_channels, **augmentation
        )
    if direction != "AtoB":
        raise SettingError("direction", "must be AtoB with label maps (--label-nc): the label maps are the input")
    augmentation.pop("check_pairs", None)
    return LabelMapDataset(root, config.label_nc, config.instance, out_channels, **augmentation)


def folder_dataset(layout: str, root, config: TrainConfig, *, direction, channels: tuple[int, int], train: bool) -> Dataset:
    """The dataset on the folder ``root`` for a model whose ``data_layout`` is ``layout``, as ``config`` says.

    ``"paired"`` (pix2pix, pix2pixHD; the default): AB files or A/ and B/ read in ``direction``, or
    label maps with ``label_nc`` ([pairs_dataset][imgtrans.train.loading.pairs_dataset]);
    ``"unpaired"`` (CycleGAN): trainA/ and trainB/, B drawn at random unless ``serial_batches``.
    Training sets get the random jitter and mirroring; the others (sample grids) the centre crop.
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


def epoch_batches(
    data: Dataset, epoch: int, start: int, *, batch_size: int, seed: int, dist: Distributed, workers: int,
    pin_memory: bool,
) -> Iterator[dict]:
    """The batches of ``epoch`` from batch ``start`` on, for this process."""
    if hasattr(data, "set_epoch"):
        data.set_epoch(epoch)
    sampler = DistributedSampler(data, num_replicas=dist.world_size, rank=dist.rank, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    indices = list(sampler)[start * batch_size :]
    loader = DataLoader(
        data,
        batch_size=batch_size,
        sampler=indices,
        num_workers=workers,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed + epoch),
        worker_init_fn=quiet_worker if workers else None,
    )
    return one_line_errors(iter(loader))


def one_line_errors(batches: Iterator[dict]) -> Iterator[dict]:
    """``batches``, with an error raised in a loading process re-raised as its own one-line message.

    PyTorch re-raises a worker's exception with the worker's whole traceback in its message; the
    last line of that traceback is the error itself.
    """
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as error:
            message = str(error)
            if "Original Traceback" not in message:
                raise
            last = message.strip().splitlines()[-1]
            text = last.split(": ", 1)[1] if ": " in last else last
            try:
                raised = type(error)(text)
            except Exception:
                raise error from None
            raise raised from None
        yield batch


def quiet_worker(worker_id: int) -> None:
    """Loading processes leave Ctrl-C to the training process, which stops cleanly and says so once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
