"""A dataset's ``.tar.gz`` or ``.zip``, checked before anything is written and extracted so that it appears whole or not at all.

An archive is refused, before anything is written, when a member would land outside the
dataset's folder (``../``, absolute paths), is a link, a device or a sparse file, or when the
archive holds more than its catalogue entry allows ([Bounds][imgtrans.data.archives.Bounds]):
more members, or more expanded bytes. The bounds are read from the members' headers (the sizes
tarfile writes) as the archive is read, so a small archive that would expand to gigabytes (a
*decompression bomb*) is refused at the member that crosses the bound, having written nothing.
Extraction streams the same members through the same checks, under Python's ``"data"`` filter.

CycleGAN's datasets come as ``.zip`` files: their members are read as the same records (a zip
entry whose Unix mode is a link is a link) and go through the same checks; reading each one to its
end checks its CRC, and a member is written only by copying its checked stream into place.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tarfile
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MARKER = ".imgtrans-dataset.json"
"""The file written inside a dataset's folder once it is completely extracted."""

CORRUPT = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError)
"""What reading a truncated or damaged ``.tar.gz`` or ``.zip`` raises."""


class UnsafeArchiveError(ValueError):
    """An archive holds a member that would be written outside its folder, a link, or a device."""


class ArchiveTooLargeError(UnsafeArchiveError):
    """An archive holds more members, or expands to more bytes, than its catalogue entry allows."""


@dataclass(frozen=True)
class Bounds:
    """What an archive may hold: ``members`` entries (files and folders), ``expanded`` bytes of files.

    ``expected`` says what the catalogue announces, for messages (``"29 MB, 606 images"``).
    """

    members: int
    expanded: int
    expected: str

    def check(self, archive: Path, member: tarfile.TarInfo, count: int, total: int) -> None:
        """Raise [ArchiveTooLargeError][imgtrans.data.archives.ArchiveTooLargeError] once ``count`` members or
        ``total`` bytes, ``member`` included, are beyond the bounds."""
        if count > self.members:
            raise ArchiveTooLargeError(
                f"{archive.name} holds more than {self.members:,} members, far more than its catalogue entry "
                f"({self.expected}); it is not that dataset: refusing to extract it, nothing was kept"
            )
        if total > self.expanded:
            raise ArchiveTooLargeError(
                f"{archive.name} expands to more than {self.expanded / 2**20:,.0f} MiB (member {member.name!r} holds "
                f"{member.size / 2**20:,.1f} MiB), far more than its catalogue entry ({self.expected}); it is not "
                "that dataset: refusing to extract it, nothing was kept"
            )


def _members(tar: tarfile.TarFile, archive: Path, name: str, bounds: Bounds):
    """The members of ``tar``, each checked (safe, within ``bounds``) before it is handed out."""
    count = total = 0
    for member in tar:
        count += 1
        total += member.size if member.isfile() else 0
        unsafe_member(member, name)
        bounds.check(archive, member, count, total)
        yield member


def _zip_member(info: zipfile.ZipInfo) -> tarfile.TarInfo:
    """A zip entry as the record the checks read: its name, size, and kind (file, folder or link)."""
    member = tarfile.TarInfo(info.filename.rstrip("/") if info.is_dir() else info.filename)
    member.size = 0 if info.is_dir() else info.file_size
    kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the zip records no Unix file type (a plain file)
    member.type = (tarfile.DIRTYPE if info.is_dir() else tarfile.SYMTYPE if kind == stat.S_IFLNK
                   else tarfile.REGTYPE if kind in (0, stat.S_IFREG) else tarfile.FIFOTYPE)  # fmt: skip
    return member


def _zip_members(zf: zipfile.ZipFile, archive: Path, name: str, bounds: Bounds):
    """``(entry, record)`` for each entry of ``zf``, each checked (safe, within ``bounds``) before it is handed out."""
    count = total = 0
    for info in zf.infolist():
        member = _zip_member(info)
        count += 1
        total += member.size if member.isfile() else 0
        unsafe_member(member, name)
        bounds.check(archive, member, count, total)
        yield info, member


def _check_zip(archive: Path, name: str, bounds: Bounds) -> int:
    files = 0
    with zipfile.ZipFile(archive) as zf:
        for info, member in _zip_members(zf, archive, name, bounds):
            if member.isfile():
                with zf.open(info) as stream:  # read to its end: the CRC and the declared size are checked
                    while stream.read(1 << 20):
                        pass
                files += 1
    if files == 0:
        raise zipfile.BadZipFile(f"{archive.name} holds no files")
    return files


def _extract_zip(archive: Path, staging: Path, name: str, bounds: Bounds) -> None:
    with zipfile.ZipFile(archive) as zf:
        for info, member in _zip_members(zf, archive, name, bounds):
            target = staging / member.name
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as stream, open(target, "xb") as out:
                shutil.copyfileobj(stream, out, 1 << 20)


def check_archive(archive: Path, name: str, bounds: Bounds) -> int:
    """Read every member of a ``.tar.gz`` to its end; returns the number of files.

    Reading through to the end checks the gzip CRC and length, so truncation and corruption are
    found here, before anything is extracted.

    Raises:
        tarfile.TarError, EOFError, zlib.error, OSError: a truncated or corrupt archive.
        UnsafeArchiveError: a member outside ``name/``, an absolute or ``..`` path, a link, a device,
            or (ArchiveTooLargeError) more members or bytes than ``bounds``.
    """
    if archive.suffix == ".zip":
        return _check_zip(archive, name, bounds)
    files = 0
    with tarfile.open(archive, mode="r:gz") as tar:
        for member in _members(tar, archive, name, bounds):
            if member.isfile():
                stream = tar.extractfile(member)
                while stream is not None and stream.read(1 << 20):
                    pass
                files += 1
    if files == 0:
        raise tarfile.TarError(f"{archive.name} holds no files")
    return files


def unsafe_member(member: tarfile.TarInfo, name: str) -> None:
    """Raise [UnsafeArchiveError][imgtrans.data.archives.UnsafeArchiveError] unless ``member`` is a plain file
    or folder under ``name/``."""
    path = PurePosixPath(member.name)
    where = f"archive member {member.name!r}"
    if path.is_absolute() or member.name.startswith(("/", "\\")) or ":" in path.parts[0]:
        raise UnsafeArchiveError(f"{where} has an absolute path; refusing to extract the archive")
    if ".." in path.parts:
        raise UnsafeArchiveError(f"{where} climbs out of the target folder with '..'; refusing to extract the archive")
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(
            f"{where} is a link (to {member.linkname!r}); the datasets hold only images, refusing to extract"
        )
    if member.issparse():
        raise UnsafeArchiveError(f"{where} is a sparse file; the datasets hold only images, refusing to extract")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"{where} is a device or special file; refusing to extract the archive")
    if path.parts[0] != name:
        raise UnsafeArchiveError(f"{where} is not inside {name}/, where the dataset must unpack; refusing to extract")


def splits_of(folder: Path) -> list[str]:
    """The split folders of an extracted dataset, sorted."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def extract_atomically(
    archive: Path, base: Path, name: str, info: dict, bounds: Bounds, folder_name: str | None = None
) -> Path:
    """Extract ``archive`` (holding ``name/...``) to ``base/name`` so that it appears complete or not at all.

    The archive is unpacked into a hidden sibling, ``base/.name.extracting-XXXX``, member by
    member through the same checks as [check_archive][imgtrans.data.archives.check_archive]; the
    marker file is written inside the dataset's folder there, and only then is that folder renamed
    to ``base/name``. A process killed on the way leaves only the hidden folder, which the next
    download removes. ``folder_name``: the dataset's folder under ``base`` when it is not ``name``
    (CycleGAN's ``facades.zip`` becomes ``facades-unpaired/`` beside pix2pix's ``facades/``).
    """
    folder_name = folder_name or name
    staging = base / f".{folder_name}.extracting-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        if archive.suffix == ".zip":
            _extract_zip(archive, staging, name, bounds)
        else:
            with tarfile.open(archive, mode="r:gz") as tar:
                for member in _members(tar, archive, name, bounds):
                    tar.extract(member, staging, filter="data")
        folder = staging / name
        if not folder.is_dir() or not splits_of(folder):
            raise UnsafeArchiveError(f"{archive.name} does not hold {name}/ with split folders (train/, test/...)")
        (folder / MARKER).write_text(json.dumps({"name": folder_name, **info}, indent=2) + "\n")
        target = base / folder_name
        old = None
        if target.exists():  # a complete copy being replaced (overwrite): move it aside first
            old = base / f".{folder_name}.replaced-{uuid.uuid4().hex[:8]}"
            os.rename(target, old)
        os.rename(folder, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
