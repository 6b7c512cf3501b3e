"""Padding to the multiple a network needs, and cropping back, so any image size works."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def check_input(x: torch.Tensor, channels: int, owner: str, argument: str = "in_channels") -> None:
    """Raise a clear ``ValueError`` unless ``x`` is an ``N x channels x H x W`` tensor."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{owner} expects a batch of images shaped (N, C, H, W); got {shape}")
    if x.shape[1] != channels:
        raise ValueError(
            f"{owner} was built for {channels} input channels but got {x.shape[1]} "
            f"(input shape {tuple(x.shape)}); build it with {argument}={x.shape[1]} or convert the images"
        )


def pad_to_multiple(
    x: torch.Tensor, multiple: int, minimum: int = 0
) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad ``x`` symmetrically so that height and width are multiples of ``multiple``.

    Sides are also padded up to at least ``minimum`` pixels.

    Uses reflection, or edge replication where the image is too small to reflect. Returns the
    padded tensor and the ``(left, right, top, bottom)`` padding for `crop_padding`.
    """
    h, w = x.shape[-2:]
    ph, pw = (max(-(-side // multiple) * multiple, minimum) - side for side in (h, w))
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if ph == pw == 0:
        return x, pad
    mode = "reflect" if max(pad) < min(h, w) else "replicate"
    return F.pad(x, pad, mode=mode), pad


def crop_padding(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Undo `pad_to_multiple`."""
    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]
