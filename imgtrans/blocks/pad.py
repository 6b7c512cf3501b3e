"""What a generator takes: a batch checked for free, padded to the multiple it needs and cropped back.

Any image size works. Padding costs compute in proportion to the pixels it adds. A side is padded freely up to
``FREE_SIDE`` pixels (the cost of a small image); beyond that it may grow at most ``MAX_GROWTH``
times, so that a deep network on a small image (a 12-level U-Net pads a 1x1 image to 4096x4096)
is refused with the size it needs instead of running for minutes on padding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

FREE_SIDE = 1024
"""A side may always be padded up to this many pixels."""
MAX_GROWTH = 4
"""Beyond ``FREE_SIDE``, padding may at most multiply a side by this."""


def check_batch(x: object, owner: str, weights: torch.dtype | None = None) -> None:
    """Raise a ``TypeError`` or ``ValueError`` saying what to pass unless ``x`` is a batch of float images.

    Only what costs nothing is checked (type, dtype, shape; no pass over the values), so every
    forward call can afford it. ``weights``: the dtype of the network's weights, which a
    floating-point ``x`` must have outside autocast (a float64 batch for a float32 network, say).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{owner} takes a torch.Tensor of images shaped (N, C, H, W) in [-1, 1]; got {_kind(x)}")
    if not x.is_floating_point():
        pixels = " (pixels?): pass x.float() / 127.5 - 1" if x.dtype == torch.uint8 else ": pass x.float(), in [-1, 1]"
        raise TypeError(f"{owner} takes float images in [-1, 1]; got a {x.dtype} tensor{pixels}")
    if weights is not None and x.dtype != weights and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f"{owner} got {x.dtype} images but the model's weights are {weights}: pass x.to({weights})")
    if x.ndim != 4:
        single = ": one image? add the batch dimension, x[None]" if x.ndim == 3 else ""
        raise ValueError(f"{owner} expects a batch of images shaped (N, C, H, W); got {tuple(x.shape)}{single}")
    if not torch.compiler.is_compiling() and (x.shape[0] == 0 or 0 in x.shape[-2:]):
        what = "the batch is empty" if x.shape[0] == 0 else "the images have no pixels"
        raise ValueError(f"{owner} got {tuple(x.shape)}: {what}; pass at least one image of at least 1x1 pixels")


def _kind(x: object) -> str:
    """What a user passed instead of a tensor, and how to make one of it."""
    module = type(x).__module__.split(".")[0]
    if module == "numpy":
        return (
            f"a numpy array shaped {getattr(x, 'shape', '?')}: pass torch.from_numpy(array) (for H x W x C pixels: "
            "torch.from_numpy(array).permute(2, 0, 1)[None].float() / 127.5 - 1), or use imgtrans.translate_image"
        )
    if module == "PIL":
        return "a PIL image: use imgtrans.translate_image(model, image), which takes and returns PIL images"
    if isinstance(x, (list, tuple)):
        items = f"{len(x)} item{'s' * (len(x) != 1)}"
        return f"a {type(x).__name__} of {items}: stack the C x H x W images into one batch, torch.stack(images)"
    return f"{type(x).__name__}"


def check_input(x: torch.Tensor, channels: int, owner: str, argument: str = "in_channels") -> None:
    """Raise a clear ``TypeError`` or ``ValueError`` unless ``x`` is an ``N x channels x H x W`` float tensor."""
    check_batch(x, owner)
    if x.shape[1] != channels:
        raise ValueError(
            f"{owner} was built for {channels} input channels but got {x.shape[1]} "
            f"(input shape {tuple(x.shape)}); build it with {argument}={x.shape[1]} or convert the images"
        )


def pad_to_multiple(
    x: torch.Tensor, multiple: int, minimum: int = 0, owner: str = "the network", remedy: str = ""
) -> tuple[torch.Tensor, tuple[int, int, int, int]]:
    """Pad ``x`` symmetrically so that height and width are multiples of ``multiple``.

    Sides are also padded up to at least ``minimum`` pixels. A side that would grow past
    ``FREE_SIDE`` pixels and more than ``MAX_GROWTH`` times is refused (a ``ValueError`` naming
    the size needed; ``owner`` names the network and ``remedy`` adds the parameter that lowers
    ``multiple``, e.g. ``", or build it with a smaller num_downs"``).

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
    if isinstance(h, int) and isinstance(w, int):  # concrete sizes; symbolic ones (export) are not
        check_padding(h, w, h + ph, w + pw, multiple, minimum, owner, remedy)
    if torch.compiler.is_exporting():
        return pad_by_index(x, pad), pad
    if ph == pw == 0:
        return x, pad
    mode = "reflect" if max(pad) < min(h, w) else "replicate"
    return F.pad(x, pad, mode=mode), pad


def check_padding(
    h: int, w: int, padded_h: int, padded_w: int, multiple: int, minimum: int, owner: str, remedy: str
) -> None:
    """Refuse padding that grows a side past ``FREE_SIDE`` and more than ``MAX_GROWTH`` times."""
    if all(padded <= max(FREE_SIDE, MAX_GROWTH * side) for side, padded in ((h, padded_h), (w, padded_w))):
        return
    smallest = max(multiple, math.ceil(minimum / multiple) * multiple)  # what a 1-pixel side becomes
    at_least = f" (and at least {minimum})" if minimum > multiple else ""
    raise ValueError(
        f"{owner} pads image sides to multiples of {multiple}{at_least}: this {w}x{h} image would be computed at "
        f"{padded_w}x{padded_h}, {padded_w * padded_h / max(w * h, 1):,.0f} times its pixels. Give images whose "
        f"sides are at least {math.ceil(smallest / MAX_GROWTH)} pixels{remedy}"
    )


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
