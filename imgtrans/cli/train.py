"""``imgtrans train``: train a registered model configuration (pix2pix, pix2pixHD) on a folder of paired images.

Every flag is a field of [TrainConfig][imgtrans.train.settings.TrainConfig] with the same name and
meaning, generated from it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from imgtrans.store.checkpoint import load_good_checkpoint, previous_path
from imgtrans.cli.common import add_settings_flags, given_settings, warnings_as_lines
from imgtrans.data.downloads import resolve_data
from imgtrans.registry import did_you_mean, entry, list_models
from imgtrans.train import TrainConfig, Trainer
from imgtrans.train.output import dropping_output
from imgtrans.train.validation import format_validation_summary

CHECKPOINT = Path("checkpoints") / "last.safetensors"


def trainable_models() -> list[str]:
    """The registered names that build a model with a training objective (pix2pix, pix2pixHD, CycleGAN...), not a bare part."""
    import typing

    def trainable(name: str) -> bool:
        target = entry(name).target
        if not isinstance(target, type):
            try:
                target = typing.get_type_hints(target).get("return")
            except Exception:  # annotations that cannot be evaluated: not one of imgtrans's models
                return False
        return isinstance(target, type) and all(
            hasattr(target, m) for m in ("networks", "optimizer_parameters", "training_step")
        )

    return [name for name in list_models() if trainable(name)]


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "train",
        help="train a pix2pix, pix2pixHD or CycleGAN configuration on paired images, label maps or unpaired folders",
        description="Train a registered configuration (`imgtrans models 'pix2pix*'` lists pix2pix's and pix2pixHD's). "
        "Defaults follow the paper: batch 1, Adam 2e-4 (0.5, 0.999), jitter 286 -> 256, mirroring.",
    )
    p.add_argument("model", nargs="?", metavar="CONFIG",
                   help="configuration, e.g. pix2pix-facades, pix2pixhd or cyclegan (optional with --resume)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace the run --out holds: removes the files it wrote "
                   "(checkpoints, log, samples, model); your own files in the folder stay")
    add_settings_flags(p, TrainConfig, skip=("model",))
    p.set_defaults(run=run)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's settings: those of the checkpoint when resuming, updated by the flags given."""
    given = given_settings(args, TrainConfig)
    out = Path(args.out) if args.out else default_out(args.model, args.resume)
    base: dict = {}
    checkpoint = out / CHECKPOINT
    if args.resume and (checkpoint.is_file() or previous_path(checkpoint).is_file()):
        base = TrainConfig.from_checkpoint(load_good_checkpoint(checkpoint, warn=False).meta["train_config"]).to_dict()
    elif args.resume and args.model is None:
        raise FileNotFoundError(
            f"nothing to resume: no checkpoint at {checkpoint}. If the run stopped before its first checkpoint, "
            "name its configuration and data to start it again (imgtrans train CONFIG --data DIR --resume)"
        )
    elif args.model is None:
        raise ValueError("name a pix2pix configuration to train, e.g. `imgtrans train pix2pix-facades --data DIR`")
    if args.model is not None and args.model not in (names := trainable_models()):
        raise ValueError(
            f"{args.model!r} is not a model configuration imgtrans trains.{did_you_mean(args.model, names)} "
            "`imgtrans models 'pix2pix*'` and `imgtrans models 'cyclegan*'` list them"
        )
    base.update(given, out=str(out), **({"model": args.model} if args.model else {}))
    if base.get("data") is not None:
        base["data"] = str(resolve_data(base["data"]))  # a downloaded dataset's name means its folder
    given_validation = [name for name in ("val_every", "val_metric") if name in given]
    if base.get("val_data") is None and given_validation:
        raise ValueError(f"--{given_validation[0].replace('_', '-')} needs --val-data: a folder of held-out paired images")
    if base.get("inception_weights") is not None and base.get("val_metric") != "fid":
        raise ValueError("--inception-weights is for --val-metric fid; add --val-metric fid, or leave it out")
    if base.get("data") is None:
        raise ValueError("--data is required: a folder of paired images (AB files, or A/ and B/ subfolders)")
    return TrainConfig.from_dict(base)


def default_out(model: str | None, resume: bool) -> Path:
    """The run folder without ``--out``: ``runs/CONFIG``, TrainConfig's default.

    ``--resume`` without a configuration continues the one run under ``runs/`` with a checkpoint.
    """
    if model is not None or not resume:
        return Path(TrainConfig(model=model or TrainConfig.model).out)
    runs = sorted(p.parent.parent for p in Path("runs").glob(f"*/{CHECKPOINT}"))
    if len(runs) > 1:
        raise ValueError(
            f"runs/ holds {len(runs)} runs ({', '.join(p.name for p in runs)}); say which to resume: "
            "imgtrans train CONFIG --resume, or --resume --out FOLDER"
        )
    return runs[0] if runs else Path(TrainConfig().out)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    with dropping_output(), warnings_as_lines("imgtrans train"):  # a closed pipe or terminal never ends the run
        return _train(args, config)


def _train(args: argparse.Namespace, config: TrainConfig) -> int:
    trainer = Trainer(config)
    if trainer.dist.is_main:
        print(
            f"training {config.model} on {config.data} ({trainer.direction}, {len(trainer.train_data)} images, "
            f"{trainer.total_steps()} steps, {config.amp} on {trainer.device}) -> {config.out}"
        )
    summary = trainer.fit(resume=args.resume, overwrite=args.overwrite)
    if trainer.dist.is_main:
        print(f"checkpoint: {summary.checkpoint}")
        print(f"samples:    {summary.samples[-1] if summary.samples else '-'}")
        print(f"log:        {summary.out / 'log.jsonl'}")
        if summary.model is not None:
            print(f"model:      {summary.model}  (imgtrans translate {summary.model} IMAGES --out DIR)")
        if summary.val_metric is not None:
            print(format_validation_summary(summary))
    trainer.dist.close()
    return summary.exit_status or (130 if summary.interrupted else 0)
