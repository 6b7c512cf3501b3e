"""One way to name a model on the command line: a zoo name, a saved folder, a run or a checkpoint."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from imgtrans.registry import BuildConfig, build, list_models, skip_initial_weights
from imgtrans.train.checkpoint import load_checkpoint
from imgtrans.zoo.pretrained import from_pretrained


def model_from_checkpoint(path: str | os.PathLike) -> nn.Module:
    """Rebuild the model a training checkpoint holds, with its weights."""
    checkpoint = load_checkpoint(path)
    config = BuildConfig.from_dict(checkpoint.meta["build_config"])
    with skip_initial_weights():
        model = build(config.name, **config.arguments)
    model.load_state_dict(checkpoint.section("model"), strict=True)
    return model


def load_model(source: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Load a model from any of the places imgtrans keeps one.

    Args:
        source: a saved model folder ([save_pretrained][imgtrans.zoo.pretrained.save_pretrained]), a training run
            folder (its exported ``model/``, else its last checkpoint), a training checkpoint
            file (``.safetensors``), or a registered name with published weights.
        device: where to put the model.
    """
    path = Path(source)
    if path.is_dir():
        for folder in (path, path / "model"):
            if (folder / "config.json").is_file():
                return from_pretrained(folder).to(device)
        checkpoint = path / "checkpoints" / "last.safetensors"
        if checkpoint.is_file():
            return model_from_checkpoint(checkpoint).to(device)
        raise FileNotFoundError(f"{path} holds no model: expected config.json, model/ or checkpoints/last.safetensors")
    if path.is_file():
        if path.suffix in (".pth", ".pt", ".ckpt"):
            raise ValueError(
                f"{path} looks like a PyTorch pickle checkpoint; imgtrans does not unpickle. If it comes from the "
                "reference implementation, convert it first: imgtrans convert FILE OUT --arch unet256"
            )
        return model_from_checkpoint(path).to(device)
    if str(source) in list_models():
        return build(str(source), pretrained=True).to(device)
    raise FileNotFoundError(
        f"{source} is neither a file, a folder, nor a registered model name (see `imgtrans models`)"
    )
