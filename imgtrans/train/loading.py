"""The batches of an epoch, a function of (seed, epoch) alone, and loading errors in one line.

Every process draws its share of a seeded ``DistributedSampler`` permutation (the whole of it
without ``torchrun``), so a resumed run sees the same batches from the step it resumes at, with
or without loading processes.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from imgtrans.train.distributed import Distributed
from imgtrans.train.signals import blocked, ignore_in_worker


def epoch_batches(
    data: Dataset, epoch: int, start: int, *, batch_size: int, seed: int, dist: Distributed, workers: int,
    pin_memory: bool, stopping: Callable[[], bool] = lambda: False,
) -> Iterator[dict]:
    """The batches of ``epoch`` from batch ``start`` on, for this process.

    Loading processes ignore the stop signals (see [imgtrans.train.signals][]); should one die all
    the same once ``stopping()`` is true, the epoch simply ends there: the stop, not an error.
    """
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
        worker_init_fn=ignore_in_worker if workers else None,
    )
    with blocked():  # the loading processes are forked here, with the stop signals held back
        batches = iter(loader)
    return one_line_errors(batches, stopping)


def checked(batches: Iterator[dict], failure: Callable[[Exception], Exception]) -> Iterator[dict]:
    """``batches``, a loading failure (a file gone bad mid-run) raised as ``failure(error)`` says."""
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (OSError, ValueError, RuntimeError) as error:
            raise failure(error) from None
        yield batch


def one_line_errors(batches: Iterator[dict], stopping: Callable[[], bool] = lambda: False) -> Iterator[dict]:
    """``batches``, with an error raised in a loading process re-raised as its own one-line message.

    PyTorch re-raises a worker's exception with the worker's whole traceback in its message; the
    last line of that traceback is the error itself. After a stop request (``stopping()``), a
    failing loader ends the batches instead: the run stops and saves as asked.
    """
    try:
        yield from _one_line_errors(batches, stopping)
    finally:
        shut_down(batches)


def _one_line_errors(batches: Iterator[dict], stopping: Callable[[], bool]) -> Iterator[dict]:
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as error:
            if stopping():
                return
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


def shut_down(batches: Iterator[dict]) -> None:
    """Stop the loading processes of ``batches`` now, whatever ended the epoch.

    They ignore ``SIGTERM`` (see [imgtrans.train.signals][]), which is how PyTorch ends a worker
    that does not stop when asked, and how ``multiprocessing`` ends daemons at exit: so they are
    asked here (PyTorch's own shutdown), and one that is still alive after it is killed.
    """
    shutdown = getattr(batches, "_shutdown_workers", None)  # PyTorch's multiprocessing iterator only
    if shutdown is None:
        return
    shutdown()
    for worker in getattr(batches, "_workers", ()):
        if worker.is_alive():
            worker.kill()
            worker.join(timeout=10)
