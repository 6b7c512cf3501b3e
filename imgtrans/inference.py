"""Inference: eval mode, the paper's test-time mode (sections 3.3 and 4.1), and tiled translation.

The paper runs the generator at test time "in exactly the same manner as during the training
phase": dropout stays on, and BatchNorm normalises with the statistics of the test batch
rather than the running averages of training.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import torch
from torch import nn

from imgtrans.blocks.pad import check_batch

if TYPE_CHECKING:
    from PIL import Image

RANGE_SLACK = 1e-3
"""How far outside [-1, 1] input values may lie: the float rounding of rescaled pixels, not a looser range."""


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
    """The network that translates: a pix2pix model's generator, a CycleGAN's for its direction, or the module itself.

    A model with a generator per direction says which one translates through ``generator_for()``
    (CycleGAN: ``generator_a`` for its recorded direction AtoB, ``generator_b`` for BtoA).
    """
    pick = getattr(model, "generator_for", None)
    if callable(pick):
        return pick()
    generator = getattr(model, "generator", None)
    return generator if isinstance(generator, nn.Module) else model


def weights_dtype(module: nn.Module) -> torch.dtype | None:
    """The dtype of ``module``'s first floating-point weight (``None`` without one)."""
    return next((p.dtype for p in module.parameters() if p.is_floating_point()), None)


def check_images(x: object, model: nn.Module, owner: str = "translate") -> None:
    """Raise a ``TypeError`` or ``ValueError`` saying what to pass unless ``x`` is what ``model`` translates.

    ``x`` must be a float tensor ``N x C x H x W`` (N, H, W at least 1) in the dtype of the model's
    weights, finite, with values in [-1, 1] (pixel / 127.5 - 1): the checks of
    [check_batch][imgtrans.blocks.pad.check_batch], and a pass over the values for their range.
    """
    check_batch(x, owner, weights_dtype(generator_of(model)))
    check_finite_input(x)
    low, high = (float(v) for v in torch.aminmax(x))
    if low < -1 - RANGE_SLACK or high > 1 + RANGE_SLACK:
        if low >= 0 and high > 10:
            hint = "0-255 pixels? pass x / 127.5 - 1"
        else:
            hint = "normalised with other statistics? rescale them: 2 * (x - x.min()) / (x.max() - x.min()) - 1"
        raise ValueError(
            f"{owner} takes images in [-1, 1] (pixel / 127.5 - 1); these span [{low:.4g}, {high:.4g}]: {hint}"
        )


def check_finite_input(x: torch.Tensor) -> None:
    """Raise a ``ValueError`` naming the images of the batch ``x`` that hold NaN or inf."""
    if not torch.isfinite(x).all():
        bad = (~torch.isfinite(x)).flatten(1).any(1).nonzero().flatten().tolist()
        raise ValueError(
            f"input image(s) {bad} of the batch hold NaN or inf; images must be finite, in [-1, 1] (pixel / 127.5 - 1)"
        )


@torch.no_grad()
def translate(
    model: nn.Module, x: torch.Tensor, *, paper_test_mode: bool = False, seeds: Sequence[int] | None = None
) -> torch.Tensor:
    """Translate a batch in [-1, 1] with a pix2pix model or a bare generator, without gradients.

    In eval mode the batch runs at once. In the paper's test mode each image runs alone, as in
    the paper and its reference code (batch size 1 at test time): its BatchNorm statistics are its
    own, so its output does not depend on the images beside it, and a NaN in one image cannot
    spread to the others. The images draw their dropout masks in order from the global generator,
    so a batch gives exactly what the same images give one call at a time.

    Args:
        model: a pix2pix model or a bare generator; its mode and statistics are left unchanged.
        x: images ``N x C x H x W`` in [-1, 1], in the dtype of the model's weights; anything else
            (pixels, NaN, numpy arrays...) is refused by [check_images][imgtrans.inference.check_images].
        paper_test_mode: dropout on and per-image statistics (sections 3.3, 4.1).
        seeds: in the paper's mode, one seed per image for its dropout masks (reproducible
            whatever the batching; the global generator is left untouched). Ignored in eval mode.
    """
    check_images(x, model)
    generator = generator_of(model)
    if not paper_test_mode:
        with eval_mode(generator):
            return generator(x)
    if seeds is not None and len(seeds) != len(x):
        raise ValueError(f"seeds must give one seed per image: {len(seeds)} seeds for {len(x)} images")
    outputs = []
    with paper_eval_mode(generator):
        for i in range(len(x)):
            if seeds is None:
                outputs.append(generator(x[i : i + 1]))
                continue
            with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
                torch.manual_seed(seeds[i])
                outputs.append(generator(x[i : i + 1]))
    return torch.cat(outputs)


def translate_image(
    model: nn.Module,
    image: "Image.Image | str | os.PathLike",
    device: str | torch.device | None = None,
    tile: int = 1024,
    overlap: int = 128,
    *,
    paper_test_mode: bool = False,
    instances: "Image.Image | str | os.PathLike | None" = None,
) -> "Image.Image":
    """Translate one picture: a PIL image (or an image file) in, a PIL image of the same size out.

    The image is turned the way its EXIF orientation says (as viewers show it), converted to the
    model's input channels (``L``, ``RGB`` or ``RGBA``) as ``imgtrans translate`` converts files,
    translated with [translate][imgtrans.inference.translate] (in tiles when a side exceeds ``tile``),
    and returned as an 8-bit image in the model's output channels, without EXIF.

    A model trained on label maps (``label_nc``, pix2pixHD) takes a label map instead: a single-band
    image whose values are its classes, one-hot encoded by [LabelInput][imgtrans.data.labels.LabelInput],
    with its instance map as ``instances`` when the model reads them.

    Example:
        ```python
        import imgtrans
        from PIL import Image

        model = imgtrans.build("pix2pix-facades", generator_args={"base_channels": 4})
        photo = imgtrans.translate_image(model, Image.new("RGB", (200, 150), "blue"))
        assert photo.size == (200, 150)
        ```

    Args:
        model: a pix2pix model or a bare generator.
        image: a PIL image in any mode Pillow opens, or the path of an image file.
        device: where to run (by default, where the model's weights are).
        tile: images with a side above this are translated in tiles of it (see
            [translate_tiled][imgtrans.inference.translate_tiled]).
        overlap: pixels that neighbouring tiles share, blended.
        paper_test_mode: dropout on and the image's own statistics (sections 3.3, 4.1).
        instances: for a model of label maps that reads instance maps, the instance map of ``image``
            (a single-band PIL image or file); refused for other models.
    """
    from PIL import Image

    from imgtrans.data.labels import check_instances, label_input
    from imgtrans.images import CHANNEL_MODES, as_channels, image_to_tensor, read_image, tensor_to_image, upright

    generator = generator_of(model)
    labels = label_input(model)
    channels = int(getattr(generator, "in_channels", 3))
    if labels is None:
        check_instances(None, instances is not None, "the image", "instances")
    if labels is None and channels not in CHANNEL_MODES:
        raise ValueError(f"the model expects {channels}-channel inputs; images give 1, 3 or 4 channels")
    if not isinstance(image, (str, os.PathLike, Image.Image)):
        raise TypeError(f"translate_image takes a PIL image or an image file's path; got {type(image).__name__}"
                        " (for tensors use imgtrans.inference.translate)")  # fmt: skip
    if labels is not None:
        x = labels.encode(image, instances, option="instances")  # ids as they are: no EXIF turn, no resampling
    elif isinstance(image, (str, os.PathLike)):
        x = image_to_tensor(read_image(image, channels), channels).unsqueeze(0)
    else:
        x = image_to_tensor(as_channels(upright(image), channels), channels).unsqueeze(0)
    parameter = next(generator.parameters(), None)
    device = device if device is not None else (parameter.device if parameter is not None else "cpu")
    x = x.to(device, weights_dtype(generator) or torch.float32)

    def run(batch: torch.Tensor) -> torch.Tensor:
        return translate(model, batch, paper_test_mode=paper_test_mode)

    y = translate_tiled(run, x, tile, overlap, batch_size=1) if max(x.shape[-2:]) > tile else run(x)
    return tensor_to_image(y[0])


def blend_ramp(tile: int, overlap: int, device: torch.device | None = None) -> torch.Tensor:
    """Weights along one side of a tile: rising linearly over ``overlap`` pixels from each border to 1."""
    ramp = torch.arange(tile, device=device, dtype=torch.float32)
    return torch.minimum(ramp + 1, tile - ramp).clamp(max=max(overlap, 1)) / max(overlap, 1)


def blend_window(tile: int, overlap: int, device: torch.device | None = None) -> torch.Tensor:
    """A ``tile x tile`` weight that ramps linearly from the borders over ``overlap`` pixels."""
    ramp = blend_ramp(tile, overlap, device)
    return ramp[:, None] * ramp[None, :]


@torch.no_grad()
def translate_tiled(
    fn: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    tile: int = 1024,
    overlap: int = 128,
    batch_size: int = 4,
    *,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Translate one large image (``1 x C x H x W``) in overlapping tiles, blended linearly.

    The generators are fully convolutional (paper section 4.4), so a large image could be
    translated in one pass; tiling keeps memory bounded by ``batch_size`` tiles of
    ``tile x tile`` pixels. Neighbouring tiles overlap by ``overlap`` pixels and are blended with
    weights that ramp down towards each tile's border, so no seams show. Images no larger than a
    tile are translated in one pass.

    Tiles are streamed: each is cut from ``image`` when its batch runs (the image is extended past
    its right and bottom edges by reflection, or replication when it is small, by indexing, never
    by copying it), and blended into a band one tile high; the band's finished rows are normalised
    and written to the output. Memory beyond the input and output images is the tile batch and the band.

    Args:
        fn: translates a batch of tiles in [-1, 1] (float32).
        image: ``1 x C x H x W``, float in [-1, 1], or ``uint8`` pixels (converted tile by tile).
        tile: side of the square tiles.
        overlap: pixels shared by neighbouring tiles, in ``[0, tile)``.
        batch_size: tiles per call of ``fn``.
        dtype: of the ``1 x C_out x H x W`` result: float (values in [-1, 1]), or ``torch.uint8``
            for pixels, rounded as images are saved (a quarter of the memory).
    """
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"translate_tiled takes one image shaped (1, C, H, W); got {tuple(image.shape)}")
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(f"overlap must be in [0, tile) and tile positive; got overlap={overlap}, tile={tile}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    _, _, h, w = image.shape
    if h <= tile and w <= tile:
        y = fn(_as_input(image))
        out = torch.empty(y.shape, dtype=dtype, device=y.device)
        _store(out, y)
        return out
    stride = tile - overlap
    padded = [tile + math.ceil(max(side - tile, 0) / stride) * stride for side in (h, w)]
    reflect = max(padded[0] - h, padded[1] - w) < min(h, w)
    rows, cols = (_extension(side, size, reflect, image.device) for side, size in zip((h, w), padded))
    ramp = blend_ramp(tile, overlap, image.device)
    window = ramp[:, None] * ramp[None, :]
    starts = [range(0, size - tile + 1, stride) for size in padded]
    # The blended weights are separable: their sum over tiles is (sum of row ramps) x (sum of column ramps).
    row_sum, col_sum = (torch.zeros(size, device=image.device) for size in padded)
    for sums, begins in zip((row_sum, col_sum), starts):
        for begin in begins:
            sums[begin : begin + tile] += ramp
    band: torch.Tensor | None = None
    out = torch.empty(0)
    for k, y0 in enumerate(starts[0]):
        positions = list(starts[1])
        for first in range(0, len(positions), batch_size):
            xs = positions[first : first + batch_size]
            tiles = torch.stack([image[0][:, rows[y0 : y0 + tile]][:, :, cols[x0 : x0 + tile]] for x0 in xs])
            y = fn(_as_input(tiles)).float() * window
            if band is None:
                band = torch.zeros(y.shape[1], tile, padded[1], device=y.device)
                out = torch.empty(1, y.shape[1], h, w, dtype=dtype, device=y.device)
            for x0, t in zip(xs, y):
                band[:, :, x0 : x0 + tile] += t
        last = k == len(starts[0]) - 1
        done = tile if last else stride  # rows no later tile reaches
        finished = min(y0 + done, h) - y0
        if finished > 0:
            weights = (row_sum[y0 : y0 + finished, None] * col_sum[None, :w]).to(band.device)
            _store(out[..., y0 : y0 + finished, :], (band[:, :finished, :w] / weights)[None])
        if not last:
            band = torch.cat([band[:, stride:], torch.zeros_like(band[:, :stride])], 1)
    return out


def _as_input(x: torch.Tensor) -> torch.Tensor:
    """Pixels (``uint8``) to float32 in [-1, 1], as images are read; float tensors unchanged."""
    return x.float() / 127.5 - 1.0 if x.dtype == torch.uint8 else x


def _extension(size: int, padded: int, reflect: bool, device: torch.device) -> torch.Tensor:
    """Indices of rows (or columns) ``0 .. padded-1`` of an image of ``size`` extended past its end."""
    i = torch.arange(padded, device=device)
    beyond = 2 * (size - 1) - i if reflect else torch.full_like(i, size - 1)
    return torch.where(i < size, i, beyond)


def _store(out: torch.Tensor, y: torch.Tensor) -> None:
    """Copy ``y`` (float in [-1, 1]) into ``out``: as it is, or as ``uint8`` pixels rounded as images are saved."""
    if out.shape != y.shape:
        raise ValueError(f"out is shaped {tuple(out.shape)}; the translation is {tuple(y.shape)}")
    if out.dtype == torch.uint8:
        out.copy_(((y.clamp(-1, 1) + 1) * 127.5).round())
    else:
        out.copy_(y)
