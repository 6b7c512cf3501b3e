"""Inference: eval mode, the paper's test-time mode (sections 3.3 and 4.1), and tiled translation.

The paper runs the generator at test time "in exactly the same manner as during the training
phase": dropout stays on, and BatchNorm normalises with the statistics of the test batch
rather than the running averages of training.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn


@contextmanager
def paper_eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Run ``module`` with dropout on and batch statistics, as the paper does at test time.

    Running statistics and every submodule's train/eval flag are restored on exit, so the
    model is left exactly as it was.
    """
    modes = [(m, m.training) for m in module.modules()]
    saved = [b.clone() for b in module.buffers()]
    module.train()
    try:
        yield module
    finally:
        with torch.no_grad():
            for buffer, value in zip(module.buffers(), saved):
                buffer.copy_(value)
        for m, training in modes:
            m.training = training


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Run ``module`` in eval mode (no dropout, running statistics), restoring its mode after."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


def generator_of(model: nn.Module) -> nn.Module:
    """The network that translates: a pix2pix model's generator, or the module itself."""
    generator = getattr(model, "generator", None)
    return generator if isinstance(generator, nn.Module) else model


@torch.no_grad()
def translate(model: nn.Module, x: torch.Tensor, *, paper_test_mode: bool = False) -> torch.Tensor:
    """Translate a batch in [-1, 1] with a pix2pix model or a bare generator, without gradients."""
    generator = generator_of(model)
    with paper_eval_mode(generator) if paper_test_mode else eval_mode(generator):
        return generator(x)


def compile_for_inference(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """A compiled eval-mode translator: ``torch.compile`` with inductor's weight freezing.

    Freezing treats the weights as constants, so BatchNorm is folded into the convolutions and
    oneDNN weights are packed once instead of on every call; on 2 CPU cores this made a U-Net 256
    about 1.4 times faster. The first call for each new input shape compiles (tens of seconds
    on a CPU), so it pays off for many images of one size. The model must not change afterwards.
    """
    generator = generator_of(model).eval()
    compiled = torch.compile(generator)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), torch._inductor.config.patch(freezing=True):
            return compiled(x)

    return run


def blend_window(tile: int, overlap: int, device: torch.device | None = None) -> torch.Tensor:
    """A ``tile x tile`` weight that ramps linearly from the borders over ``overlap`` pixels."""
    ramp = torch.arange(tile, device=device, dtype=torch.float32)
    ramp = torch.minimum(ramp + 1, tile - ramp).clamp(max=max(overlap, 1)) / max(overlap, 1)
    return ramp[:, None] * ramp[None, :]


@torch.no_grad()
def translate_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    tile: int = 1024,
    overlap: int = 128,
    batch_size: int = 4,
) -> torch.Tensor:
    """Translate one large image (``1 x C x H x W``) in overlapping tiles, blended linearly.

    The generators are fully convolutional (paper section 4.4), so a large image could be
    translated in one pass; tiling keeps memory bounded by ``batch_size`` tiles of
    ``tile x tile`` pixels. Neighbouring tiles overlap by ``overlap`` pixels and are blended with
    weights that ramp down towards each tile's border, so no seams show. Images no larger than a
    tile are translated in one pass.
    """
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"translate_tiled takes one image shaped (1, C, H, W); got {tuple(image.shape)}")
    if not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile); got overlap={overlap}, tile={tile}")
    _, channels, h, w = image.shape
    if h <= tile and w <= tile:
        return fn(image)
    stride = tile - overlap
    padded = [tile + math.ceil(max(side - tile, 0) / stride) * stride for side in (h, w)]
    mode = "reflect" if max(padded[0] - h, padded[1] - w) < min(h, w) else "replicate"
    x = F.pad(image, (0, padded[1] - w, 0, padded[0] - h), mode=mode)
    tiles = rearrange(F.unfold(x, tile, stride=stride), "1 (c h w) n -> n c h w", c=channels, h=tile)
    window = blend_window(tile, overlap, image.device)
    out = torch.cat([fn(batch) * window for batch in tiles.split(batch_size)])
    out_channels = out.shape[1]
    summed = F.fold(rearrange(out, "n c h w -> 1 (c h w) n"), padded, tile, stride=stride)
    weights = F.fold(repeat(window, "h w -> 1 (h w) n", n=out.shape[0]), padded, tile, stride=stride)
    return (summed / weights)[..., :h, :w].reshape(1, out_channels, h, w)
