"""Exporting a trained model: its registry configuration and its weights, nothing else."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from imgtrans.train.checkpoint import atomic_save


def export_model(model: nn.Module, directory: Path) -> Path:
    """Write ``config.json`` (registry name and arguments) and ``model.safetensors`` to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    atomic_save(dict(model.state_dict()), directory / "model.safetensors", {"format": "pt"})
    (directory / "config.json").write_text(json.dumps(model.build_config.to_dict(), indent=2) + "\n")
    return directory
