"""Everything a training run is configured with, with the paper's defaults (section 6.2)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

Amp = Literal["fp32", "bf16", "fp16"]


@dataclass
class TrainConfig:
    """A training run. Defaults are the paper's recipe for facades.

    Args:
        model: a registered pix2pix configuration (`imgtrans models 'pix2pix-*'`).
        model_args: overrides of the configuration's arguments (e.g. ``{"generator": "unet128"}``).
        data: folder of paired images (AB files, or ``A/`` and ``B/``); not needed when a dataset
            is passed to the trainer directly.
        direction: ``"AtoB"`` or ``"BtoA"`` (facades labels -> photo is ``BtoA``).
        out: run folder for checkpoints, logs and samples.
        epochs: epochs at the initial learning rate.
        epochs_decay: further epochs over which the rate decays linearly to zero (the reference
            code's schedule; the paper trains facades for 200 epochs in all).
        batch_size: images per step and per process (1 in the paper for facades).
        lr: Adam's learning rate (2e-4).
        betas: Adam's betas ((0.5, 0.999)).
        load_size: side images are resized to before the random crop (286).
        crop_size: side of the random crop (256).
        flip: random horizontal mirroring.
        amp: ``"fp32"`` (no mixed precision); ``"bf16"`` autocast (CPU and CUDA); ``"fp16"`` autocast with a
            gradient scaler (CUDA only).
        device: ``"auto"`` (CUDA when present, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        channels_last: run convolutions in the channels-last memory format.
        compile: compile the generator and discriminator with ``torch.compile``.
        seed: seed of weights, data order, augmentation and dropout.
        workers: data-loading processes (0 loads in the training process).
        log_every: steps between log lines (progress bar and ``log.jsonl``).
        sample_every: steps between sample grids (0: only before and after training).
        checkpoint_every: steps between checkpoints (0: only at the end); one is also written
            at the end, on Ctrl-C, and at the end of every epoch.
        max_steps: stop after this many steps in all (``None``: train every epoch).
        freeze_encoder_steps: keep ``generator.encoder`` frozen for the first N steps (for
            generators with a pretrained encoder).
        num_samples: images in each sample grid.
        val_data: folder of held-out paired images to validate on (see
            [imgtrans.train.validation][imgtrans.train.validation]); ``None``: no validation.
        val_every: steps between validations (0: only at the end); the last step is always validated.
        val_metric: ``"l1"``, ``"psnr"``, ``"ssim"`` or ``"fid"``: the score that picks the best model,
            kept in ``out/best``.
        inception_weights: the Inception weights file when ``val_metric="fid"`` (default: the cache).
        log_to: where to log besides ``log.jsonl``: ``["tensorboard"]`` or ``[]`` (see
            [imgtrans.train.loggers][imgtrans.train.loggers]).
    """

    model: str = "pix2pix-facades"
    model_args: dict[str, Any] = field(default_factory=dict)
    data: str | None = None
    direction: Literal["AtoB", "BtoA"] = "AtoB"
    out: str = "runs/pix2pix"
    epochs: int = 100
    epochs_decay: int = 100
    batch_size: int = 1
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    load_size: int | None = 286
    crop_size: int | None = 256
    flip: bool = True
    amp: Amp = "fp32"
    device: str = "auto"
    channels_last: bool = False
    compile: bool = False
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
            raise ValueError(f"amp must be 'fp32', 'bf16' or 'fp16'; got {self.amp!r}")
        if self.direction not in ("AtoB", "BtoA"):
            raise ValueError(f"direction must be 'AtoB' or 'BtoA'; got {self.direction!r}")
        for name in ("epochs", "epochs_decay", "workers", "log_every", "sample_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0; got {getattr(self, name)}")
        if self.epochs + self.epochs_decay < 1:
            raise ValueError("epochs + epochs_decay must be at least 1")
        if self.val_metric not in ("l1", "psnr", "ssim", "fid"):
            raise ValueError(f"val_metric must be 'l1', 'psnr', 'ssim' or 'fid'; got {self.val_metric!r}")
        if self.val_every < 0:
            raise ValueError(f"val_every must be >= 0; got {self.val_every}")
        self.log_to = list(self.log_to)
        if unknown := [d for d in self.log_to if d != "tensorboard"]:
            raise ValueError(f"log_to takes 'tensorboard' only; got {unknown}")
        if self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"batch_size must be >= 1 and lr > 0; got {self.batch_size} and {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable copy."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Read [to_dict][imgtrans.train.config.TrainConfig.to_dict]'s output; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}")
        return cls(**data)
