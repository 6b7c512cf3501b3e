"""The batches of an epoch, a function of (seed, epoch) alone, and loading errors in one line.

Every process draws its share of a seeded ``DistributedSampler`` permutation (the whole of it
without ``torchrun``), so a resumed run sees the same batches from the step it resumes at, with
or without loading processes.
"""

from __future__ import annotations

import signal
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from imgtrans.data.paired import PairedImageDataset
from imgtrans.data.unpaired import UnpairedImageDataset
from imgtrans.train.distributed import Distributed
from imgtrans.train.settings import TrainConfig


def folder_dataset(layout: str, root, config: TrainConfig, *, direction, channels: tuple[int, int], train: bool) -> Dataset:
    """The dataset on the folder ``root`` for a model whose ``data_layout`` is ``layout``, as ``config`` says.

    ``"paired"`` (pix2pix, the default): AB files or A/ and B/ read in ``direction``; ``"unpaired"``
    (CycleGAN): trainA/ and trainB/, B drawn at random unless ``serial_batches``. Training sets get
    the random jitter and mirroring; the others (sample grids) the centre crop.
    """
    in_ch, out_ch = channels
    size = (dict(load_size=config.load_size, crop_size=config.crop_size, flip=config.flip) if train
            else dict(load_size=config.crop_size, crop_size=config.crop_size, train=False))  # fmt: skip
    if layout == "unpaired":
        return UnpairedImageDataset(root, in_channels=in_ch, out_channels=out_ch, seed=config.seed,
                                    serial=config.serial_batches, **size)  # fmt: skip
    if layout != "paired":
        raise ValueError(f"the model's data_layout must be 'paired' or 'unpaired'; got {layout!r}")
    return PairedImageDataset(root, direction=direction, in_channels=in_ch, out_channels=out_ch, seed=config.seed,
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
