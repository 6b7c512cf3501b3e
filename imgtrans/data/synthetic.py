"""An embedded, procedural stand-in for CMP Facades: label maps and their rendered "photos".

Each example is drawn from ``numpy.random.default_rng([seed, index])``, so a dataset is fully
defined by its seed: nothing is downloaded. A label map holds sky, wall, a cornice, a grid of
windows with balconies, a door and a shop band, coloured with a fixed palette. The photo renders
the same layout with materials the generator must learn to paint: brick courses on the wall,
glass with a reflection and a light frame around each window, wooden planks on the door,
railings on the balconies, a shadow under the cornice, and light falling from above. The
mapping labels -> photo is therefore learnable, and has both colour (what L1 learns) and high
frequencies (what the GAN term adds).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from imgtrans.images import save_image

SKY, WALL, CORNICE, WINDOW, BALCONY, DOOR, SHOP = range(7)

# Label colours, in the spirit of the CMP Facades label maps.
PALETTE = np.array(
    [
        [0, 0, 170],  # sky / background
        [0, 85, 255],  # wall
        [255, 170, 0],  # cornice
        [0, 255, 255],  # window
        [170, 255, 85],  # balcony
        [255, 85, 0],  # door
        [170, 0, 0],  # shop
    ],
    dtype=np.float32,
)

# Material base colours of the rendered photo, in [0, 1].
MATERIAL = np.array(
    [
        [0.62, 0.74, 0.90],  # sky
        [0.78, 0.64, 0.50],  # wall: sandstone
        [0.88, 0.86, 0.80],  # cornice: light stone
        [0.20, 0.26, 0.34],  # window: dark glass
        [0.30, 0.30, 0.32],  # balcony: iron
        [0.42, 0.25, 0.14],  # door: wood
        [0.25, 0.35, 0.30],  # shop: painted front
    ],
    dtype=np.float32,
)


def facade_layout(rng: np.random.Generator, size: int) -> np.ndarray:
    """A ``size x size`` map of class indices: a facade with floors of windows."""
    s = size
    labels = np.full((s, s), WALL, dtype=np.int64)
    top = int(s * rng.uniform(0.02, 0.12))
    labels[:top] = SKY
    cornice = max(2, int(s * rng.uniform(0.03, 0.06)))
    labels[top : top + cornice] = CORNICE
    shop_top = int(s * rng.uniform(0.80, 0.88))
    labels[shop_top:] = SHOP
    floors, columns = int(rng.integers(3, 6)), int(rng.integers(3, 7))
    floor_h = (shop_top - top - cornice) / floors
    col_w = s / columns
    win_h, win_w = rng.uniform(0.45, 0.65) * floor_h, rng.uniform(0.35, 0.6) * col_w
    balconies = rng.random(floors) < 0.4
    for f in range(floors):
        y0 = int(top + cornice + f * floor_h + (floor_h - win_h) * 0.4)
        y1 = int(y0 + win_h)
        for c in range(columns):
            x0 = int(c * col_w + (col_w - win_w) / 2)
            x1 = int(x0 + win_w)
            labels[y0:y1, x0:x1] = WINDOW
            if balconies[f]:
                labels[y1 : y1 + max(2, int(floor_h * 0.15)), max(0, x0 - 2) : x1 + 2] = BALCONY
    door_w = int(col_w * rng.uniform(0.4, 0.6))
    door_x = int(rng.integers(0, columns)) * col_w + (col_w - door_w) / 2
    labels[shop_top - int(s * 0.02) :, int(door_x) : int(door_x) + door_w] = DOOR
    return labels


def render_photo(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Render a label map as an ``H x W x 3`` photo in [0, 1]."""
    s = labels.shape[0]
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float32) / s
    photo = MATERIAL[labels].copy()
    photo *= (1.0 + 0.04 * rng.standard_normal(3)).astype(np.float32)  # this facade's tint
    period = max(3, s // 40)
    wall = labels == WALL
    bricks = (np.arange(s) % period == 0)[:, None]  # mortar courses
    photo[wall & bricks] *= 0.72
    glass = labels == WINDOW
    reflection = ((xx + yy) * 6.0) % 1.0 < 0.18  # diagonal glints on the glass
    photo[glass & reflection] += 0.25
    frame = glass & ~(_shift(glass, 2, 0) & _shift(glass, -2, 0) & _shift(glass, 0, 2) & _shift(glass, 0, -2))
    photo[frame] = [0.92, 0.92, 0.88]
    door = labels == DOOR
    planks = (np.arange(s) % max(3, s // 32) == 0)[None, :]
    photo[door & planks] *= 0.6
    rails = (np.arange(s) % max(2, s // 64) == 0)[None, :]
    photo[(labels == BALCONY) & rails] = [0.08, 0.08, 0.09]
    under = (labels == WALL) & _shift(labels == CORNICE, max(1, s // 64), 0)
    photo[under] *= 0.55  # the cornice's shadow
    recess = (labels == WALL) & (_shift(glass, 0, max(1, s // 100)) | _shift(glass, max(1, s // 100), 0))
    photo[recess] *= 0.6  # windows are recessed: shadow on their lower right
    photo *= (1.1 - 0.25 * yy)[..., None]  # light from above
    photo += 0.02 * rng.standard_normal(photo.shape).astype(np.float32)
    return np.clip(photo, 0.0, 1.0)


def _shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``mask`` moved by ``dy`` rows and ``dx`` columns, padded with False."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = mask[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def synthetic_pair(seed: int, index: int, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Example ``index`` of the dataset ``seed``: (label map, photo), both ``H x W x 3`` in [0, 1]."""
    rng = np.random.default_rng([seed, index])
    labels = facade_layout(rng, size)
    return PALETTE[labels] / 255.0, render_photo(labels, rng)


class SyntheticFacades(Dataset):
    """``num_images`` procedural label -> photo pairs of ``size`` pixels, defined by ``seed``.

    Items are dictionaries like those of [PairedImageDataset][imgtrans.data.paired.PairedImageDataset]:
    ``input`` (the label map) and ``target`` (the photo) as ``3 x size x size`` tensors in
    [-1, 1], and a ``name``. Use different seeds for training and test sets.
    """

    def __init__(self, num_images: int = 400, size: int = 256, seed: int = 0) -> None:
        if num_images < 1 or size < 16:
            raise ValueError(f"need num_images >= 1 and size >= 16; got {num_images} and {size}")
        self.num_images, self.size, self.seed = num_images, size, seed

    def __len__(self) -> int:
        return self.num_images

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        if not 0 <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        labels, photo = synthetic_pair(self.seed, index, self.size)
        to_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))).float() * 2 - 1  # noqa: E731
        return {"input": to_tensor(labels), "target": to_tensor(photo), "name": f"synthetic-{self.seed}-{index}"}


def write_ab_folder(dataset: Dataset, folder: str | Path) -> Path:
    """Write a dataset's pairs as pix2pix AB files: target (A) on the left, input (B) on the right.

    This is the facades convention (photo | labels), so the files train with ``direction="BtoA"``.
    """
    folder = Path(folder)
    for i in range(len(dataset)):
        item = dataset[i]
        save_image(torch.cat([item["target"], item["input"]], dim=-1), folder / f"{i + 1}.png")
    return folder
