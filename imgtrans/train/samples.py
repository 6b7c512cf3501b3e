"""Sample grids: rows of images side by side (input | output | target), saved as PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image


def as_rgb(images: torch.Tensor) -> torch.Tensor:
    """A batch in [-1, 1] with 1, 3 or 4 channels as 3-channel images (gray repeated, alpha dropped)."""
    channels = images.shape[1]
    if channels == 1:
        return images.expand(-1, 3, -1, -1)
    if channels in (3, 4):
        return images[:, :3]
    raise ValueError(f"cannot show images with {channels} channels")


def image_grid(columns: Sequence[torch.Tensor], border: int = 2) -> torch.Tensor:
    """Stack ``columns`` (each ``N x C x H x W`` in [-1, 1]) into one ``3 x H' x W'`` grid.

    Row ``i`` shows image ``i`` of every column, left to right, with a white ``border``.
    """
    tiles = torch.stack([as_rgb(c.detach().float().cpu()) for c in columns], dim=1)  # n k c h w
    tiles = F.pad(tiles, (border, border, border, border), value=1.0)
    return rearrange(tiles, "n k c h w -> c (n h) (k w)")


def save_image(image: torch.Tensor, path: str | Path) -> Path:
    """Save a ``C x H x W`` image in [-1, 1] as PNG (or any format PIL infers from ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = ((image.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    array = rearrange(array, "c h w -> h w c").numpy()
    Image.fromarray(array[..., 0] if array.shape[-1] == 1 else np.ascontiguousarray(array)).save(path)
    return path
