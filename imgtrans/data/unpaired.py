"""Unpaired images of two domains, in the CycleGAN layout, with the reference's sampling and augmentation.

The reference's ``unaligned_dataset.py`` reads ``trainA/`` and ``trainB/`` (``testA/``,
``testB/`` for testing): item ``i`` is the ``i``-th image of A (cycling) with a random image of B
(``--serial_batches``: the ``i``-th of B, cycling), an epoch has ``max(len A, len B)`` items, and
each image has its own random jitter (resize to ``load_size``, random ``crop_size`` crop) and
mirroring (CycleGAN section 4 and appendix 7.1; the same 286 -> 256 as pix2pix).

Here the B drawn for item ``i``, and both images' crops and flips, are a function of
``(seed, epoch, i)`` (see [augmentation_rng][imgtrans.data.paired.augmentation_rng]), so the
batches of a resumed run are those of the uninterrupted one, with or without loading processes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from imgtrans.data.paired import augmentation_rng, crop_box
from imgtrans.images import IMAGE_EXTENSIONS, image_files, image_to_tensor, read_image, save_image


def domain_folders(root: str | os.PathLike, split: str = "train") -> tuple[Path, Path]:
    """The folders of A and B under ``root``: ``{split}A/`` and ``{split}B/``, or ``A/`` and ``B/``.

    ``root`` may also name the split itself: ``horse2zebra/train`` means ``horse2zebra/trainA`` and
    ``horse2zebra/trainB``. Raises ``FileNotFoundError`` in one line naming what is missing.
    """
    root = Path(root)
    candidates = [(root / f"{split}A", root / f"{split}B"), (root / "A", root / "B"),
                  (root.parent / f"{root.name}A", root.parent / f"{root.name}B")]  # fmt: skip
    for a, b in candidates:
        if a.is_dir() and b.is_dir():
            return a, b
    for a, b in candidates:
        if a.is_dir() != b.is_dir():
            have, missing = (a, b) if a.is_dir() else (b, a)
            raise FileNotFoundError(f"{have} has no partner folder {missing}: unpaired data needs both domains")
    if not root.exists() and not root.parent.is_dir():
        raise FileNotFoundError(f"no dataset folder at {root}")
    raise FileNotFoundError(
        f"no unpaired images at {root}: expected folders {split}A/ and {split}B/ (the CycleGAN layout, e.g. "
        "horse2zebra/trainA), or A/ and B/"
    )


def domain_images(folder: Path) -> list[Path]:
    """The image files of one domain's folder; an empty folder is a one-line ``ValueError``."""
    files = image_files(folder)
    if not files:
        raise ValueError(f"no images in {folder} ({', '.join(IMAGE_EXTENSIONS)})")
    return files


class UnpairedImageDataset(Dataset):
    """Images of A with images of B drawn independently, as the reference's unaligned dataset.

    Args:
        root: a folder holding ``{split}A/`` and ``{split}B/`` (or ``A/`` and ``B/``), or the split
            itself (``horse2zebra/train``).
        split: ``"train"`` or ``"test"`` (any prefix of the folders' names).
        in_channels: channels of the images of A (the model's ``in_channels``).
        out_channels: channels of the images of B (the model's ``out_channels``).
        load_size: side each image is resized to before cropping (286); ``None`` keeps its size.
        crop_size: side of the random crop (256); ``None`` does not crop.
        train: random crops and mirroring; when ``False``, a centre crop, no flip, and B serial.
        flip: mirror horizontally half of the time (training only), each image on its own.
        serial: take B's images in order (item ``i`` has B image ``i mod len(B)``), the
            reference's ``--serial_batches``; by default a random one for each item.
        seed: seed of the draws; with [set_epoch][imgtrans.data.unpaired.UnpairedImageDataset.set_epoch]
            each item is a function of ``(seed, epoch, index)``.

    Items are ``{"input": A image, "target": B image, "name": A file name, "target_name": B file name}``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        in_channels: int = 3,
        out_channels: int = 3,
        load_size: int | None = 286,
        crop_size: int | None = 256,
        train: bool = True,
        flip: bool = True,
        serial: bool = False,
        seed: int = 0,
    ) -> None:
        if load_size is not None and crop_size is not None and crop_size > load_size:
            raise ValueError(f"crop_size ({crop_size}) cannot exceed load_size ({load_size})")
        self.root = Path(root)
        self.a_dir, self.b_dir = domain_folders(root, split)
        self.a_files, self.b_files = domain_images(self.a_dir), domain_images(self.b_dir)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.load_size, self.crop_size, self.train, self.flip = load_size, crop_size, train, flip
        self.serial, self.seed, self.epoch = serial or not train, seed, 0

    def __len__(self) -> int:
        """``max(len A, len B)``, as the reference: every image of the larger domain is seen each epoch."""
        return max(len(self.a_files), len(self.b_files))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose draws (B images, crops, flips) the items use."""
        self.epoch = epoch

    def verify(self) -> None:
        """Read every file of both domains once, so that a damaged one is reported before training starts."""
        for path, channels in [*((p, self.in_channels) for p in self.a_files),
                               *((p, self.out_channels) for p in self.b_files)]:  # fmt: skip
            read_image(path, channels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        rng = augmentation_rng(self.seed, self.epoch, index)
        a_path = self.a_files[index % len(self.a_files)]
        b_index = index % len(self.b_files) if self.serial else int(rng.integers(0, len(self.b_files)))
        b_path = self.b_files[b_index]
        a = self._transform(read_image(a_path, self.in_channels), a_path, self.in_channels, rng)
        b = self._transform(read_image(b_path, self.out_channels), b_path, self.out_channels, rng)
        return {"input": a, "target": b, "name": a_path.name, "target_name": b_path.name}

    def _transform(self, image: Image.Image, path: Path, channels: int, rng: np.random.Generator) -> torch.Tensor:
        """The reference's ``get_transform``: resize, crop (random in training, else central), flip."""
        if self.load_size is not None:
            image = image.resize((self.load_size, self.load_size), Image.BICUBIC)
        if self.crop_size is not None:
            image = image.crop(crop_box(image.size, self.crop_size, self.train, rng, f"{path} gives, after resizing,"))
        tensor = image_to_tensor(image, channels)
        if self.train and self.flip and rng.random() < 0.5:
            tensor = tensor.flip(-1)
        return tensor


def write_unpaired_folder(dataset: Dataset, folder: str | os.PathLike, split: str = "train") -> Path:
    """Write a paired dataset as two domains: even items' inputs to ``{split}A/``, odd items' targets to ``{split}B/``.

    No image of A has its own partner in B, so what is learnt from the folders is learnt without
    pairs (the embedded [SyntheticFacades][imgtrans.data.synthetic.SyntheticFacades] become labels and
    photos of different facades).
    """
    folder = Path(folder)
    for i in range(len(dataset)):
        item = dataset[i]
        domain, image = ("A", item["input"]) if i % 2 == 0 else ("B", item["target"])
        save_image(image, folder / f"{split}{domain}" / f"{i + 1}.png")
    return folder


class DomainImageDataset(Dataset):
    """The images of one domain's folder, each once, in name order: what an evaluation translates or compares with.

    Unpaired test images have no targets: the images of ``testA/`` are translated, and the
    translations are compared, as a distribution, with the real images of ``testB/`` (see
    [evaluate_model][imgtrans.metrics.scoring.evaluate_model]'s ``real``).

    Args:
        folder: a folder of images (``horse2zebra/testA``).
        channels: the channels to read them in (1, 3 or 4).
        load_size: side each image is resized to (bicubic, as in training); ``None`` keeps its size.

    Items are ``{"input": image in [-1, 1], "name": file name}``.
    """

    def __init__(self, folder: str | os.PathLike, channels: int = 3, load_size: int | None = None) -> None:
        self.folder, self.channels, self.load_size = Path(folder), channels, load_size
        if not self.folder.is_dir():
            raise FileNotFoundError(f"no image folder at {self.folder}")
        self.files = domain_images(self.folder)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        path = self.files[index]
        image = read_image(path, self.channels)
        if self.load_size is not None:
            image = image.resize((self.load_size, self.load_size), Image.BICUBIC)
        return {"input": image_to_tensor(image, self.channels), "name": path.name}


def evaluation_domains(
    root: str | os.PathLike,
    direction: str = "AtoB",
    split: str = "test",
    in_channels: int = 3,
    out_channels: int = 3,
    load_size: int | None = None,
) -> tuple[DomainImageDataset, DomainImageDataset]:
    """The images to translate and the real images to compare them with: ``(testA, testB)`` for AtoB, else reversed.

    Args:
        root: a folder holding ``{split}A/`` and ``{split}B/``, or the split itself (``horse2zebra/test``).
        direction: ``"AtoB"`` translates A and compares with B; ``"BtoA"`` the other way round.
        split: ``"test"`` (or ``"train"``, any prefix of the folders' names).
        in_channels: channels of the images translated (the model's input).
        out_channels: channels of the real images (the model's output).
        load_size: side every image is resized to; ``None`` keeps their sizes.
    """
    if direction not in ("AtoB", "BtoA"):
        raise ValueError(f"direction must be 'AtoB' or 'BtoA'; got {direction!r}")
    a, b = domain_folders(root, split)
    source, real = (a, b) if direction == "AtoB" else (b, a)
    return DomainImageDataset(source, in_channels, load_size), DomainImageDataset(real, out_channels, load_size)
