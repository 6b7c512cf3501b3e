"""Everything a training run is configured with, with the paper's defaults (section 6.2).

Each field is also a flag of ``imgtrans train`` with the same name and meaning (``batch_size`` is
``--batch-size``); the command line is generated from this class, so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from imgtrans.registry import Direction, DirectionError, check_direction

Amp = Literal["fp32", "bf16", "fp16"]
FORMAT = 2  # 1 (imgtrans 0.1): ``epochs`` counted the constant-rate epochs only


class SettingError(ValueError):
    """A setting with a value it cannot have; ``str()`` names the field, ``cli_message`` the flag."""

    def __init__(self, setting: str, problem: str) -> None:
        self.setting, self.problem = setting, problem
        super().__init__(f"{setting} {problem}")

    @property
    def cli_message(self) -> str:
        """The message as the command line says it: ``--batch-size must be ...``."""
        return f"--{self.setting.replace('_', '-')} {self.problem}"


class SettingWarning(UserWarning):
    """Advice about a setting, worded for Python (``amp='bf16'``) and, as ``cli_message``, for flags.

    ``text`` names settings as ``{name}`` placeholders, filled from ``values``:
    ``SettingWarning("use {amp} here", amp="bf16")`` reads ``use amp='bf16' here`` in Python and
    ``use --amp bf16 here`` on the command line.
    """

    def __init__(self, text: str, **values: Any) -> None:
        self.text, self.values = text, values
        super().__init__(text.format(**{k: f"{k}={v!r}" for k, v in values.items()}))

    @property
    def cli_message(self) -> str:
        """The advice in the command line's words."""
        return self.text.format(**{k: f"--{k.replace('_', '-')} {v}" for k, v in self.values.items()})


@dataclass
class TrainConfig:
    """A training run. Defaults are the paper's recipe for facades.

    Args:
        model: a registered pix2pix configuration (`imgtrans models 'pix2pix-*'`).
        model_args: JSON overrides of the configuration's arguments, e.g. ``{"generator": "unet128"}``.
        data: folder of paired images (AB files, or A/ and B/), or a downloaded dataset NAME[/SPLIT]
            (imgtrans data list); not needed when a dataset is passed to the trainer directly.
        direction: AtoB or BtoA: which half of the AB images is the input (facades labels -> photo
            is BtoA); by default the configuration's own, and required when it has none.
        out: run folder for checkpoints, logs and samples; by default runs/MODEL (runs/pix2pix-facades).
        epochs: epochs in all.
        epochs_decay: the last epochs, over which the learning rate decays linearly to zero (the
            reference code's schedule); half of the epochs by default.
        batch_size: images per step and per process (1 in the paper for facades).
        lr: Adam's learning rate.
        betas: Adam's betas.
        load_size: side images are resized to before the random crop; none keeps their size.
        crop_size: side of the random crop (and of validation images); none does not crop.
        flip: random horizontal mirroring.
        label_nc: the number of classes of integer label maps (folders label/, img/, inst/; see
            [imgtrans.data.labels][imgtrans.data.labels]), one-hot encoded as the model's input, whose
            in_channels it sets; 0 reads images (AB files, or A/ and B/).
        instance: add the instance-boundary map of inst/ as one more input channel (with label_nc).
        serial_batches: unpaired data (CycleGAN): take the images of B in order, not at random for each
            image of A (the reference's --serial_batches).
        check_pairs: refuse AB files whose halves would be more than 1.5 times taller than wide
            (a folder of single photos is not a folder of pairs).
        skip_bad_images: when an image cannot be read (deleted, truncated or damaged during the
            run), train on the next readable pair instead, and log each skip in log.jsonl
            (``skipped``); by default the run saves a checkpoint and stops, naming the file.
        amp: fp32 (no mixed precision); bf16 autocast (CPU and CUDA); fp16 autocast with a
            gradient scaler (CUDA; on the CPU, to check that code path).
        device: auto (CUDA when present, else CPU), cpu, cuda or cuda:N.
        channels_last: run every network channels-last. Without it the CPU still trains a BatchNorm
            PatchGAN so, and the U-Net too where the CPU has AMX (measured faster; see train.setup).
        compile: compile each of the model's networks (generator, discriminator) with torch.compile.
        sync_bn: under torchrun, synchronise BatchNorm statistics across processes (CUDA only). Off
            by default: the paper normalises over each process's own batch, as single-GPU training does.
        seed: seed of weights, data order, augmentation and dropout.
        workers: data-loading processes (0 loads in the training process).
        log_every: steps between log lines (progress bar and log.jsonl).
        sample_every: steps between sample grids (0: only before and after training).
        checkpoint_every: steps between checkpoints (0: only at the end); one is also written at
            the end and on Ctrl-C.
        max_steps: stop after this many steps in all (the schedule still spans every epoch).
        freeze_encoder_steps: keep the model's pretrained encoder (pix2pix: generator.encoder) frozen,
            without gradients or BatchNorm updates, for the first N steps.
        num_samples: images in each sample grid.
        val_data: folder of held-out paired images to validate on (see
            [imgtrans.train.validation][imgtrans.train.validation]); without it, no validation.
        val_every: steps between validations (0: only at the end); the last step is always validated.
        val_metric: l1, psnr, ssim or fid: the score that picks the best model, kept in ``OUT/best``.
        inception_weights: the Inception weights file when validating by fid (default: the cache).
        log_to: where to log besides ``log.jsonl``: tensorboard, or nowhere else (the default; see
            [imgtrans.train.loggers][imgtrans.train.loggers]).
    """

    model: str = "pix2pix-facades"
    model_args: dict[str, Any] = field(default_factory=dict)
    data: str | None = None
    direction: Direction | None = None
    out: str | None = None
    epochs: int = 200
    epochs_decay: int | None = None
    batch_size: int = 1
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    load_size: int | None = 286
    crop_size: int | None = 256
    flip: bool = True
    label_nc: int = 0
    instance: bool = False
    serial_batches: bool = False
    check_pairs: bool = True
    skip_bad_images: bool = False
    amp: Amp = "fp32"
    device: str = "auto"
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False
    seed: int = 0
    workers: int = 2
    log_every: int = 10
    sample_every: int = 500
    checkpoint_every: int = 1000
    max_steps: int | None = None
    freeze_encoder_steps: int = 0
    num_samples: int = 4
    # validation and logging (imgtrans.train.validation, imgtrans.train.loggers)
    val_data: str | None = None
    val_every: int = 500
    val_metric: Literal["l1", "psnr", "ssim", "fid"] = "l1"
    inception_weights: str | None = None
    log_to: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)  # JSON gives lists
        if self.amp not in ("fp32", "bf16", "fp16"):
            raise SettingError("amp", f"must be fp32, bf16 or fp16; got {self.amp!r}")
        try:
            check_direction(self.direction)
        except DirectionError as error:
            raise SettingError("direction", error.problem) from None
        if self.out is None:  # one default, the same for training, resuming and the help
            self.out = f"runs/{self.model}"
        if not isinstance(self.model_args, dict):
            raise SettingError("model_args", f"must be a JSON object of arguments; got {self.model_args!r}")
        for name in ("epochs", "batch_size", "num_samples"):
            if getattr(self, name) < 1:
                raise SettingError(name, f"must be at least 1; got {getattr(self, name)}")
        if self.instance and not self.label_nc:
            raise SettingError("instance", "needs label maps: give their number of classes with --label-nc")
        for name in ("label_nc", "workers", "log_every", "sample_every", "checkpoint_every", "freeze_encoder_steps",
                     "seed"):
            if getattr(self, name) < 0:
                raise SettingError(name, f"must be at least 0; got {getattr(self, name)}")
        for name in ("load_size", "crop_size", "max_steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise SettingError(name, f"must be at least 1; got {getattr(self, name)}")
        if self.epochs_decay is not None and not 0 <= self.epochs_decay <= self.epochs:
            raise SettingError("epochs_decay", f"must be between 0 and epochs ({self.epochs}); got {self.epochs_decay}")
        if not self.lr > 0:
            raise SettingError("lr", f"must be positive; got {self.lr}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise SettingError("betas", f"must be two numbers in [0, 1); got {self.betas}")
        if self.load_size is not None and self.crop_size is not None and self.crop_size > self.load_size:
            raise SettingError("crop_size", f"({self.crop_size}) cannot exceed load_size ({self.load_size})")
        if self.val_metric not in ("l1", "psnr", "ssim", "fid"):
            raise SettingError("val_metric", f"must be l1, psnr, ssim or fid; got {self.val_metric!r}")
        if self.val_every < 0:
            raise SettingError("val_every", f"must be at least 0; got {self.val_every}")
        self.log_to = list(self.log_to)
        if unknown := [d for d in self.log_to if d != "tensorboard"]:
            raise SettingError("log_to", f"takes tensorboard only; got {unknown}")

    @property
    def decay_epochs(self) -> int:
        """The epochs over which the rate decays (``epochs_decay``, or half of ``epochs``)."""
        return self.epochs // 2 if self.epochs_decay is None else self.epochs_decay

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return {**dataclasses.asdict(self), "format": FORMAT}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Read [to_dict][imgtrans.train.settings.TrainConfig.to_dict]'s output; unknown keys are an error.

        A dictionary without ``format`` is read as this version's; a checkpoint's record, which
        always has one unless imgtrans 0.1 wrote it, goes through [from_checkpoint][imgtrans.train.settings.TrainConfig.from_checkpoint].
        """
        data = dict(data)
        if data.pop("format", FORMAT) != FORMAT:
            raise ValueError(f"training settings of format {data.get('format')}; this imgtrans reads format {FORMAT}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def from_checkpoint(cls, data: dict[str, Any]) -> "TrainConfig":
        """The settings a checkpoint recorded, including those of imgtrans 0.1 (no ``format``).

        0.1 counted in ``epochs`` the constant-rate epochs alone; they become the total here.
        """
        data = dict(data)
        if "format" not in data:
            data["epochs"] = data.get("epochs", 100) + data.get("epochs_decay", 100)
            data["format"] = FORMAT
        return cls.from_dict(data)
