"""Sample grids: rows of images side by side; save them with [imgtrans.images.save_image][].

What a row shows is the model's to say, through a ``sample_rows(inputs, targets)`` method that
returns the rows of a batch, each a tuple of ``N x C x H x W`` columns: CycleGAN shows the
reference's visuals, ``real_A | fake_B | rec_A`` and ``real_B | fake_A | rec_B`` for each item. A
model without one (pix2pix, pix2pixHD) shows input | output | target.
"""

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
    return rows_grid([columns], border)


def rows_grid(rows: Sequence[Sequence[torch.Tensor]], border: int = 2) -> torch.Tensor:
    """Item by item, one line per row of ``rows`` (each the same number of ``N x C x H x W`` columns).

    Item ``i`` takes ``len(rows)`` lines of the ``3 x H' x W'`` grid: line ``j`` shows image ``i``
    of each column of ``rows[j]``, left to right, with a white ``border``.
    """
    widths = {len(row) for row in rows}
    if len(widths) != 1:
        raise ValueError(f"every row of a sample grid needs the same number of images; got {sorted(widths)}")
    tiles = torch.stack([torch.stack([as_rgb(c.detach().float().cpu()) for c in row], dim=1) for row in rows], dim=1)
    tiles = F.pad(tiles, (border, border, border, border), value=1.0)  # n r k c h w
    return rearrange(tiles, "n r k c h w -> c (n r h) (k w)")


def sample_rows(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, shown: torch.Tensor
) -> Sequence[Sequence[torch.Tensor]]:
    """The rows a grid shows of inputs ``x`` and targets ``y``: the model's ``sample_rows(x, y)`` if it has one.

    Else input | output | target, where ``shown`` is what the row shows for the input (``x``, or a
    label map in colour).
    """
    rows = getattr(model, "sample_rows", None)
    if callable(rows):
        return rows(x, y)
    return [(shown, model.translate(x).float(), y)]


def write_samples(
    model: nn.Module, data: Dataset, count: int, device: torch.device, precision: ContextManager, path: Path
) -> Path:
    """Save the [sample_rows][imgtrans.train.samples.sample_rows] of the first ``count`` items of ``data`` to ``path``.

    An item's ``preview``, when it has one, is shown for its input (a label map in colour for its one-hot channels).
    """
    items = [data[i] for i in range(min(count, len(data)))]
    x = torch.stack([it["input"] for it in items]).to(device)
    y = torch.stack([it["target"] for it in items]).to(device)
    shown = torch.stack([it["preview"] for it in items]) if all("preview" in it for it in items) else x
    with precision:
        rows = sample_rows(model, x, y, shown)
    return save_image(rows_grid(rows), path)
