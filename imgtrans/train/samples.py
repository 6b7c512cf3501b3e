"""Sample grids: rows of images side by side (input | output | target); save them with [imgtrans.images.save_image][]."""

from __future__ import annotations

from pathlib import Path
from typing import ContextManager, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.data import Dataset

from imgtrans.images import save_image


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


def write_samples(
    model: nn.Module, data: Dataset, count: int, device: torch.device, precision: ContextManager, path: Path
) -> Path:
    """Save input | ``model.translate(input)`` | target for the first ``count`` items of ``data`` to ``path``.

    An item's ``preview``, when it has one, is shown for its input (a label map in colour for its one-hot channels).
    """
    items = [data[i] for i in range(min(count, len(data)))]
    x = torch.stack([it["input"] for it in items]).to(device)
    y = torch.stack([it["target"] for it in items])
    with precision:
        out = model.translate(x).float()
    shown = torch.stack([it["preview"] for it in items]) if all("preview" in it for it in items) else x
    return save_image(image_grid([shown, out, y]), path)
