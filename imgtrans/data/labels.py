r"""Semantic label maps as generator inputs, as pix2pixHD encodes them (Wang et al., CVPR 2018, section 3.3).

A label map holds one integer class per pixel. The generator sees it one-hot encoded, ``label_nc``
channels of 0 and 1 (``encode_input`` in NVIDIA's ``pix2pixHD_model.py``: ``scatter_(1, label, 1.0)``),
and, for datasets with instance maps (Cityscapes), one more channel: the instance-boundary map
$E$, 1 where a pixel's instance id differs from one of its 4 neighbours (``get_edges``), so that
objects of one class stay apart. The discriminator sees the same channels beside the image.

Folders, as NVIDIA's ``AlignedDataset`` reads them: ``label/``, ``img/`` and (with instance maps)
``inst/`` with files of the same names, or its own ``train_label/``, ``train_img/``, ``train_inst/``.
Label and instance files are single-band PNGs (8-bit, palette or 32-bit integer) whose values are
the ids; they are resized with nearest-neighbour sampling, images bicubically, and all three get
the same crop and flip (section 6.2 of pix2pix, as [PairedImageDataset][imgtrans.data.paired.PairedImageDataset]).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from imgtrans.data.paired import augmentation_rng, crop_box
from imgtrans.images import image_files, image_to_tensor, read_image

LAYOUTS: tuple[tuple[str, str, str], ...] = (("label", "img", "inst"), ("train_label", "train_img", "train_inst"))
"""Folder names of label maps, images and instance maps: imgtrans's, then pix2pixHD's training split."""


def one_hot(labels: torch.Tensor, label_nc: int) -> torch.Tensor:
    """``N x 1 x H x W`` (or ``1 x H x W``) integer labels as ``label_nc`` channels of 0 and 1."""
    if label_nc < 1:
        raise ValueError(f"label_nc must be at least 1 to one-hot encode label maps; got {label_nc}")
    labels = labels.long()
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= label_nc):
        raise ValueError(
            f"label maps hold ids from {int(labels.min())} to {int(labels.max())}, but label_nc is {label_nc}: "
            f"ids must be in 0 .. label_nc - 1 (give the dataset's number of classes, --label-nc)"
        )
    shape = (*labels.shape[:-3], label_nc, *labels.shape[-2:])
    return torch.zeros(shape).scatter_(-3, labels, 1.0)


def instance_edges(instances: torch.Tensor) -> torch.Tensor:
    """pix2pixHD's ``get_edges``: 1 on both sides of every change of instance id, horizontal or vertical."""
    t = instances
    edge = torch.zeros(t.shape, dtype=torch.bool, device=t.device)
    horizontal = t[..., :, 1:] != t[..., :, :-1]
    vertical = t[..., 1:, :] != t[..., :-1, :]
    edge[..., :, 1:] |= horizontal
    edge[..., :, :-1] |= horizontal
    edge[..., 1:, :] |= vertical
    edge[..., :-1, :] |= vertical
    return edge.float()


def encode_labels(labels: torch.Tensor, label_nc: int, instances: torch.Tensor | None = None) -> torch.Tensor:
    """The generator's input: one-hot ``labels``, then the boundary map of ``instances`` when given."""
    encoded = one_hot(labels, label_nc)
    if instances is None:
        return encoded
    return torch.cat([encoded, instance_edges(instances)], dim=-3)


def read_ids(path: Path) -> Image.Image:
    """A single-band label or instance map, its pixel values the ids (palettes are not expanded)."""
    try:
        with Image.open(path) as image:
            image.load()
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read the id map {path}: {error}") from None
    if image.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
        raise ValueError(
            f"{path} is a {image.mode} image; label and instance maps are single-band images whose values are ids "
            "(8-bit gray or palette, or 16/32-bit integer PNGs)"
        )
    return image if image.mode in ("L", "P", "I") else image.convert("I")


def ids_to_tensor(image: Image.Image) -> torch.Tensor:
    """``1 x H x W`` int64 ids of a map from [read_ids][imgtrans.data.labels.read_ids]."""
    return torch.from_numpy(np.array(image).astype(np.int64))[None]


def preview(labels: torch.Tensor) -> torch.Tensor:
    """A ``3 x H x W`` picture in [-1, 1] of integer ``labels``: one fixed colour per id (for sample grids)."""
    ids = labels[0].long()
    palette = torch.tensor([[(i * 67) % 256, (i * 151 + 80) % 256, (i * 211 + 160) % 256] for i in range(256)])
    return palette[ids % 256].permute(2, 0, 1).float() / 127.5 - 1


class LabelMapDataset(Dataset):
    """Label maps (with instance maps) and their images, as pix2pixHD trains on them.

    Args:
        root: a folder with ``label/`` and ``img/`` (and ``inst/``), or pix2pixHD's ``train_*`` folders.
        label_nc: the number of classes: ids run from 0 to ``label_nc - 1``.
        instance: read ``inst/`` and add the instance-boundary channel.
        out_channels: channels of the images (the model's ``out_channels``).
        load_size: side the maps and the image are resized to before cropping; ``None`` keeps them.
        crop_size: side of the crop; ``None`` does not crop.
        train: random crop and mirroring when ``True``; a centre crop and no flip otherwise.
        flip: mirror horizontally half of the time (training only).
        seed: seed of the augmentation, as for [PairedImageDataset][imgtrans.data.paired.PairedImageDataset].

    Items are ``input`` (``label_nc (+1) x H x W``, 0 and 1), ``target`` (the image in [-1, 1]),
    ``preview`` (the label map in colour, for sample grids) and the label file's ``name``.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        label_nc: int,
        instance: bool = False,
        out_channels: int = 3,
        load_size: int | None = 286,
        crop_size: int | None = 256,
        train: bool = True,
        flip: bool = True,
        seed: int = 0,
    ) -> None:
        if label_nc < 1:
            raise ValueError(f"label_nc must be at least 1 for label maps; got {label_nc}")
        if load_size is not None and crop_size is not None and crop_size > load_size:
            raise ValueError(f"crop_size ({crop_size}) cannot exceed load_size ({load_size})")
        self.root, self.label_nc, self.instance, self.out_channels = Path(root), label_nc, instance, out_channels
        self.load_size, self.crop_size, self.train, self.flip = load_size, crop_size, train, flip
        self.seed, self.epoch = seed, 0
        self.items = self._find_items()

    def _find_items(self) -> list[tuple[Path, Path, Path | None]]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"no dataset folder at {self.root}")
        for label_name, image_name, inst_name in LAYOUTS:
            labels, images, insts = self.root / label_name, self.root / image_name, self.root / inst_name
            if labels.is_dir() and images.is_dir():
                break
        else:
            raise ValueError(
                f"{self.root} has no label/ and img/ folders (nor pix2pixHD's train_label/ and train_img/): label "
                "maps need them; for images side by side (AB files) leave label_nc at 0 (--label-nc 0)"
            )
        folders = {"label": labels, "image": images}
        if self.instance:
            if not insts.is_dir():
                raise ValueError(f"instance maps were asked for (--instance) but {insts} does not exist")
            folders["instance"] = insts
        found = {k: {p.stem: p for p in image_files(v)} for k, v in folders.items()}
        names = sorted(found["label"])
        if not names:
            raise ValueError(f"no label maps in {labels}")
        for kind, files in found.items():
            if missing := sorted(set(names) ^ set(files)):
                raise ValueError(
                    f"{len(missing)} file(s) of {labels} and {folders[kind]} have no partner with the same name, "
                    f"e.g. {', '.join(missing[:5])}"
                )
        return [(found["label"][n], found["image"][n], found.get("instance", {}).get(n)) for n in names]

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose random crops and flips the items use."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def verify(self) -> None:
        """Read every file once, so that a damaged one or an id beyond ``label_nc`` is reported before training."""
        for index in range(len(self)):
            self[index]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        label_path, image_path, inst_path = self.items[index]
        maps = [read_ids(label_path)] + ([read_ids(inst_path)] if inst_path is not None else [])
        image = read_image(image_path, self.out_channels)
        for path, m in zip((label_path, inst_path), maps):
            if m.size != image.size:
                w, h = image.size
                raise ValueError(f"{path} is {m.size[0]}x{m.size[1]} but {image_path} is {w}x{h}: they must match")
        rng = augmentation_rng(self.seed, self.epoch, index)
        if self.load_size is not None:
            size = (self.load_size, self.load_size)
            maps, image = [m.resize(size, Image.NEAREST) for m in maps], image.resize(size, Image.BICUBIC)
        if self.crop_size is not None:
            box = crop_box(image.size, self.crop_size, self.train, rng, f"{label_path} gives")
            maps, image = [m.crop(box) for m in maps], image.crop(box)
        ids = [ids_to_tensor(m) for m in maps]
        target = image_to_tensor(image, self.out_channels)
        if self.train and self.flip and rng.random() < 0.5:
            ids, target = [t.flip(-1) for t in ids], target.flip(-1)
        try:
            encoded = encode_labels(ids[0], self.label_nc, ids[1] if self.instance else None)
        except ValueError as error:
            raise ValueError(f"{label_path}: {error}") from None
        return {"input": encoded, "target": target, "preview": preview(ids[0]), "name": label_path.name}
