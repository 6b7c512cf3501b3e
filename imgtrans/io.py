"""Files and images: atomic writes, and image files <-> tensors in imgtrans's convention.

A leaf module: every file imgtrans writes goes through [atomic_write][imgtrans.io.atomic_write],
and every image it reads or writes through the functions here.

- **Atomic writes.** Data goes to ``.NAME.tmp-PID`` beside its destination (shortened, with a hash
  of the name, where the file system's name limit needs it), is flushed and fsynced and renamed
  over it, so a crash, a kill or a full disk leaves the old file or the new one, never a mix;
  a failure is one line saying what was kept ([WriteError][imgtrans.io.WriteError]). Folders are
  written the same way, whole ([atomic_folder][imgtrans.io.atomic_folder]). Nothing a user
  owns is replaced unless asked ([refuse_existing][imgtrans.io.refuse_existing]). A temporary
  whose writer has died is removed by [remove_stale_temporaries][imgtrans.io.remove_stale_temporaries].
- **Images** are ``C x H x W`` float tensors in $[-1, 1]$. Every mode Pillow opens is read: 8-bit
  modes are converted by Pillow, 16- and 32-bit integer and floating-point images are scaled to
  the full range rather than clipped (a 16-bit PNG is not 98% white), palettes and CMYK become
  RGB. Pillow's decompression-bomb guard stays on; ``IMGTRANS_MAX_IMAGE_PIXELS`` raises it.
  Images are turned the way their EXIF orientation says ([upright][imgtrans.io.upright]), as
  viewers show them, wherever imgtrans reads them (training, translate, eval, the app).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import warnings
from pathlib import Path
from typing import Callable, Iterator, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

PathLike = Union[str, os.PathLike]
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
CHANNEL_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
MAX_PIXELS_VARIABLE = "IMGTRANS_MAX_IMAGE_PIXELS"

_TEMPORARY = re.compile(r"^\..+\.(tmp|part)-(\d+)$")
# Modes whose samples do not fit in 8 bits, with the value that maps to white.
# EXIF orientations (tag 0x0112) that turn the picture a quarter, so that width and height swap.
_ORIENTATION, _QUARTER_TURNS = 0x0112, (5, 6, 7, 8)
_DEEP_MODES = {"I;16": 65535, "I;16L": 65535, "I;16B": 65535, "I;16N": 65535, "I": None, "F": None}


# ------------------------------------------------------------------------------------------ files
class WriteError(OSError):
    """A failed write (a full disk...): one line saying what was kept; ``strerror`` is the system's reason."""

    def __init__(self, errno_: int | None, strerror: str, filename: str, message: str) -> None:
        super().__init__(errno_, strerror, filename)
        self.message = message

    def __str__(self) -> str:
        return self.message


def temporary_path(path: PathLike, kind: str = "tmp") -> Path:
    """``.NAME.KIND-PID`` beside ``path``: the name every writer of imgtrans uses for unfinished files.

    A name too long for the folder's file system (255 bytes on most) is shortened, keeping a
    hash of the whole name so two destinations never share a temporary name.
    """
    path = Path(path)
    suffix = f".{kind}-{os.getpid()}"
    name = f".{path.name}{suffix}"
    limit = _name_limit(path.parent)
    if len(os.fsencode(name)) <= limit:
        return path.with_name(name)
    tail = f"~{hashlib.sha256(os.fsencode(path.name)).hexdigest()[:12]}{suffix}"
    stem, budget = path.name, limit - len(os.fsencode(f".{tail}"))
    while len(os.fsencode(stem)) > budget:
        stem = stem[:-1]
    return path.with_name(f".{stem}{tail}")


def _name_limit(folder: Path) -> int:
    """The longest file name (bytes) the file system of ``folder`` (or its nearest existing parent) takes."""
    with contextlib.suppress(OSError, ValueError, AttributeError, StopIteration):
        return int(os.pathconf(next(p for p in (folder, *folder.parents) if p.exists()), "PC_NAME_MAX"))
    return 255


def refuse_existing(path: PathLike, overwrite: bool, what: str = "") -> None:
    """Refuse to replace ``path`` unless ``overwrite``: the one check of every writer of a user's file or folder.

    An empty folder counts as absent. The message names ``overwrite=True``; its ``cli_message``
    names ``--overwrite`` (the command line prints that one).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
    """
    path = Path(path)
    if overwrite or not (path.exists() or path.is_symlink()) or (path.is_dir() and not any(path.iterdir())):
        return
    shown = f"{what} {path}".strip()
    kept = f"{shown} already exists and was left as it is; pass"
    error = FileExistsError(f"{kept} overwrite=True to replace it")
    error.cli_message = f"{kept} --overwrite to replace it, or choose another name"
    raise error


def atomic_write(path: PathLike, data: bytes | str | Callable[[Path], None], *, overwrite: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically: to a temporary file beside it, flushed and fsynced, then renamed.

    Args:
        path: the destination; its folder is created if needed.
        data: bytes, text (UTF-8), or a function that writes the file at the path it is given.
        overwrite: replace an existing ``path``; ``False`` refuses with
            [refuse_existing][imgtrans.io.refuse_existing] before anything is written.

    Raises:
        WriteError: the write failed (a full or read-only disk); ``path`` is left as it was and
            the temporary file is removed, and the message says so.
    """
    path = Path(path)
    refuse_existing(path, overwrite)
    existed = path.exists()
    temporary = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(data):
            data(temporary)
        else:
            temporary.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        with open(temporary, "rb+") as file:
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
        fsync_folder(path.parent)
    except OSError as error:
        if isinstance(error, WriteError):
            raise
        kept = f"the previous {path.name} is kept whole" if existed else f"no {path.name} was created"
        reason = error.strerror or str(error)
        message = f"cannot write {path}: {reason}; nothing was written, {kept}"
        raise WriteError(error.errno, reason, str(path), message) from None
    finally:
        temporary.unlink(missing_ok=True)
    return path


@contextlib.contextmanager
def atomic_folder(path: PathLike, *, overwrite: bool = False, replaceable: Callable[[str], bool] | None = None,
                  what: str = "") -> Iterator[Path]:
    """Write a folder atomically: yield a temporary sibling to fill, then swap it into place.

    An existing folder is exchanged with the new one in one step (``renameat2`` with
    ``RENAME_EXCHANGE`` on Linux; elsewhere it is moved aside first) and removed only once the new
    one is in place, so a crash leaves the old folder or the new one, never a mix. A failure in the
    ``with`` body removes the temporary folder and leaves ``path`` as it was.

    Args:
        path: the folder to write.
        overwrite: replace an existing, non-empty ``path`` (see [refuse_existing][imgtrans.io.refuse_existing]).
        replaceable: which names in an existing folder this writer may discard; anything else (the
            user's own files) is refused even with ``overwrite``. ``None``: any name.
        what: how messages name the folder (``"the model folder"``).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        ValueError: ``path`` is a file, or holds files ``replaceable`` does not name.
        WriteError: a write failed; nothing changed at ``path``.
    """
    path = Path(path)
    shown = f"{what} {path}".strip()
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a folder; choose a folder name that does not exist yet")
    refuse_existing(path, overwrite, what)
    if replaceable is not None and path.is_dir():
        foreign = sorted(p.name for p in path.iterdir() if not (replaceable(p.name) or _TEMPORARY.match(p.name)))
        if foreign:
            raise ValueError(
                f"{shown} holds files imgtrans did not write ({', '.join(foreign[:5])}{' ...' * (len(foreign) > 5)}); "
                "nothing was changed. Move them elsewhere, or choose another folder"
            )
    existed = path.is_dir()
    temporary = temporary_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir()
        yield temporary
        fsync_folder(temporary)
        if existed:
            _swap_folders(temporary, path)  # ``temporary`` now holds the old folder
        else:
            os.replace(temporary, path)
        fsync_folder(path.parent)
    except OSError as error:
        reason = error.strerror or str(error)
        where = f" ({Path(error.filename).name})" if getattr(error, "filename", None) else ""
        kept = f"the previous {path.name} is kept as it was" if existed else f"no {path.name} was created"
        message = f"cannot write {shown}{where}: {reason}; nothing was written, {kept}"
        raise WriteError(error.errno, reason, str(path), message) from None
    finally:  # (a symbolic link swapped out is removed as a link: what it points to is never touched)
        temporary.unlink() if temporary.is_symlink() else shutil.rmtree(temporary, ignore_errors=True)


def _swap_folders(new: Path, old: Path) -> None:
    """Put ``new`` at ``old``'s name and ``old`` at ``new``'s: atomically where the kernel can."""
    if _rename_exchange(new, old):
        return
    aside = temporary_path(old, "old")  # never removed by remove_stale_temporaries: it may be the only copy
    os.replace(old, aside)
    try:
        os.replace(new, old)
    except OSError:
        os.replace(aside, old)
        raise
    os.replace(aside, new)


def _rename_exchange(a: Path, b: Path) -> bool:
    """``renameat2(a, b, RENAME_EXCHANGE)``; ``False`` where the system or file system has no such call."""
    try:
        import ctypes

        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_cwd, exchange = -100, 2
    if renameat2(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def fsync_folder(folder: PathLike) -> None:
    """Flush a folder's entries (a rename in it) to disk; a no-op where folders cannot be opened."""
    with contextlib.suppress(OSError):
        descriptor = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder: PathLike) -> list[Path]:
    """Remove the unfinished files or folders (``.NAME.tmp-PID``, ``.NAME.part-PID``) of writers that have died.

    Files of a process that is still running are left alone. Returns what was removed.
    """
    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        match = _TEMPORARY.match(path.name)
        if match and not process_alive(int(match.group(2))):
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def file_sha256(path: PathLike) -> str:
    """The SHA-256 of a file, as 64 hex digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def image_files(folder: PathLike) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


# ----------------------------------------------------------------------------------------- images
def read_image(path: PathLike, channels: int) -> Image.Image:
    """Open an image file fully, in a form [image_to_tensor][imgtrans.io.image_to_tensor] turns into ``channels``.

    The image is [upright][imgtrans.io.upright] (its EXIF orientation applied). 8-bit images come
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
    """``(width, height)`` of an image file as [read_image][imgtrans.io.read_image] gives it, from its header."""
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
    """A loaded image in a mode [image_to_tensor][imgtrans.io.image_to_tensor] turns into ``channels`` (see [read_image][imgtrans.io.read_image])."""
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
    """An image from [read_image][imgtrans.io.read_image] as a ``C x H x W`` float tensor in $[-1, 1]$.

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
