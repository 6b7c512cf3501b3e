"""The pix2pix trainer: the paper's optimisation (sections 3.3 and 6.2) with the practicalities.

Each step updates D once on ``0.5 * (L(D(x, y), real) + L(D(x, G(x)), fake))`` and then G once
on the non-saturating GAN loss plus ``lambda * L1``, with Adam (2e-4, betas 0.5/0.999). The
learning rate stays constant, then decays linearly to zero over the last ``epochs_decay`` epochs
(the reference code's schedule). The trainer also handles devices and mixed precision (user code
never calls autocast or a gradient scaler), ``torchrun`` (DistributedDataParallel), atomic
safetensors checkpoints with exact resumption, Ctrl-C, non-finite losses, a progress bar, a
JSONL log and sample grids.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from imgtrans.store.checkpoint import load_checkpoint, model_config, optimizer_from_tensors, restore_rng, save_checkpoint
from imgtrans.store.config import ModelConfig
from imgtrans.data.paired import PairedImageDataset
from imgtrans.devices import native_bf16, resolve_device
from imgtrans.store.factory import build, save_pretrained
from imgtrans.io import atomic_write, save_image
from imgtrans.models.pix2pix import Pix2Pix
from imgtrans.train.settings import SettingError, TrainConfig
from imgtrans.train.distributed import Distributed
from imgtrans.train.loggers import RunLoggers, require
from imgtrans.train.run import RunFolder
from imgtrans.train.samples import image_grid
from imgtrans.train.validation import Validator


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss or weight; the last good checkpoint was left intact."""


def lr_factor(epochs: int, epochs_decay: int):
    """Constant for ``epochs`` epochs, then linear decay over ``epochs_decay`` more (as the reference code)."""

    def factor(epoch: int) -> float:
        return 1.0 - max(0, epoch + 1 - epochs) / float(epochs_decay + 1)

    return factor


def trim_log(path: Path, step: int) -> None:
    """Drop the log records after ``step`` (and a line cut short by a crash), atomically.

    A resumed run trains the steps after its checkpoint again; without this, a run that crashed
    after its last checkpoint would log those steps twice.
    """
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if (logged := _logged_step(line)) is not None and logged <= step]
    if len(kept) == len(lines):
        return
    atomic_write(path, "".join(kept))


def _logged_step(line: str) -> int | None:
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return None


@dataclass
class RunSummary:
    """What a finished (or interrupted) run left on disk."""

    out: Path
    steps: int
    checkpoint: Path
    samples: list[Path] = field(default_factory=list)
    model: Path | None = None
    interrupted: bool = False
    # with validation (imgtrans.train.validation): the last and the best model's scores
    best: Path | None = None
    best_step: int | None = None
    best_scores: dict | None = None
    last_scores: dict | None = None
    val_metric: str | None = None
    train_seconds: float = 0.0
    val_seconds: float = 0.0


class Trainer:
    """Trains a registered pix2pix configuration.

    Args:
        config: the run's settings.
        train_data: a dataset of ``{"input", "target"}`` items; by default a
            [PairedImageDataset][imgtrans.data.paired.PairedImageDataset] on ``config.data``.
        sample_data: the images shown in sample grids (the first ``config.num_samples``);
            by default the training images without augmentation.
        model: a model built with [imgtrans.build][imgtrans.store.factory.build] (so that checkpoints
            can rebuild it); by default ``build(config.model, **config.model_args)``.
        val_data: held-out pairs to validate on (see [Validator][imgtrans.train.validation.Validator]);
            by default a [PairedImageDataset][imgtrans.data.paired.PairedImageDataset] on
            ``config.val_data`` without augmentation, or none.

    Example:
        >>> trainer = Trainer(TrainConfig(data="facades/train", direction="BtoA"))
        >>> trainer.fit()
    """

    def __init__(
        self,
        config: TrainConfig,
        train_data: Dataset | None = None,
        sample_data: Dataset | None = None,
        model: Pix2Pix | None = None,
        val_data: Dataset | None = None,
    ) -> None:
        self.config = config
        for destination in config.log_to:  # a missing library is said now, not after the first steps
            require(destination)
        device = resolve_device(config.device)
        self.dist = Distributed.from_env(device.type)
        self.device = resolve_device(config.device, self.dist.local_rank)
        if config.amp == "fp16" and self.device.type == "cpu":
            warnings.warn(
                "fp16 autocast on the CPU is for checking the fp16 code path (gradient scaler included); it is not "
                "faster than fp32 here. Use amp='bf16' on a CPU with native bfloat16",
                stacklevel=2,
            )
        if config.amp == "bf16" and self.device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError("this GPU does not support bfloat16; use amp='fp16'")
        if config.amp == "bf16" and self.device.type == "cpu" and not native_bf16("cpu"):
            warnings.warn(
                "this CPU has no native bfloat16 arithmetic (AVX512-BF16 or AMX): bf16 autocast runs in a slow "
                "emulation here, hundreds of times slower than fp32; use amp='fp32' on this machine",
                stacklevel=2,
            )
        torch.manual_seed(config.seed)
        self.model = model if model is not None else build(config.model, **config.model_args)
        if not isinstance(self.model, Pix2Pix) or not isinstance(getattr(self.model, "config", None), ModelConfig):
            raise TypeError("the trainer needs a Pix2Pix model made by imgtrans.build, so checkpoints can rebuild it")
        # The run records the direction it trains with: eval and translate of the run use it.
        self.direction = config.direction or self.model.config.direction
        self.model.config = self.model.config.with_direction(self.direction)
        self.model.config.to_dict()  # checkpoints must be able to record it: refuse now, not at the first save
        if config.sync_bn and self.dist.enabled:
            if self.device.type != "cuda":
                raise SettingError("sync_bn", "needs CUDA: torch synchronises BatchNorm statistics only between GPUs")
            self.model.generator = nn.SyncBatchNorm.convert_sync_batchnorm(self.model.generator)
            if self.model.discriminator is not None:
                self.model.discriminator = nn.SyncBatchNorm.convert_sync_batchnorm(self.model.discriminator)
        self.model.to(self.device)
        if config.channels_last:
            self.model.to(memory_format=torch.channels_last)
        if config.compile:
            for network in (self.model.generator, self.model.discriminator):
                if network is not None:
                    network.compile()
        self.train_data, self.sample_data = self._datasets(train_data, sample_data)
        self.out = Path(config.out)
        self.checkpoint_path = self.out / "checkpoints" / "last.safetensors"

        g, d = self.model.generator, self.model.discriminator
        # The fused Adam kernel updates all parameters in one pass (same update, less memory traffic).
        adam = dict(lr=config.lr, betas=config.betas, fused=self.device.type in ("cpu", "cuda"))
        self.optimizers = {"g": torch.optim.Adam(g.parameters(), **adam)}
        if d is not None:
            self.optimizers["d"] = torch.optim.Adam(d.parameters(), **adam)
        factor = lr_factor(config.epochs - config.decay_epochs, config.decay_epochs)
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, factor) for k, o in self.optimizers.items()}
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.amp == "fp16")
        self.net = self._distributed_view()
        self.validator = self._validator(val_data) if self.dist.is_main else None
        self._val_postfix: dict[str, str] = {}
        self.step = 0
        self._sums: dict[str, torch.Tensor] = {}
        self._count = self._images = 0

    # ----------------------------------------------------------------------------------- set-up
    def _model_channels(self) -> tuple[int, int]:
        args = self.model.config.arguments
        return args.get("in_channels", 3), args.get("out_channels", 3)

    def _datasets(self, train_data: Dataset | None, sample_data: Dataset | None) -> tuple[Dataset, Dataset]:
        c = self.config
        if train_data is None:
            if c.data is None:
                raise ValueError("no training data: set config.data to a folder of paired images (or pass a dataset)")
            if self.direction is None:
                raise SettingError(
                    "direction",
                    f"is needed: {self.model.config.name} is not made for one dataset, so say which half of the AB "
                    "images is the input: AtoB or BtoA (facades labels -> photo is BtoA)",
                )
            in_ch, out_ch = self._model_channels()
            common = dict(direction=self.direction, in_channels=in_ch, out_channels=out_ch, seed=c.seed,
                          check_pairs=c.check_pairs)  # fmt: skip
            train_data = PairedImageDataset(c.data, load_size=c.load_size, crop_size=c.crop_size, flip=c.flip, **common)
            if sample_data is None:
                sample_data = PairedImageDataset(c.data, load_size=c.crop_size, crop_size=c.crop_size, train=False, **common)
        if len(train_data) < self.dist.world_size:
            raise ValueError(f"{len(train_data)} training images cannot feed {self.dist.world_size} processes")
        return train_data, sample_data if sample_data is not None else train_data

    def _validator(self, val_data: Dataset | None) -> Validator | None:
        """Validation on ``val_data``, or on the folder ``config.val_data``, or none (rank 0 only)."""
        c = self.config
        if val_data is None and c.val_data is None:
            return None
        if val_data is None:
            in_ch, out_ch = self._model_channels()
            val_data = PairedImageDataset(
                c.val_data, direction=c.direction, in_channels=in_ch, out_channels=out_ch,
                load_size=c.crop_size, crop_size=c.crop_size, train=False, seed=c.seed,
            )  # fmt: skip
        return Validator(
            val_data, self.out, c.val_metric, c.val_every, batch_size=8, device=self.device,
            data=c.val_data if c.val_data is not None else type(val_data).__name__,
            inception_weights=c.inception_weights,
        )  # fmt: skip

    def _distributed_view(self) -> Pix2Pix:
        """The model as the training step sees it: DDP-wrapped networks under torchrun."""
        if not self.dist.enabled:
            return self.model
        ids = [self.device.index] if self.device.type == "cuda" else None
        # Buffers are not broadcast: D runs twice (real, fake) before one backward, which the
        # in-place buffer broadcast breaks (pytorch#175024); BatchNorm statistics stay per process.
        wrap = lambda m, unused=False: DistributedDataParallel(  # noqa: E731
            m, device_ids=ids, broadcast_buffers=False, find_unused_parameters=unused
        )
        d = self.model.discriminator
        return self.model.with_networks(
            wrap(self.model.generator, unused=self.config.freeze_encoder_steps > 0), None if d is None else wrap(d)
        )

    def steps_per_epoch(self) -> int:
        """Optimisation steps in one pass over the training images (per process)."""
        return math.ceil(math.ceil(len(self.train_data) / self.dist.world_size) / self.config.batch_size)

    def total_steps(self) -> int:
        """Steps of the whole run: every epoch, or ``max_steps`` if smaller."""
        total = self.config.epochs * self.steps_per_epoch()
        return total if self.config.max_steps is None else min(total, self.config.max_steps)

    def batches(self, epoch: int, start: int) -> Iterator[dict]:
        """The batches of ``epoch`` from batch ``start`` on: a function of (seed, epoch) alone."""
        if hasattr(self.train_data, "set_epoch"):
            self.train_data.set_epoch(epoch)
        sampler = DistributedSampler(
            self.train_data, num_replicas=self.dist.world_size, rank=self.dist.rank, shuffle=True, seed=self.config.seed
        )
        sampler.set_epoch(epoch)
        indices = list(sampler)[start * self.config.batch_size :]
        loader = DataLoader(
            self.train_data,
            batch_size=self.config.batch_size,
            sampler=indices,
            num_workers=self.config.workers,
            pin_memory=self.device.type == "cuda",
            generator=torch.Generator().manual_seed(self.config.seed + epoch),
            worker_init_fn=_quiet_worker if self.config.workers else None,
        )
        return one_line_errors(iter(loader))

    # ------------------------------------------------------------------------------------ a step
    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision as configured (a no-op for fp32)."""
        if self.config.amp == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if self.config.amp == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    def _to_device(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.config.channels_last else images

    def train_step(self, batch: dict) -> None:
        """One D update then one G update on ``batch`` (section 3.3)."""
        x, y = self._to_device(batch["input"]), self._to_device(batch["target"])
        net = self.net
        if self.config.freeze_encoder_steps:
            self._freeze_encoder(self.step < self.config.freeze_encoder_steps)
        with self.autocast():
            fake = net(x)
        terms: dict[str, torch.Tensor] = {}
        if net.discriminator is not None:
            with self.autocast():
                d = net.discriminator_loss(x, y, fake)
            self._update("d", d["loss"])
            terms.update(d_loss=d["loss"], d_real=d["real"], d_fake=d["fake"])
            self.model.discriminator.requires_grad_(False)  # G's step needs no gradients of D
        no_sync = net.discriminator.no_sync() if isinstance(net.discriminator, DistributedDataParallel) else None
        with self.autocast(), no_sync or contextlib.nullcontext():
            g = net.generator_loss(x, y, fake)
        self._update("g", g["loss"])
        if net.discriminator is not None:
            self.model.discriminator.requires_grad_(True)
        self.scaler.update()
        terms.update({f"g_{k}" if k != "loss" else "g_loss": v for k, v in g.items()})
        self._accumulate(terms, len(x))

    def _freeze_encoder(self, frozen: bool) -> None:
        """Freeze (or release) ``generator.encoder``: no gradients, and fixed BatchNorm statistics."""
        encoder = getattr(self.model.generator, "encoder", None)
        if not isinstance(encoder, nn.Module):
            raise ValueError(
                f"freeze_encoder_steps needs a generator with an `encoder` submodule; "
                f"{type(self.model.generator).__name__} has none"
            )
        encoder.requires_grad_(not frozen)
        encoder.train(not frozen)

    def _update(self, name: str, loss: torch.Tensor) -> None:
        optimizer = self.optimizers[name]
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss.float()).backward()
        self.scaler.step(optimizer)

    def _accumulate(self, terms: dict[str, torch.Tensor], images: int) -> None:
        for k, v in terms.items():
            v = v.detach().float()
            self._sums[k] = self._sums[k] + v if k in self._sums else v
        self._count += 1
        self._images += images

    def _flush(self) -> dict[str, float]:
        """Mean of each loss term since the last flush; raises on a NaN or infinity."""
        if not self._count:
            return {}
        means = {k: (v / self._count).item() for k, v in self._sums.items()}
        self._sums, self._count = {}, 0
        self._raise_if_not_finite(means)
        return means

    def _raise_if_not_finite(self, values: dict[str, float]) -> None:
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:
            raise NonFiniteLossError(
                f"non-finite loss before step {self.step} ({', '.join(f'{k}={v}' for k, v in bad.items())}); "
                f"training stopped and {self._kept()}. Try a lower learning rate or full precision (fp32), or check the data"
            )

    def _kept(self) -> str:
        """Which checkpoint a failure leaves, in words."""
        if not self.checkpoint_path.exists():
            return "no checkpoint was written"
        try:
            step = load_checkpoint(self.checkpoint_path).meta["step"]
        except (ValueError, OSError, KeyError):
            return f"the checkpoint {self.checkpoint_path} was left as it was"
        return f"the last good checkpoint is {self.checkpoint_path} (step {step})"

    # ------------------------------------------------------------------------------- the loop
    def fit(self, resume: bool = False, overwrite: bool = False) -> RunSummary:
        """Train until every epoch (or ``max_steps``) is done.

        Args:
            resume: continue the run in ``config.out`` from its last checkpoint (from the start,
                if it stopped before its first one).
            overwrite: replace the run ``config.out`` holds. Without either, a folder that holds
                a run is refused (see [RunFolder][imgtrans.train.run.RunFolder]), and so is a
                folder another process trains into.

        Returns where the checkpoint, sample grids and exported model are. Ctrl-C (or SIGTERM)
        finishes the current step, saves a checkpoint and returns with ``interrupted=True``.
        """
        with RunFolder(self.out, active=self.dist.is_main) as run:
            run.prepare(resume=resume, overwrite=overwrite)
            return self._fit(resume)

    def _fit(self, resume: bool) -> RunSummary:
        main = self.dist.is_main
        if hasattr(self.train_data, "verify"):  # a damaged file is found now, not hours in
            self.train_data.verify()
        if resume and self.checkpoint_path.is_file():
            self.load(self.checkpoint_path)
        if resume and main:
            trim_log(self.out / "log.jsonl", self.step)
        if resume and self.validator is not None:
            self.validator.restore()
        per_epoch, total = self.steps_per_epoch(), self.total_steps()
        log = RunLoggers(self.out, self.config.log_to, resume_step=self.step if resume else None) if main else None
        samples = [self._sample(log)] if main and self.step == 0 else []
        bar = tqdm(total=total, initial=self.step, disable=not main, unit="step", dynamic_ncols=True)
        interrupted = False
        clock = started = time.perf_counter()
        try:
            with stop_requests() as stop:
                while self.step < total and not interrupted:
                    epoch, start = divmod(self.step, per_epoch)
                    for batch in self.batches(epoch, start):
                        self.train_step(batch)
                        self.step += 1
                        bar.update()
                        if self._due(self.config.log_every) or self.step == total:
                            clock = self._log(log, bar, clock)
                        if self.step % per_epoch == 0:  # before any checkpoint of this step
                            for scheduler in self.schedulers.values():
                                scheduler.step()
                        if main and self.config.sample_every and self._due(self.config.sample_every):
                            samples.append(self._sample(log))
                        if self.validator is not None and self.validator.due(self.step):
                            clock += self._validate(log, bar)  # validation time is not training time
                        if self.config.checkpoint_every and self._due(self.config.checkpoint_every):
                            self.save()
                        interrupted = self.dist.any(stop.is_set(), self.device)
                        if interrupted or self.step >= total:
                            break
            self._flush()
            validator = self.validator
            if validator is not None and not interrupted and (validator.last or {}).get("step") != self.step:
                self._validate(log, bar)  # the last model's scores, for the summary
            self.save()
            if main and (not samples or samples[-1].stem != f"step-{self.step:06d}"):
                samples.append(self._sample(log))
            model_dir = self.export() if main and not interrupted else None
        finally:
            bar.close()
            if log is not None:
                log.close()
        if interrupted and main:
            print(f"interrupted: saved {self.checkpoint_path} at step {self.step}; resume with --resume")
        summary = RunSummary(self.out, self.step, self.checkpoint_path, samples, model_dir, interrupted)
        if self.validator is not None:
            v = self.validator
            summary.val_metric, summary.last_scores, summary.val_seconds = v.metric, v.last, v.seconds
            if v.best is not None:
                summary.best, summary.best_step, summary.best_scores = v.directory, v.best.step, v.best.scores
        summary.train_seconds = time.perf_counter() - started - summary.val_seconds
        return summary

    def _sample(self, log: RunLoggers | None) -> Path:
        path = self.write_samples()
        if log is not None:
            log.image(self.step, path)
        return path

    def _validate(self, log: RunLoggers | None, bar) -> float:
        """Validate now (rank 0), log the scores, keep the best model; returns the seconds it took."""
        scores = self.validator.validate(self.model, self.step)
        record = {"step": self.step, "epoch": self.step / self.steps_per_epoch(), **scores}
        if log is not None:
            log.record(record)
        metric = self.validator.metric
        self._val_postfix = {f"val_{metric}": f"{record[f'val_{metric}']:.4g}", "best": str(record.get("best_step"))}
        bar.set_postfix(self._val_postfix, refresh=False)
        return record["val_seconds"]

    def _due(self, every: int) -> bool:
        return every > 0 and self.step % every == 0

    def _log(self, log, bar, clock: float) -> float:
        means = self._flush()
        now = time.perf_counter()
        record = {
            "step": self.step,
            "epoch": self.step / self.steps_per_epoch(),
            "lr": self.optimizers["g"].param_groups[0]["lr"],
            **{k: round(v, 6) for k, v in means.items()},
            "img_per_s": round(self._images * self.dist.world_size / max(now - clock, 1e-9), 3),
        }
        self._images = 0
        if log is not None:
            log.record(record)
            shown = {k: f"{record[k]:.3g}" for k in ("d_loss", "g_gan", "g_l1", "img_per_s") if k in record}
            bar.set_postfix({**shown, **self._val_postfix}, refresh=False)
        return now

    # ------------------------------------------------------------------------- state on disk
    def save(self) -> Path:
        """Write the checkpoint (rank 0), if the losses since the last log and every tensor are finite.

        A checkpoint is never replaced by one with NaN or infinite weights or optimiser state, and a
        failed write (a full or read-only disk) leaves the previous one intact.
        """
        self._raise_if_not_finite({k: v.item() for k, v in self._sums.items()})
        if bad := self._non_finite_state():
            raise NonFiniteLossError(
                f"non-finite values at step {self.step} in {len(bad)} tensor(s) of the model or optimiser "
                f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): training diverged and {self._kept()}. "
                "Try a lower learning rate"
            )
        if self.dist.is_main:
            meta = {
                "step": self.step,
                "model": self.model.config.to_dict(),
                "train_config": self.config.to_dict(),
                "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
                "scaler": self.scaler.state_dict(),
                "world_size": self.dist.world_size,
            }
            with self._writing("the checkpoint", self.checkpoint_path):
                save_checkpoint(self.checkpoint_path, self.model, self.optimizers, meta)
        return self.checkpoint_path

    def _non_finite_state(self) -> list[str]:
        """Names of the model's and optimisers' floating-point tensors holding NaN or infinity."""
        tensors = {f"model.{k}": v for k, v in self.model.state_dict().items()}
        for name, optimizer in self.optimizers.items():
            for index, slots in optimizer.state.items():
                tensors.update({f"optimizer {name}.{k}": v for k, v in slots.items() if isinstance(v, torch.Tensor)})
        return [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]

    @contextlib.contextmanager
    def _writing(self, what: str, path: Path) -> Iterator[None]:
        """Turn a failed write into one line that says what was kept."""
        try:
            yield
        except OSError as error:
            reason = error.strerror or str(error)
            raise OSError(
                error.errno,
                f"cannot write {what} {path}: {reason}. Nothing was lost: {self._kept()}; free some space "
                "(or make the folder writable), then resume the run",
            ) from None

    def load(self, path: Path) -> None:
        """Restore weights, optimisers, schedulers, scaler, step and RNG from a checkpoint."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"no checkpoint to resume from at {path}; train without --resume first")
        checkpoint = load_checkpoint(path)
        saved, current = model_config(checkpoint.meta, str(path)), self.model.config
        if (saved.name, saved.arguments) != (current.name, current.arguments):
            raise ValueError(
                f"{path} holds a different model ({saved.name} {saved.arguments}) than this run "
                f"({current.name} {current.arguments}); use another --out"
            )
        self.model.load_state_dict(checkpoint.section("model"), strict=True)
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(optimizer_from_tensors(checkpoint, f"optim.{name}", checkpoint.meta["optimizers"][name]))
        for name, scheduler in self.schedulers.items():
            scheduler.load_state_dict(checkpoint.meta["schedulers"][name])
            # The settings of this run (lr, betas, epochs) apply from the resumed step on, not the checkpoint's.
            scheduler.base_lrs = [self.config.lr] * len(scheduler.base_lrs)
            for group, factor in zip(scheduler.optimizer.param_groups, scheduler.lr_lambdas):
                group.update(initial_lr=self.config.lr, lr=self.config.lr * factor(scheduler.last_epoch))
                group["betas"] = self.config.betas
        self.scaler.load_state_dict(checkpoint.meta["scaler"])
        self.step = checkpoint.meta["step"]
        restore_rng(checkpoint)

    def write_samples(self) -> Path:
        """Save input | output | target for the first ``num_samples`` sample images."""
        n = min(self.config.num_samples, len(self.sample_data))
        items = [self.sample_data[i] for i in range(n)]
        x = torch.stack([it["input"] for it in items]).to(self.device)
        y = torch.stack([it["target"] for it in items])
        with self.autocast():
            out = self.model.translate(x).float()
        return save_image(image_grid([x, out, y]), self.out / "samples" / f"step-{self.step:06d}.png")

    def export(self) -> Path:
        """Save the trained model to ``out/model`` with [save_pretrained][imgtrans.store.factory.save_pretrained]."""
        with self._writing("the exported model", self.out / "model"):
            return save_pretrained(self.model, self.out / "model", overwrite=True)  # the run's own export


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


def _quiet_worker(worker_id: int) -> None:
    """Loading processes leave Ctrl-C to the training process, which stops cleanly and says so once."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def stop_requests() -> Iterator[threading.Event]:
    """Turn the first Ctrl-C (or SIGTERM) into a request to stop after the current step.

    A second Ctrl-C interrupts at once. Outside the main thread, signals are left alone.
    """
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return

    owner = os.getpid()

    def handler(signum: int, frame) -> None:
        if os.getpid() != owner:  # a loading process forked before it could ignore Ctrl-C: the trainer speaks
            return
        if event.is_set():
            raise KeyboardInterrupt
        event.set()
        print("\nstopping after this step and saving a checkpoint (Ctrl-C again to abort)", flush=True)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield event
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
