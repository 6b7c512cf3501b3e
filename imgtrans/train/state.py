"""What a checkpoint holds of a run beyond its tensors, and how a resumed run takes it back.

The learning-rate schedule is the reference code's: constant for the first epochs, then a linear
decay to zero over the last ``epochs_decay`` (pix2pix, section 6.2, with the code's 100 + 100
epochs for facades). A resumed run restores weights, optimiser moments, schedule position,
gradient scaler, step and random generators; the settings given on resume (``lr``, ``betas``,
``epochs``) apply from the resumed step on, not the checkpoint's.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from imgtrans.store.checkpoint import Checkpoint, model_config, optimizer_from_tensors, restore_rng
from imgtrans.store.config import ModelConfig
from imgtrans.train.settings import TrainConfig


def lr_factor(epochs: int, epochs_decay: int):
    """Constant for ``epochs`` epochs, then linear decay over ``epochs_decay`` more (as the reference code)."""

    def factor(epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - epochs) / float(epochs_decay + 1)

    return factor


def check_same_model(checkpoint: Checkpoint, current: ModelConfig) -> None:
    """Refuse a checkpoint of another architecture than the run's."""
    saved = model_config(checkpoint.meta, str(checkpoint.path))
    if (saved.name, saved.arguments) != (current.name, current.arguments):
        raise ValueError(
            f"{checkpoint.path} holds a different model ({saved.name} {saved.arguments}) than this run "
            f"({current.name} {current.arguments}); use another --out"
        )


def restore(
    checkpoint: Checkpoint,
    model: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    schedulers: dict[str, Any],
    scaler: torch.amp.GradScaler,
    config: TrainConfig,
) -> int:
    """Put the model, optimisers, schedules, scaler and RNG back as ``checkpoint`` saved them; returns its step."""
    check_same_model(checkpoint, model.config)
    model.load_state_dict(checkpoint.section("model"), strict=True)
    for name, optimizer in optimizers.items():
        optimizer.load_state_dict(optimizer_from_tensors(checkpoint, f"optim.{name}", checkpoint.meta["optimizers"][name]))
    for name, scheduler in schedulers.items():
        scheduler.load_state_dict(checkpoint.meta["schedulers"][name])
        # The settings of this run (lr, betas, epochs) apply from the resumed step on, not the checkpoint's.
        scheduler.base_lrs = [config.lr] * len(scheduler.base_lrs)
        for group, factor in zip(scheduler.optimizer.param_groups, scheduler.lr_lambdas):
            group.update(initial_lr=config.lr, lr=config.lr * factor(scheduler.last_epoch))
            group["betas"] = config.betas
    scaler.load_state_dict(checkpoint.meta["scaler"])
    restore_rng(checkpoint)
    return checkpoint.meta["step"]
