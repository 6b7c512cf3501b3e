"""The training loop: steps, optimisers, schedules, checkpoints, signals, logging and validation.

The trainer runs a model's objective (see [imgtrans.train.objective][imgtrans.train.objective]):
the model says which parameters each optimiser updates and what one step is (pix2pix: D once on
``0.5 * (L(D(x, y), real) + L(D(x, G(x)), fake))``, then G once on the non-saturating GAN loss
plus ``lambda * L1``, sections 3.3 and 6.2). The trainer gives each optimiser Adam (2e-4, betas
0.5/0.999) and the reference code's schedule (constant, then linear decay to zero over the last
``epochs_decay`` epochs); it runs the step under the precision and devices that
[imgtrans.train.setup][imgtrans.train.setup] decides (user code never calls autocast or a
gradient scaler), under ``torchrun`` too, and keeps the run folder
([imgtrans.train.run][imgtrans.train.run]): atomic safetensors checkpoints with exact
resumption, Ctrl-C, non-finite losses, a progress bar, a JSONL log and sample grids.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from pathlib import Path
from typing import Iterator

import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from imgtrans.data.paired import BadImageError
from imgtrans.devices import resolve_device
from imgtrans.store.checkpoint import load_good_checkpoint, previous_path, save_checkpoint
from imgtrans.store.config import ModelConfig
from imgtrans.store.factory import build, save_pretrained
from imgtrans.train.datasets import model_arguments, resolve_direction, run_datasets, run_validator
from imgtrans.train.distributed import Distributed
from imgtrans.train.failures import DataError, NonFiniteLossError, SampleWarning
from imgtrans.train.loading import checked, epoch_batches
from imgtrans.train.loggers import LOG_FILE, TENSORBOARD_DIR, RunLoggers, require
from imgtrans.train.manifest import Manifest
from imgtrans.train.objective import StepContext, TrainableModel
from imgtrans.train.optimizer import Adam
from imgtrans.train.run import RunFolder, RunSummary, kept, non_finite_tensors, trim_log, writing
from imgtrans.train.samples import write_samples
from imgtrans.train.settings import SettingError, TrainConfig
from imgtrans.train.setup import arrange_memory, autocast, check_precision, distributed_view, grad_scaler
from imgtrans.train.setup import networks_of, sync_batchnorm
from imgtrans.train.state import EpochClock, lr_factor, process_states, restore, resumed_clock
from imgtrans.train.history import record_history
from imgtrans.train.signals import StopRequest, stop_requests
from imgtrans.train.validation import BEST_FILE

__all__ = ["DataError", "NonFiniteLossError", "RunSummary", "Trainer"]


class Trainer:
    """Trains a registered model that defines its objective (see [imgtrans.train.objective][]).

    Args:
        config: the run's settings.
        train_data: a dataset of ``{"input", "target"}`` items; by default a
            [PairedImageDataset][imgtrans.data.paired.PairedImageDataset] on ``config.data``.
        sample_data: the images shown in sample grids (the first ``config.num_samples``);
            by default the training images without augmentation.
        model: a model built with [imgtrans.build][imgtrans.store.factory.build] (so that checkpoints
            can rebuild it); by default built from ``config.model`` and ``config.model_args``.
        val_data: held-out pairs to validate on (see [Validator][imgtrans.train.validation.Validator]);
            by default a [PairedImageDataset][imgtrans.data.paired.PairedImageDataset] on
            ``config.val_data`` without augmentation, or none.

    Attributes:
        direction: the direction the run trains in, resolved once (``config.direction``, else the
            model configuration's); the datasets read pairs in it, and checkpoints and the
            exported model record it, so that eval and translate of the run use it.

    Example:
        >>> trainer = Trainer(TrainConfig(data="facades/train", direction="BtoA"))
        >>> trainer.fit()
    """

    def __init__(
        self,
        config: TrainConfig,
        train_data: Dataset | None = None,
        sample_data: Dataset | None = None,
        model: nn.Module | None = None,
        val_data: Dataset | None = None,
    ) -> None:
        for destination in config.log_to:  # a missing library is said now, not after the first steps
            require(destination)
        device = resolve_device(config.device)
        self.dist = Distributed.from_env(device.type)
        self.device = resolve_device(config.device, self.dist.local_rank)
        check_precision(config.amp, self.device)
        torch.manual_seed(config.seed)
        self.model = model if model is not None else build(config.model, **model_arguments(config))
        if not isinstance(getattr(self.model, "config", None), ModelConfig):
            raise TypeError("the trainer needs a model made by imgtrans.build, so checkpoints can rebuild it")
        if not isinstance(self.model, TrainableModel):
            raise TypeError(
                f"{type(self.model).__name__} defines no training objective: it needs networks(), "
                "optimizer_parameters() and training_step() (see imgtrans.train.objective)"
            )
        reads_folders = train_data is None or val_data is None and config.val_data is not None
        self.direction = resolve_direction(config, self.model.config, needed=reads_folders)
        self.config = config = dataclasses.replace(config, direction=self.direction)  # the run records it
        self.model.config = self.model.config.with_direction(self.direction)
        if config.label_nc:  # what its input is, so that translate, eval and the app read label maps for it
            self.model.config = self.model.config.with_labels(config.label_nc, config.instance)
        self.model.config.to_dict()  # checkpoints must be able to record it: refuse now, not at the first save
        if config.sync_bn and self.dist.enabled:
            sync_batchnorm(self.model, self.device)
        self.model.to(self.device)
        arrange_memory(self.model, self.device, config.channels_last)
        if config.compile:
            for network in networks_of(self.model).values():
                network.compile()
        arguments = self.model.config.arguments
        channels = arguments.get("in_channels", 3), arguments.get("out_channels", 3)
        layout = getattr(self.model, "data_layout", "paired")  # pairs (pix2pix, pix2pixHD), or domains (CycleGAN)
        self.train_data, self.sample_data = run_datasets(
            config, self.direction, channels, self.dist.world_size, train_data, sample_data, layout=layout,
        )
        self.out = Path(config.out)
        self.checkpoint_path = self.out / "checkpoints" / "last.safetensors"
        self.manifest = Manifest(self.out, active=self.dist.is_main)  # what the run wrote (train.manifest)

        # The fused Adam kernel updates all parameters in one pass (same update, less memory traffic).
        adam = dict(lr=config.lr, betas=config.betas, fused=self.device.type in ("cpu", "cuda"))
        groups = self.model.optimizer_parameters()
        self.optimizers = {name: Adam(parameters, **adam) for name, parameters in groups.items()}
        factor = lr_factor(config.epochs - config.decay_epochs, config.decay_epochs)
        self.schedulers = {k: torch.optim.lr_scheduler.LambdaLR(o, factor) for k, o in self.optimizers.items()}
        scaler = grad_scaler(config.amp, self.device)
        self.context = StepContext(self.optimizers, scaler, self.device, config.amp, config.channels_last)
        # The model as the training step sees it: DDP-wrapped networks under torchrun (told of frozen parameters).
        unused = config.freeze_encoder_steps > 0 or getattr(self.model, "freezes_parameters", False)
        self.net = distributed_view(self.model, self.device, unused) if self.dist.enabled else self.model
        self.validator = (
            run_validator(config, self.direction, channels, self.train_data, val_data, self.device, layout)
            if self.dist.is_main else None
        )  # fmt: skip
        self._val_postfix: dict[str, str] = {}
        self.step = 0
        self._sums: dict[str, torch.Tensor] = {}
        self._count = self._images = 0
        self._stop = StopRequest()  # replaced by the live one while fit() runs
        self._skipped, self._sample_failed = 0, False
        self.clock: EpochClock | None = None  # set from the checkpoint on resume

    @property
    def scaler(self) -> torch.amp.GradScaler:
        """The gradient scaler (enabled for fp16 only); the one the training step uses."""
        return self.context.scaler

    @scaler.setter
    def scaler(self, scaler: torch.amp.GradScaler) -> None:
        self.context.scaler = scaler

    # ----------------------------------------------------------------------------------- set-up
    def steps_per_epoch(self) -> int:
        """Optimisation steps in one pass over the training images (per process)."""
        return math.ceil(math.ceil(len(self.train_data) / self.dist.world_size) / self.config.batch_size)

    def total_steps(self) -> int:
        """Steps of the whole run: every epoch, or ``max_steps`` if smaller."""
        return self._clock().total(self.config.epochs, self.config.max_steps)

    def _clock(self) -> EpochClock:
        """Epochs in this run's steps (see [EpochClock][imgtrans.train.state.EpochClock])."""
        if self.clock is None or self.clock.per_epoch != self.steps_per_epoch():
            self.clock = EpochClock(self.steps_per_epoch())
        return self.clock

    def batches(self, epoch: int, start: int) -> Iterator[dict]:
        """The batches of ``epoch`` from batch ``start`` on: a function of (seed, epoch) alone."""
        c = self.config
        return epoch_batches(
            self.train_data, epoch, start, batch_size=c.batch_size, seed=c.seed, dist=self.dist, workers=c.workers,
            pin_memory=self.device.type == "cuda", stopping=self._stop.is_set,
        )  # fmt: skip

    # ------------------------------------------------------------------------------------ a step
    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision as configured (a no-op for fp32)."""
        return autocast(self.config.amp, self.device)

    def train_step(self, batch: dict) -> None:
        """One step of the model's objective on ``batch``: its ``training_step`` (see [imgtrans.train.objective][])."""
        if self.config.freeze_encoder_steps:
            self._freeze_encoder(self.step < self.config.freeze_encoder_steps)
        self.context.step, self.context.epoch = self.step, self.step // self.steps_per_epoch()
        terms = self.net.training_step(batch, self.context)
        self.scaler.update()
        self._accumulate(terms, len(next(iter(batch.values()))))

    def _freeze_encoder(self, frozen: bool) -> None:
        freeze = getattr(self.model, "freeze_encoder", None)
        if freeze is None:
            name = type(self.model).__name__
            raise SettingError("freeze_encoder_steps", f"needs a model with an encoder to freeze; {name} has none")
        freeze(frozen)

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
        return kept(self.checkpoint_path)

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
            replaced = run.prepare(resume=resume, overwrite=overwrite)
            if replaced:
                print(replaced)
            self.manifest = Manifest(self.out, active=self.dist.is_main)
            return self._fit(resume)

    def _fit(self, resume: bool) -> RunSummary:
        main = self.dist.is_main
        if hasattr(self.train_data, "verify"):  # a damaged file is found now, not hours in
            if bad := self.train_data.verify():  # with skip_bad_images: said, then passed over
                warnings.warn(f"{len(bad)} of the {len(self.train_data)} training images cannot be read and will be "
                              f"skipped, e.g. {bad[0]}")
        if resume and (self.checkpoint_path.is_file() or previous_path(self.checkpoint_path).is_file()):
            self.load(self.checkpoint_path)
        if resume and main:
            trim_log(self.out / "log.jsonl", self.step)
        if resume and self.validator is not None:
            self.validator.restore()
        per_epoch, total = self.steps_per_epoch(), self.total_steps()  # the clock is the resumed one now
        log = RunLoggers(self.out, self.config.log_to, resume_step=self.step if resume else None) if main else None
        if main:
            self.manifest.add(self.out / LOG_FILE)
        samples = [self._sample(log)] if main and self.step == 0 else []
        bar = tqdm(total=total, initial=self.step, disable=not main, unit="step", dynamic_ncols=True)
        interrupted = False
        clock = started = time.perf_counter()
        try:
            with stop_requests() as stop:
                self._stop = stop
                while self.step < total and not interrupted:
                    epoch, start = divmod(self.clock.position(self.step), per_epoch)
                    for batch in self._checked(self.batches(epoch, start), log):
                        self.train_step(batch)
                        self.step += 1
                        bar.update()
                        if self._due(self.config.log_every) or self.step == total:
                            clock = self._log(log, bar, clock)
                        if self.clock.position(self.step) % per_epoch == 0:  # before any checkpoint of this step
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
                    # a loader that failed after a stop request ended the epoch early: that is the stop
                    interrupted = interrupted or (not self.dist.enabled and stop.is_set())
            self._flush()
            validator = self.validator
            if validator is not None and not interrupted and (validator.last or {}).get("step") != self.step:
                self._validate(log, bar)  # the last model's scores, for the summary
            self.save()
            if main and (not samples or samples[-1] is None or samples[-1].stem != f"step-{self.step:06d}"):
                samples.append(self._sample(log))
            model_dir = self.export() if main and not interrupted else None
        finally:
            bar.close()
            if log is not None:
                log.close()
                self.manifest.add_matching(self.out / TENSORBOARD_DIR, "events.out.tfevents.")
        if interrupted and main:
            print(f"interrupted: saved {self.checkpoint_path} at step {self.step}; resume with --resume")
        summary = RunSummary(self.out, self.step, self.checkpoint_path, [p for p in samples if p is not None],
                             model_dir, interrupted, exit_status=self._stop.exit_status if interrupted else 0)
        summary.add_validation(self.validator)
        summary.train_seconds = time.perf_counter() - started - summary.val_seconds
        return summary

    def _checked(self, batches: Iterator[dict], log: RunLoggers | None) -> Iterator[dict]:
        """``batches``; a loading failure saves the last finished step first, then is said in one line.

        With ``skip_bad_images``, each unreadable file a batch stood in for is logged (``skipped``).
        """
        for batch in checked(batches, self._data_failure):
            for problem in (p for text in batch.pop("skipped", ()) for p in text.split("\n") if p):
                self._skipped += 1
                self._record(log, {"step": self.step + 1, "skipped": problem, "skipped_images": self._skipped})
            yield batch

    def _data_failure(self, error: Exception) -> DataError:
        self.save(collective=False)  # the steps so far are kept before the run stops (by this process alone)
        return DataError(str(error), self.step, self._kept())

    def _sample(self, log: RunLoggers | None) -> Path | None:
        """A sample grid; a failed write (a full disk) is said once and training goes on without it."""
        path = self.out / "samples" / f"step-{self.step:06d}.png"
        try:
            self.write_samples()
        except BadImageError as error:  # a sample image went bad: as in a batch, the steps so far are kept
            raise self._data_failure(error) from None
        except OSError as error:
            if not self._sample_failed:
                self._sample_failed = True
                warnings.warn(SampleWarning(f"cannot write the sample grid {path}: {error.strerror or error}; training "
                                            f"goes on without sample grids until they can be written ({self._kept()})"))
            return None
        self.manifest.add(path)
        if log is not None:
            log.image(self.step, path)
        return path

    def _validate(self, log: RunLoggers | None, bar) -> float:
        """Validate now (rank 0), log the scores, keep the best model; returns the seconds it took."""
        scores = self.validator.validate(self.model, self.step)
        if self.validator.best is not None and self.validator.directory.is_dir():
            self.manifest.add_model(self.validator.directory)
            self.manifest.add(*self.validator.directory.glob(BEST_FILE))
        record = {"step": self.step, "epoch": self._clock().epochs(self.step), **scores}
        self._record(log, record)
        metric = self.validator.metric
        self._val_postfix = {f"val_{metric}": f"{record[f'val_{metric}']:.4g}", "best": str(record.get("best_step"))}
        bar.set_postfix(self._val_postfix, refresh=False)
        return record["val_seconds"]

    def _record(self, log: RunLoggers | None, record: dict) -> None:
        if log is not None:
            with self._writing("the log", self.out / LOG_FILE):  # a full disk: one line, with what was kept
                log.record(record)

    def _due(self, every: int) -> bool:
        return every > 0 and self.step % every == 0

    def _log(self, log, bar, clock: float) -> float:
        means = self._flush()
        now = time.perf_counter()
        record = {
            "step": self.step,
            "epoch": self._clock().epochs(self.step),
            "lr": next(iter(self.optimizers.values())).param_groups[0]["lr"],
            **{k: round(v, 6) for k, v in means.items()},
            "img_per_s": round(self._images * self.dist.world_size / max(now - clock, 1e-9), 3),
        }
        self._images = 0
        if log is not None:
            self._record(log, record)
            terms = [k for k in getattr(self.model, "progress_terms", ()) if k in means] or list(means)[:3]
            shown = {k: f"{record[k]:.3g}" for k in (*terms, "img_per_s") if k in record}
            bar.set_postfix({**shown, **self._val_postfix}, refresh=False)
        return now

    # ------------------------------------------------------------------------- state on disk
    def save(self, collective: bool = True) -> Path:
        """Write the checkpoint (rank 0, with every process's own state if ``collective``), if all is finite.

        A checkpoint is never replaced by one with NaN or infinite weights or optimiser state, and a
        failed write (a full or read-only disk) leaves the previous one intact.
        """
        self._raise_if_not_finite({k: v.item() for k, v in self._sums.items()})
        if bad := non_finite_tensors(self.model, self.optimizers):
            raise NonFiniteLossError(
                f"non-finite values at step {self.step} in {len(bad)} tensor(s) of the model or optimiser "
                f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}): training diverged and {self._kept()}. "
                "Try a lower learning rate"
            )
        others = process_states(self.model, self.dist, self.device) if collective else {}  # their pools, RNG
        if self.dist.is_main:
            meta = {
                "step": self.step,
                "model": self.model.config.to_dict(),
                "train_config": self.config.to_dict(),
                "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
                "scaler": self.scaler.state_dict(),
                "world_size": self.dist.world_size,
                **self._clock().to_meta(),
            }
            with self._writing("the checkpoint", self.checkpoint_path):
                save_checkpoint(self.checkpoint_path, self.model, self.optimizers, meta, others)
                previous = previous_path(self.checkpoint_path)
                self.manifest.add(self.checkpoint_path, *([previous] if previous.is_file() else []))
        return self.checkpoint_path

    def _writing(self, what: str, path: Path) -> contextlib.AbstractContextManager:
        return writing(what, path, self.checkpoint_path)

    def load(self, path: Path) -> None:
        """Restore weights, optimisers, schedulers, scaler, step and RNG from a checkpoint.

        A damaged one gives way, with a warning, to the previous good one (see [imgtrans.store.checkpoint][]).
        """
        try:
            saved = load_good_checkpoint(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"no checkpoint to resume from at {path}; train without --resume first") from None
        self.step = restore(saved, self.model, self.optimizers, self.schedulers, self.scaler, self.config, self.dist)
        self.clock, changed = resumed_clock(saved.meta, len(self.train_data), self.config, self.dist.world_size)
        if changed and self.dist.is_main:
            record_history(self.out, self.step, self.clock, changed, self.manifest)

    def write_samples(self) -> Path:
        """Save the sample grid of the first ``num_samples`` sample images (see [imgtrans.train.samples][])."""
        path = self.out / "samples" / f"step-{self.step:06d}.png"
        return write_samples(self.model, self.sample_data, self.config.num_samples, self.device, self.autocast(), path)

    def export(self) -> Path:
        """Save the trained model to ``out/model`` with [save_pretrained][imgtrans.store.factory.save_pretrained]."""
        with self._writing("the exported model", self.out / "model"):
            folder = save_pretrained(self.model, self.out / "model", step=self.step, overwrite=True,
                                     keep_others=True)  # the run's own export; the user's notes in model/ stay
            self.manifest.add_model(folder)
            return folder
