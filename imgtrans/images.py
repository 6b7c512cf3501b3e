"""Images: image files <-> tensors in imgtrans's convention. A leaf module beside [imgtrans.io][].

Images are ``C x H x W`` float tensors in $[-1, 1]$. Every mode Pillow opens is read: 8-bit modes
are converted by Pillow, 16- and 32-bit integer and floating-point images are scaled to the full
range rather than clipped (a 16-bit PNG is not 98% white), palettes and CMYK become RGB. Pillow's
decompression-bomb guard stays on; ``IMGTRANS_MAX_IMAGE_PIXELS`` raises it. Images are turned the
way their EXIF orientation says ([upright][imgtrans.images.upright]), as viewers show them,
wherever imgtrans reads them (training, translate, eval, the app). Images are saved through
[atomic_write][imgtrans.io.atomic_write].
"""

from __future__ import annotations

import contextlib
import os
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from imgtrans.io import PathLike, atomic_write

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
CHANNEL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
MAX_PIXELS_VARIABLE = "IMGTRANS_MAX_IMAGE_PIXELS"
# EXIF orientations (tag 0x0112) that turn the picture a quarter, so that width and height swap.
_ORIENTATION, _QUARTER_TURNS = 0x0112, (5, 6, 7, 8)
# Modes whose samples do not fit in 8 bits, with the value that maps to white.
_DEEP_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": None, "F": None}


def image_files(folder: PathLike) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def read_image(path: PathLike, channels: int) -> Image.Image:
    """Open an image file fully, in a form [image_to_tensor][imgtrans.images.image_to_tensor] turns into ``channels``.

    The image is [upright][imgtrans.images.upright] (its EXIF orientation applied). 8-bit images come
    back as ``L``, ``RGB`` or ``RGBA`` (Pillow's conversions: palettes
    expanded, CMYK and YCbCr to RGB, luma for gray). Deeper single-band images (16- and 32-bit
    integers, floats) come back as mode ``F`` scaled to $[0, 1]$, which crops and resizes keep.

    Raises:
        ValueError: unreadable, truncated or not an image; larger than the decompression-bomb
            limit (the message says how to raise it); a float image outside $[0, 1]$.
    """
    if channels not in CHANNEL_MODES:
        raise ValueError(f"images can have 1, 3 or 4 channels; the model asks for {channels}")
    path = Path(path)
    with _opened(path) as image:
        image.load()
        return as_channels(upright(image), channels, str(path))


def image_size(path: PathLike) -> tuple[int, int]:
    """``(width, height)`` of an image file as [read_image][imgtrans.images.read_image] gives it, from its header."""
    with _opened(Path(path)) as image:
        w, h = image.size
        return (h, w) if _orientation(image) in _QUARTER_TURNS else (w, h)


def upright(image: Image.Image) -> Image.Image:
    """``image`` turned and mirrored as its EXIF orientation says, the way viewers show it.

    Cameras and phones store the pixels as the sensor read them and record the turn in EXIF
    (tag 0x0112); a model must see the picture its user sees, and its output must match it.
    An image without an orientation (or with the identity, 1) is returned as it is, not copied.
    """
    if _orientation(image) in (None, 1):
        return image
    try:
        return ImageOps.exif_transpose(image)
    except (OSError, SyntaxError, ValueError) as error:  # a damaged EXIF block: say so, do not guess
        raise ValueError(f"the image's EXIF orientation cannot be applied ({_first_line(error)}); re-save the image")


def _orientation(image: Image.Image) -> int | None:
    """The EXIF orientation of ``image`` (1-8), or ``None``; a damaged EXIF block counts as none."""
    try:
        value = image.getexif().get(_ORIENTATION)
    except (OSError, SyntaxError, ValueError, TypeError):
        return None
    return value if isinstance(value, int) and 1 <= value <= 8 else None


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    """``Image.open`` with the pixel limit of ``IMGTRANS_MAX_IMAGE_PIXELS``, its failures as one-line ``ValueError``s."""
    limit = _max_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, limit
            try:
                with Image.open(path) as image:
                    yield image
            finally:
                Image.MAX_IMAGE_PIXELS = previous
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ValueError(
            f"{path} is larger than the {limit:,} pixels imgtrans opens ({_first_line(error)}); this guards "
            f"against decompression bombs. If you trust the file, raise the limit: {MAX_PIXELS_VARIABLE}=N"
        ) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise ValueError(
            f"cannot read image {path}: {_first_line(error)}. Remove or replace the file (it may be truncated "
            "or not an image)"
        ) from None


def _max_pixels() -> int:
    value = os.environ.get(MAX_PIXELS_VARIABLE)
    if value is None:
        return 2 * Image.MAX_IMAGE_PIXELS if Image.MAX_IMAGE_PIXELS else 2**62
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{MAX_PIXELS_VARIABLE} must be a whole number of pixels; got {value!r}") from None


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def as_channels(image: Image.Image, channels: int, source: str = "the image") -> Image.Image:
    """A loaded image in a mode [image_to_tensor][imgtrans.images.image_to_tensor] turns into ``channels`` (see [read_image][imgtrans.images.read_image])."""
    if image.mode in _DEEP_MODES:
        array = np.asarray(image, dtype=np.float64)
        white = _DEEP_MODES[image.mode]
        if white is None and image.mode == "I":  # 32-bit integers: 16-bit data when it fits (PNG), else 32-bit
            if array.min(initial=0) < 0:
                raise ValueError(f"{source} is a signed 32-bit image with negative values; save it as 8 or 16 bits")
            white = 65535 if array.max(initial=0) <= 65535 else 2**32 - 1
        elif white is None:  # floating point: must already be in [0, 1]
            if not np.isfinite(array).all() or array.min(initial=0) < 0 or array.max(initial=0) > 1:
                raise ValueError(
                    f"{source} is a floating-point image with values outside [0, 1] (or NaN); imgtrans reads "
                    "float images in [0, 1]: rescale it, or save it as an 8- or 16-bit image"
                )
            white = 1
        return Image.fromarray((array / white).astype(np.float32), mode="F")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    target = CHANNEL_MODES[channels]
    for route in ((), ("RGBA",), ("RGB",)):  # Pillow converts some modes (LAB to L, La) only through RGB
        try:
            converted = image
            for mode in (*route, target):
                converted = converted.convert(mode)
            return converted
        except ValueError:
            continue
    raise ValueError(f"{source} has the image mode {image.mode}, which Pillow cannot convert to {target}; save it as RGB")


def convert_channels(image: Image.Image, channels: int) -> Image.Image:
    """``image`` in the 8-bit mode of ``channels`` (an ``F`` image is kept: the tensor step expands it)."""
    return image if image.mode == "F" else image.convert(CHANNEL_MODES[channels])


def image_to_tensor(image: Image.Image, channels: int | None = None) -> torch.Tensor:
    """An image from [read_image][imgtrans.images.read_image] as a ``C x H x W`` float tensor in $[-1, 1]$.

    A single-band ``F`` image is repeated to ``channels`` (with an opaque alpha for 4).
    """
    if image.mode == "F":
        gray = torch.from_numpy(np.array(image, dtype=np.float32)).clamp(0, 1)[None] * 2 - 1
        channels = channels or 1
        if channels == 4:
            return torch.cat([gray.expand(3, -1, -1), torch.ones_like(gray)])
        return gray.expand(channels, -1, -1).clone()
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[..., None]
    return torch.from_numpy(array.transpose(2, 0, 1).copy()) / 127.5 - 1.0


def tensor_to_image(image: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> Image.Image:
    """A ``C x H x W`` tensor (1, 3 or 4 channels, values in ``value_range``) as an 8-bit PIL image."""
    low, high = value_range
    unit = ((image.detach().float().cpu() - low) / (high - low)).clamp(0, 1)
    array = (unit * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if array.shape[-1] not in (1, 3, 4):
        raise ValueError(f"cannot save an image with {array.shape[-1]} channels; images have 1, 3 or 4")
    return Image.fromarray(array[..., 0] if array.shape[-1] == 1 else np.ascontiguousarray(array))


def save_pixels(pixels: torch.Tensor, path: PathLike, *, overwrite: bool = True) -> Path:
    """Save ``C x H x W`` uint8 pixels atomically as PNG, with no float copy (for the largest images)."""
    array = pixels.permute(1, 2, 0).numpy()
    picture = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else np.ascontiguousarray(array))
    return atomic_write(path, lambda temporary: picture.save(temporary, format="PNG"), overwrite=overwrite)


def save_image(image: torch.Tensor, path: PathLike, *, overwrite: bool = True) -> Path:
    """Save a ``C x H x W`` image in $[-1, 1]$ atomically (``atomic_write``), in the format ``path``'s suffix names."""
    path = Path(path)
    picture = tensor_to_image(image)
    image_format = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    return atomic_write(path, lambda temporary: picture.save(temporary, format=image_format), overwrite=overwrite)
