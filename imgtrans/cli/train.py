"""``imgtrans train``: train a registered pix2pix configuration on a folder of paired images."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from imgtrans.registry import list_models
from imgtrans.train import TrainConfig, Trainer
from imgtrans.train.checkpoint import load_checkpoint
from imgtrans.train.validation import format_validation_summary

# command-line flag -> TrainConfig field, for the flags that map one to one
FIELDS = {
    "data": "data",
    "direction": "direction",
    "out": "out",
    "batch_size": "batch_size",
    "lr": "lr",
    "load_size": "load_size",
    "crop_size": "crop_size",
    "amp": "amp",
    "device": "device",
    "seed": "seed",
    "workers": "workers",
    "log_every": "log_every",
    "sample_every": "sample_every",
    "checkpoint_every": "checkpoint_every",
    "max_steps": "max_steps",
    "freeze_encoder_steps": "freeze_encoder_steps",
    # validation and logging (imgtrans.train.validation, imgtrans.train.loggers)
    "val_data": "val_data",
    "val_every": "val_every",
    "val_metric": "val_metric",
    "inception_weights": "inception_weights",
}


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "train",
        help="train a pix2pix configuration on paired images",
        description="Train a registered pix2pix configuration (see `imgtrans models 'pix2pix-*'`). "
        "Defaults follow the paper: batch 1, Adam 2e-4 (0.5, 0.999), jitter 286 -> 256, mirroring.",
    )
    p.add_argument("config", nargs="?", help="pix2pix configuration, e.g. pix2pix-facades (optional with --resume)")
    p.add_argument("--data", help="folder of AB images, or with A/ and B/ subfolders")
    p.add_argument("--direction", choices=["AtoB", "BtoA"], help="AtoB (default) or BtoA (facades labels -> photo)")
    p.add_argument("--out", help="run folder (default runs/CONFIG)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.safetensors")
    p.add_argument("--epochs", type=int, help="epochs in all (default 200)")
    p.add_argument("--epochs-decay", type=int, help="last epochs over which the rate decays to 0 (default half)")
    p.add_argument("--batch-size", type=int, help="images per step and process (default 1)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default 2e-4)")
    p.add_argument("--load-size", type=int, help="resize side before the random crop (default 286)")
    p.add_argument("--crop-size", type=int, help="random crop side (default 256)")
    p.add_argument("--no-flip", action="store_true", help="no random mirroring")
    p.add_argument("--amp", choices=["fp32", "bf16", "fp16"], help="mixed precision (fp16 needs CUDA)")
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--channels-last", action="store_true", help="channels-last memory format")
    p.add_argument("--compile", action="store_true", help="torch.compile the networks")
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int, help="data loading processes (default 2)")
    p.add_argument("--log-every", type=int, help="steps between log lines (default 10)")
    p.add_argument("--sample-every", type=int, help="steps between sample grids (default 500)")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints (default 1000)")
    p.add_argument("--max-steps", type=int, help="stop after this many steps in all")
    p.add_argument("--freeze-encoder-steps", type=int, help="keep a pretrained encoder frozen this long")
    p.add_argument("--model-args", type=json.loads, help='JSON overrides, e.g. \'{"generator": "unet128"}\'')
    # validation and logging
    p.add_argument("--val-data", help="held-out paired images: validate on them and keep the best model in OUT/best")
    p.add_argument("--val-every", type=int, help="steps between validations (default 500; 0: at the end only)")
    p.add_argument("--val-metric", choices=["l1", "psnr", "ssim", "fid"], help="picks the best model (default l1)")
    p.add_argument("--inception-weights", metavar="FILE", help="Inception weights for --val-metric fid")
    p.add_argument("--log-to", choices=["tensorboard"], help='also log to TensorBoard, in OUT/tensorboard '
                   '(pip install "imgtrans[tensorboard]")')  # fmt: skip
    p.set_defaults(run=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's settings: those of the checkpoint when resuming, updated by the flags given."""
    base: dict = {}
    out = Path(args.out or f"runs/{args.config or 'pix2pix'}")
    if args.resume:
        checkpoint = out / "checkpoints" / "last.safetensors"
        if not checkpoint.is_file():
            raise FileNotFoundError(f"nothing to resume: no checkpoint at {checkpoint}")
        base = load_checkpoint(checkpoint).meta["train_config"]
    elif args.config is None:
        raise ValueError("name a pix2pix configuration to train, e.g. `imgtrans train pix2pix-facades --data DIR`")
    if args.config is not None:
        if args.config not in list_models("pix2pix-*"):
            known = ", ".join(list_models("pix2pix-*"))
            raise ValueError(f"{args.config!r} is not a pix2pix configuration; choose one of: {known}")
        base["model"] = args.config
    base["out"] = str(out)
    for flag, name in FIELDS.items():
        if getattr(args, flag) is not None:
            base[name] = getattr(args, flag)
    if args.model_args is not None:
        base["model_args"] = args.model_args
    if args.epochs is not None or args.epochs_decay is not None:
        total = args.epochs if args.epochs is not None else base.get("epochs", 100) + base.get("epochs_decay", 100)
        decay = args.epochs_decay if args.epochs_decay is not None else total // 2
        if not 0 <= decay <= total:
            raise ValueError(f"--epochs-decay ({decay}) must be between 0 and --epochs ({total})")
        base["epochs"], base["epochs_decay"] = total - decay, decay
    if args.no_flip:
        base["flip"] = False
    if args.channels_last:
        base["channels_last"] = True
    if args.compile:
        base["compile"] = True
    if args.log_to is not None:
        base["log_to"] = [args.log_to]
    given = [flag for flag in ("val_every", "val_metric") if getattr(args, flag) is not None]
    if base.get("val_data") is None and given:
        raise ValueError(f"--{given[0].replace('_', '-')} needs --val-data: a folder of held-out paired images")
    if args.inception_weights is not None and base.get("val_metric") != "fid":
        raise ValueError("--inception-weights is for --val-metric fid; add --val-metric fid, or leave it out")
    if not args.resume and base.get("data") is None:
        raise ValueError("--data is required: a folder of paired images (AB files, or A/ and B/ subfolders)")
    return TrainConfig.from_dict(base)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    trainer = Trainer(config)
    if trainer.dist.is_main:
        print(
            f"training {config.model} on {config.data} ({config.direction}, {len(trainer.train_data)} images, "
            f"{trainer.total_steps()} steps, {config.amp} on {trainer.device}) -> {config.out}"
        )
    summary = trainer.fit(resume=args.resume)
    if trainer.dist.is_main:
        print(f"checkpoint: {summary.checkpoint}")
        print(f"samples:    {summary.samples[-1] if summary.samples else '-'}")
        print(f"log:        {summary.out / 'log.jsonl'}")
        if summary.model is not None:
            print(f"model:      {summary.model}  (imgtrans translate {summary.model} IMAGES --out DIR)")
        if summary.val_metric is not None:
            print(format_validation_summary(summary))
    trainer.dist.close()
    return 130 if summary.interrupted else 0

