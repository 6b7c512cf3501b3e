"""The seam between a model and the trainer: the model defines its objective, the trainer runs it.

A model the [Trainer][imgtrans.train.trainer.Trainer] can train is an ``nn.Module`` built by
[imgtrans.build][imgtrans.store.factory.build] (so that checkpoints can rebuild it) with three
methods ([TrainableModel][imgtrans.train.objective.TrainableModel]):

- ``networks() -> {attribute: nn.Module}``: its trainable networks, by the attribute that holds
  each. Under ``torchrun`` the trainer wraps each one in ``DistributedDataParallel`` (and, with
  ``sync_bn``, converts its BatchNorm), and calls ``training_step`` on a view of the model whose
  attributes hold the wrappers.
- ``optimizer_parameters() -> {optimizer name: parameters}``: which parameters each optimiser
  updates. The trainer makes one Adam per name (``lr``, ``betas``), one learning-rate schedule
  each, and saves them as the checkpoint's ``optim.NAME`` sections.
- ``training_step(batch, step) -> {term: Tensor}``: one optimisation step on ``batch``; it
  calls ``step.update(name, loss)`` for each optimiser it steps and returns the loss terms to log
  (detached scalars; the trainer averages them between log lines without a device sync).

Pix2pix is one such model (``{"g": G, "d": D}``; D's update, then G's); CycleGAN
([imgtrans.models.cyclegan][]) returns ``{"g": G_A + G_B parameters, "d": D_A + D_B parameters}`` and
steps both pairs, and a multi-scale discriminator is a network like any other.

Optional: ``data_layout`` (``"paired"`` by default, ``"unpaired"`` for CycleGAN: which dataset the
trainer reads from ``config.data``, see [folder_dataset][imgtrans.train.datasets.folder_dataset]);
``training_state() -> {name: Tensor}`` and ``load_training_state(state)``, what the model keeps
besides its weights for an exact resume (CycleGAN's image pools), saved in each checkpoint;
``freeze_encoder(frozen: bool)``, which the trainer calls before each step while
``freeze_encoder_steps`` lasts (and once more to release it), and ``progress_terms``, the names of
the terms the progress bar shows (by default the first three); and ``freezes_parameters``: true
when some steps leave parameters without gradients (pix2pixHD's fixed global generator), which
``DistributedDataParallel`` must then be told.
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Mapping, Protocol, runtime_checkable

import torch
from torch import nn

from imgtrans.train.setup import autocast, no_sync


@runtime_checkable
class TrainableModel(Protocol):
    """What the trainer needs of a model (see the module)."""

    def networks(self) -> dict[str, nn.Module]: ...

    def optimizer_parameters(self) -> Mapping[str, Iterable[nn.Parameter]]: ...

    def training_step(self, batch: dict, step: "StepContext") -> dict[str, torch.Tensor]: ...


class StepContext:
    """What a model's ``training_step`` is given: precision, optimiser updates, the device, the step number.

    Args:
        optimizers: the run's optimisers by name (those of ``optimizer_parameters()``).
        scaler: the gradient scaler (enabled for fp16 only); the trainer calls its ``update()``
            once after each step.
        device: where the batch goes.
        amp: ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        channels_last: whether images go to the device in the channels-last memory format.

    Attributes:
        step: the number of steps done before this one (0 for the first).
        epoch: the epoch this step belongs to (0 for the first), for objectives that change with it.
    """

    def __init__(
        self,
        optimizers: Mapping[str, torch.optim.Optimizer],
        scaler: torch.amp.GradScaler,
        device: torch.device,
        amp: str = "fp32",
        channels_last: bool = False,
    ) -> None:
        self.optimizers, self.scaler, self.device = optimizers, scaler, device
        self.amp, self.channels_last = amp, channels_last
        self.step = self.epoch = 0

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision as configured (a no-op for fp32): wrap the forward passes and losses in it."""
        return autocast(self.amp, self.device)

    def update(self, name: str, loss: torch.Tensor) -> None:
        """One step of optimiser ``name`` on ``loss``: zero its gradients, a (scaled) backward, a (scaled) step.

        The loss is back-propagated in fp32 even under autocast.
        """
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss.float()).backward()
        self.scaler.step(optimizer)

    def to_device(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` on the training device (asynchronously from pinned memory), in the configured memory format."""
        images = images.to(self.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def no_sync(self, network: nn.Module) -> contextlib.AbstractContextManager:
        """No gradient all-reduce for ``network`` inside the block (under torchrun; a no-op otherwise).

        For a network that a loss runs through without training it (D in G's update).
        """
        return no_sync(network)
