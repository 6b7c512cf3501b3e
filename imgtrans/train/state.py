"""What a checkpoint holds of a run beyond its tensors, and how a resumed run takes it back.

The learning-rate schedule is the reference code's: constant for the first epochs, then a linear
decay to zero over the last ``epochs_decay`` (pix2pix, section 6.2, with the code's 100 + 100
epochs for facades). A resumed run restores weights, optimiser moments, schedule position,
gradient scaler, step and random generators; the settings given on resume (``lr``, ``betas``,
``epochs``) apply from the resumed step on, not the checkpoint's.

Under ``torchrun`` the weights and optimisers are the same on every process, but some state is
each process's own: what a model keeps beyond its weights (``training_state``: CycleGAN's image
pools, filled with the fakes of that process's batches) and the random generators. Rank 0 writes
the checkpoint with its own under ``train.`` and ``rng.`` and every other process's under
``rank<r>.train.`` and ``rank<r>.rng.`` ([process_states][imgtrans.train.state.process_states]);
on resume each process takes back its own. A checkpoint of another number of processes is
resumed with a [ProcessStateWarning][imgtrans.train.state.ProcessStateWarning], not refused:
the processes it has no state of start with empty pools, and the states of processes the run no
longer has are dropped.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from imgtrans.store.checkpoint import Checkpoint, model_config, optimizer_from_tensors, restore_rng, rng_tensors
from imgtrans.store.config import ModelConfig
from imgtrans.train.distributed import Distributed
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


class ProcessStateWarning(UserWarning):
    """A resume under ``torchrun`` could not give every process its own state back (another number of processes)."""


# ------------------------------------------------------------------------------ each process's own
def process_states(model: nn.Module, dist: Distributed, device: torch.device) -> dict[str, torch.Tensor]:
    """The other processes' own state, for rank 0's checkpoint: ``rank<r>.train.*`` and ``rank<r>.rng.*``.

    A collective under ``torchrun`` (every process calls it at each save); empty on the other
    ranks and for a single process, whose state [save_checkpoint][imgtrans.store.checkpoint.save_checkpoint]
    writes itself.
    """
    if not dist.enabled:
        return {}
    own = rng_tensors()
    if callable(getattr(model, "training_state", None)):
        own.update({f"train.{k}": v for k, v in model.training_state().items()})
    states = dist.gather(own, device)
    return {f"rank{r}.{k}": v for r, state in enumerate(states or []) if r > 0 for k, v in state.items()}


def own_state(checkpoint: Checkpoint, dist: Distributed, keeps_state: bool) -> Checkpoint | None:
    """This process's part of ``checkpoint`` (its ``train.`` and ``rng.`` sections), ``None`` where it has none.

    Rank 0 says once (a [ProcessStateWarning][imgtrans.train.state.ProcessStateWarning]) when a
    model that keeps state (``keeps_state``) cannot have every process's back: another number of
    processes, or a checkpoint that rank 0 saved alone (a loading failure) or an earlier imgtrans wrote.
    """
    saved = checkpoint.meta.get("world_size", 1)
    held = [r for r in range(1, max(saved, dist.world_size)) if checkpoint.section(f"rank{r}")]
    missing = [r for r in range(1, dist.world_size) if r not in held]
    dropped = [r for r in held if r >= dist.world_size]
    if dist.is_main and keeps_state and (missing or dropped):
        head = (f"{checkpoint.path} was written by {saved} process(es) and this run has {dist.world_size}"
                if saved != dist.world_size else f"{checkpoint.path} holds the state of process 0 only (saved by "
                "it alone, after a loading failure, or by an earlier imgtrans)")  # fmt: skip
        said = [f"process(es) {', '.join(map(str, missing))} start with empty image pools"] if missing else []
        said += [f"the saved pools of process(es) {', '.join(map(str, dropped))} are dropped"] if dropped else []
        warnings.warn(ProcessStateWarning(
            f"{head}: {'; '.join(said)}; training goes on, but not as the uninterrupted run would"
        ))  # fmt: skip
    if dist.rank == 0:
        return checkpoint
    if dist.rank not in held:
        return None
    return Checkpoint(checkpoint.section(f"rank{dist.rank}"), checkpoint.meta, checkpoint.path)


def restore(
    checkpoint: Checkpoint,
    model: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    schedulers: dict[str, Any],
    scaler: torch.amp.GradScaler,
    config: TrainConfig,
    dist: Distributed = Distributed(),
) -> int:
    """Put the model, optimisers, schedules, scaler and RNG back as ``checkpoint`` saved them; returns its step.

    Each process takes back its own state (see [own_state][imgtrans.train.state.own_state]).
    """
    check_same_model(checkpoint, model.config)
    model.load_state_dict(checkpoint.section("model"), strict=True)
    keeps_state = callable(getattr(model, "load_training_state", None))  # what else it keeps: CycleGAN's pools
    own = own_state(checkpoint, dist, keeps_state and bool(checkpoint.section("train")))
    if keeps_state and own is not None:
        model.load_training_state(own.section("train"))
    for name, optimizer in optimizers.items():
        saved = checkpoint.meta["optimizers"][name]
        optimizer.load_state_dict(optimizer_from_tensors(checkpoint, f"optim.{name}", saved))
        match_layouts(optimizer)
    for name, scheduler in schedulers.items():
        scheduler.load_state_dict(checkpoint.meta["schedulers"][name])
        # The settings of this run (lr, betas, epochs) apply from the resumed step on, not the checkpoint's.
        scheduler.base_lrs = [config.lr] * len(scheduler.base_lrs)
        for group, factor in zip(scheduler.optimizer.param_groups, scheduler.lr_lambdas):
            group.update(initial_lr=config.lr, lr=config.lr * factor(scheduler.last_epoch))
            group["betas"] = config.betas
    scaler.load_state_dict(checkpoint.meta["scaler"])
    restore_rng(own or checkpoint)  # a process the checkpoint has no state of takes rank 0's generators
    return checkpoint.meta["step"]


def match_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give each parameter's optimiser state its parameter's memory layout.

    Checkpoints hold contiguous tensors, and ``load_state_dict`` keeps them so; a channels-last
    parameter would then meet a contiguous ``exp_avg``, which the fused Adam kernel pairs element by
    element in memory order: a wrong update, silently (measured: 0.17 off after one step).
    """
    for param, state in optimizer.state.items():
        for key, value in state.items():
            if torch.is_tensor(value) and value.shape == param.shape and value.stride() != param.stride():
                state[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


# ------------------------------------------------------------------------ epochs across resumes
MEANING = ("data", "batch_size", "epochs", "epochs_decay", "load_size", "crop_size", "flip", "direction", "seed",
           "serial_batches", "label_nc", "instance")
"""Settings that change what a step or an epoch means, or the schedule a step is on."""


@dataclass
class EpochClock:
    """Where a run is in epochs, when a resume changed how many steps an epoch has.

    The run counted ``per_epoch`` steps an epoch since step ``origin_step``, at which it had done
    ``origin_epoch`` epochs (0 and 0 for a run never changed). The epoch a step falls in, the
    batch it starts at, the learning-rate schedule and the total of steps all follow from it, so
    that doubling the batch size on resume neither repeats nor skips epochs of the schedule.
    """

    per_epoch: int
    origin_step: int = 0
    origin_epoch: float = 0.0

    def position(self, step: int) -> int:
        """Steps of the current size since the start of the run, at ``step``."""
        return round(self.origin_epoch * self.per_epoch) + step - self.origin_step

    def epochs(self, step: int) -> float:
        """Epochs done at ``step``."""
        return self.position(step) / self.per_epoch

    def total(self, epochs: int, max_steps: int | None) -> int:
        """The step at which ``epochs`` are done (or ``max_steps``, if smaller)."""
        total = self.origin_step + epochs * self.per_epoch - round(self.origin_epoch * self.per_epoch)
        return total if max_steps is None else min(total, max_steps)

    def to_meta(self) -> dict:
        return {"steps_per_epoch": self.per_epoch, "epoch_origin": [self.origin_step, self.origin_epoch]}

    @classmethod
    def resumed(cls, meta: dict, per_epoch: int, saved_per_epoch: int) -> "EpochClock":
        """The clock of a run resumed from a checkpoint's ``meta`` with ``per_epoch`` steps an epoch now."""
        origin_step, origin_epoch = meta.get("epoch_origin", (0, 0.0))
        saved = cls(meta.get("steps_per_epoch", saved_per_epoch), origin_step, origin_epoch)
        if saved.per_epoch == per_epoch:
            return cls(per_epoch, origin_step, origin_epoch)
        return cls(per_epoch, meta["step"], saved.epochs(meta["step"]))


def resumed_clock(meta: dict, images: int, config: TrainConfig, world: int) -> tuple[EpochClock, dict[str, list]]:
    """The epoch clock of a run resumed from a checkpoint's ``meta``, and the settings changed since."""
    saved, saved_world = TrainConfig.from_checkpoint(meta["train_config"]), meta.get("world_size", 1)
    per_epoch = math.ceil(math.ceil(images / world) / config.batch_size)
    clock = EpochClock.resumed(meta, per_epoch, math.ceil(math.ceil(images / saved_world) / saved.batch_size))
    return clock, changed_settings(saved.to_dict(), config, saved_world, world)  # 0.1's epochs read as now


def changed_settings(saved: dict, current: TrainConfig, saved_world: int, world: int) -> dict[str, list]:
    """The settings of ``MEANING`` (and the process count) that differ from a checkpoint's: ``{name: [old, new]}``."""
    now = current.to_dict()
    changed = {k: [saved.get(k), now[k]] for k in MEANING if k in saved and saved.get(k) != now[k]}
    if saved_world != world:
        changed["processes"] = [saved_world, world]
    return changed
