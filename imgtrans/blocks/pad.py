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

    While a model is being exported (``torch.export``, ``torch.onnx.export``) the image size is
    symbolic, so the choices above cannot be Python branches; the same padding is then computed
    by [pad_by_index][imgtrans.blocks.pad.pad_by_index], which keeps them in the graph.
    """
    h, w = x.shape[-2:]
    # (side + m - 1) // m rather than -(-side // m): exported graphs divide integers by truncation
    # (ONNX Div), which equals floor division only for non-negative operands.
    ph, pw = (torch.sym_max((side + multiple - 1) // multiple * multiple, minimum) - side for side in (h, w))
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    if torch.compiler.is_exporting():
        return pad_by_index(x, pad), pad
    if ph == pw == 0:
        return x, pad
    mode = "reflect" if max(pad) < min(h, w) else "replicate"
    return F.pad(x, pad, mode=mode), pad


def pad_by_index(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """The padding of `pad_to_multiple`, as index arithmetic that export keeps for any image size.

    Row ``i`` of the padded image (``-top <= i < h + bottom``) reads row ``(h-1) - |(h-1) - |i||``
    of the image under reflection, and ``clamp(i, 0, h-1)`` under replication; columns alike.
    Which of the two applies (reflection unless a pad reaches the shorter side) is a tensor
    condition, not a Python branch. Equal to ``F.pad`` with that mode, value for value.
    """
    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    largest = torch.sym_max(torch.sym_max(left, right), torch.sym_max(top, bottom))
    reflect = torch.scalar_tensor(largest, device=x.device) < torch.scalar_tensor(torch.sym_min(h, w), device=x.device)

    def rows(n: int, before: int, after: int) -> torch.Tensor:
        i = torch.arange(-before, n + after, device=x.device)
        return torch.where(reflect, (n - 1) - ((n - 1) - i.abs()).abs(), i.clamp(0, n - 1))

    return x.index_select(-2, rows(h, top, bottom)).index_select(-1, rows(w, left, right))


def crop_padding(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Undo `pad_to_multiple`."""
    left, right, top, bottom = pad
    h, w = x.shape[-2:]
    return x[..., top : h - bottom, left : w - right]
