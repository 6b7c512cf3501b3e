"""A dataset's ``.tar.gz``, checked before anything is written and extracted so that it appears whole or not at all.

An archive is refused, before anything is written, when a member would land outside the
dataset's folder (``../``, absolute paths), is a link, a device or a sparse file, or when the
archive holds more than its catalogue entry allows ([Bounds][imgtrans.data.archives.Bounds]):
more members, or more expanded bytes. The bounds are read from the members' headers (the sizes
tarfile writes) as the archive is read, so a small archive that would expand to gigabytes (a
*decompression bomb*) is refused at the member that crosses the bound, having written nothing.
Extraction streams the same members through the same checks, under Python's ``"data"`` filter.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MARKER = ".imgtrans-dataset.json"
"""The file written inside a dataset's folder once it is completely extracted."""

CORRUPT = (tarfile.TarError, EOFError, zlib.error, OSError)
"""What reading a truncated or damaged ``.tar.gz`` raises."""


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


def check_archive(archive: Path, name: str, bounds: Bounds) -> int:
    """Read every member of a ``.tar.gz`` to its end; returns the number of files.

    Reading through to the end checks the gzip CRC and length, so truncation and corruption are
    found here, before anything is extracted.

    Raises:
        tarfile.TarError, EOFError, zlib.error, OSError: a truncated or corrupt archive.
        UnsafeArchiveError: a member outside ``name/``, an absolute or ``..`` path, a link, a device,
            or (ArchiveTooLargeError) more members or bytes than ``bounds``.
    """
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
            f"{where} is a link (to {member.linkname!r}); pix2pix datasets hold only images, refusing to extract"
        )
    if member.issparse():
        raise UnsafeArchiveError(f"{where} is a sparse file; pix2pix datasets hold only images, refusing to extract")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"{where} is a device or special file; refusing to extract the archive")
    if path.parts[0] != name:
        raise UnsafeArchiveError(f"{where} is not inside {name}/, where the dataset must unpack; refusing to extract")


def splits_of(folder: Path) -> list[str]:
    """The split folders of an extracted dataset, sorted."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def extract_atomically(archive: Path, base: Path, name: str, info: dict, bounds: Bounds) -> Path:
    """Extract ``archive`` (holding ``name/...``) to ``base/name`` so that it appears complete or not at all.

    The archive is unpacked into a hidden sibling, ``base/.name.extracting-XXXX``, member by
    member through the same checks as [check_archive][imgtrans.data.archives.check_archive]; the
    marker file is written inside the dataset's folder there, and only then is that folder renamed
    to ``base/name``. A process killed on the way leaves only the hidden folder, which the next
    download removes.
    """
    staging = base / f".{name}.extracting-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in _members(tar, archive, name, bounds):
                tar.extract(member, staging, filter="data")
        folder = staging / name
        if not folder.is_dir() or not splits_of(folder):
            raise UnsafeArchiveError(f"{archive.name} does not hold {name}/ with split folders (train/, test/...)")
        (folder / MARKER).write_text(json.dumps({"name": name, **info}, indent=2) + "\n")
        target = base / name
        old = None
        if target.exists():  # a complete copy being replaced (overwrite): move it aside first
            old = base / f".{name}.replaced-{uuid.uuid4().hex[:8]}"
            os.rename(target, old)
        os.rename(folder, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)
