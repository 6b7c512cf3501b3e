"""The pix2pix datasets in one command: a catalogue, a resumable download, and a safe extraction.

The reference implementation fetches its paired datasets with
``datasets/download_pix2pix_dataset.sh NAME``: ``wget`` of ``NAME.tar.gz`` from
``http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/``, then ``tar -zxvf``. This module does the
same with the guarantees a script does not give:

- **resumable**: the archive is written to ``NAME.tar.gz.part`` and a dropped connection is
  resumed with an HTTP ``Range`` request, within the same call (a few tries) and on the next call;
- **atomic**: the archive gets its final name only once its length is complete, and the dataset
  is extracted into a hidden sibling folder that is renamed into place with a completion marker
  inside, so a killed extraction never leaves a folder that looks like a dataset;
- **verified**: every member of the archive is read to its end before extraction, so a truncated
  or corrupt archive (gzip CRC, tar headers) is detected; it is deleted and fetched once more;
- **safe**: members that would land outside the dataset's folder (``../``, absolute paths), links
  and device files are refused before anything is written, and extraction also runs under
  Python's ``tarfile`` ``"data"`` filter.

Datasets go to ``$HF_HOME/imgtrans/datasets/NAME/`` beside the zoo's models (or ``root``), each
with its splits as the archive has them (``train/``, ``val/``, ``test/``). Training and
evaluation take them by name: [resolve_data][imgtrans.data.downloads.resolve_data] turns ``"facades"``
into the train split's folder and ``"facades/test"`` into the test split's.

| variable | effect |
| --- | --- |
| ``IMGTRANS_DATASETS_URL`` | a mirror: a base address under which ``NAME.tar.gz`` is fetched |
| ``HF_HOME`` | root of the caches (datasets in ``$HF_HOME/imgtrans/datasets``) |
| ``HF_HUB_OFFLINE`` | ``1``: never use the network |
| ``IMGTRANS_DOWNLOAD_TIMEOUT`` | seconds a connection may stay silent (default 10) |
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tarfile
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Iterator

from tqdm.auto import tqdm

from imgtrans.hub import DownloadError, cache_dir, datasets_url, download_resumable
from imgtrans.registry import did_you_mean

MARKER = ".imgtrans-dataset.json"
"""The file written inside a dataset's folder once it is completely extracted."""


class UnsafeArchiveError(ValueError):
    """An archive holds a member that would be written outside its folder, a link, or a device."""


@dataclass(frozen=True)
class DatasetEntry:
    """One pix2pix dataset, as the reference implementation distributes it.

    Attributes:
        name: the archive's name, ``NAME.tar.gz``, and the folder it unpacks to.
        task: what A and B hold, e.g. ``"photo (A) | architectural labels (B)"``.
        direction: the direction of the paper's task on it (``--direction``).
        size: the archive's size as the reference server lists it.
        splits: the split folders in the archive, with their number of pairs where published.
        source: where the images come from, to cite.
        licence: terms to respect; ``None`` means the data can be fetched from the reference server.
        downloadable: ``False`` when the data must be obtained by the user (Cityscapes).
    """

    name: str
    task: str
    direction: str
    size: str
    splits: tuple[str, ...]
    source: str
    licence: str
    downloadable: bool = True

    @property
    def url(self) -> str:
        """Where ``NAME.tar.gz`` is fetched from: ``$IMGTRANS_DATASETS_URL/NAME.tar.gz`` or the reference's."""
        return datasets_url(self.name)


# Sizes are those of the reference server's listing (2018); pair counts from the reference's
# docs/datasets.md and the archives' split folders.
DATASETS: dict[str, DatasetEntry] = {
    d.name: d
    for d in (
        DatasetEntry(
            "facades",
            "photo (A) | architectural labels (B): labels -> photo is BtoA",
            "BtoA",
            "29 MB",
            ("train (400)", "val (100)", "test (106)"),
            "CMP Facade Database, Tylecek and Sara, GCPR 2013 (cmp.felk.cvut.cz/~tylecr1/facade)",
            "research use; cite the CMP Facade Database",
        ),
        DatasetEntry(
            "cityscapes",
            "photo (A) | semantic labels (B): labels -> photo is BtoA",
            "BtoA",
            "99 MB",
            ("train (2975)", "val (500)"),
            "Cityscapes, Cordts et al., CVPR 2016 (www.cityscapes-dataset.com)",
            "needs your own registration at https://www.cityscapes-dataset.com: download gtFine_trainvaltest.zip "
            "and leftImg8bit_trainvaltest.zip there and pair them with the reference's "
            "datasets/prepare_cityscapes_dataset.py; as the reference does, imgtrans does not download it",
            downloadable=False,
        ),
        DatasetEntry(
            "maps",
            "aerial photo (A) | Google map (B): aerial -> map is AtoB",
            "AtoB",
            "239 MB",
            ("train (1096)", "val (1098)"),
            "scraped from Google Maps around New York by the pix2pix authors",
            "map data and imagery (c) Google; research use",
        ),
        DatasetEntry(
            "edges2shoes",
            "HED edges (A) | shoe photo (B): edges -> photo is AtoB",
            "AtoB",
            "2.0 GB",
            ("train (49825)", "val (200)"),
            "UT Zappos50K, Yu and Grauman, CVPR 2014; edges by HED",
            "research use; cite UT Zappos50K",
        ),
        DatasetEntry(
            "edges2handbags",
            "HED edges (A) | handbag photo (B): edges -> photo is AtoB",
            "AtoB",
            "8.0 GB",
            ("train (138567)", "val (200)"),
            "Amazon handbags from the iGAN project, Zhu et al., ECCV 2016; edges by HED",
            "research use; cite iGAN",
        ),
        DatasetEntry(
            "night2day",
            "night (A) | day (B) of the same webcam: night -> day is AtoB (day -> night, BtoA)",
            "AtoB",
            "1.9 GB",
            ("train (17823)", "val (10)", "test (2287)"),
            "Transient Attributes, Laffont et al., SIGGRAPH 2014",
            "research use; cite Transient Attributes",
        ),
    )
}
"""The datasets of the reference's ``download_pix2pix_dataset.sh``, by name."""


def list_datasets() -> list[str]:
    """The catalogue's names, in the reference script's order of mention."""
    return list(DATASETS)


def dataset_entry(name: str) -> DatasetEntry:
    """The catalogue entry ``name``; an unknown name fails with the closest one and the full list."""
    try:
        return DATASETS[name]
    except KeyError:
        hint = did_you_mean(name, DATASETS, n=1)
        raise KeyError(f"no pix2pix dataset named {name!r}.{hint} The datasets are: {', '.join(DATASETS)}") from None


def datasets_dir(root: str | os.PathLike | None = None) -> Path:
    """Where datasets are kept: ``root`` when given, else ``$HF_HOME/imgtrans/datasets``."""
    return Path(root).expanduser() if root is not None else cache_dir() / "datasets"


def dataset_dir(name: str, root: str | os.PathLike | None = None) -> Path:
    """The folder of dataset ``name`` (it may not exist yet)."""
    return datasets_dir(root) / dataset_entry(name).name


def is_downloaded(name: str, root: str | os.PathLike | None = None) -> bool:
    """Whether dataset ``name`` is completely extracted under ``root`` (its marker is there)."""
    return (dataset_dir(name, root) / MARKER).is_file()


def splits_of(folder: Path) -> list[str]:
    """The split folders of an extracted dataset, sorted."""
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def resolve_data(value: str | os.PathLike, split: str = "train", root: str | os.PathLike | None = None) -> Path:
    """The folder a ``--data`` value names: an existing path as it is, or a downloaded dataset's split.

    Args:
        value: a folder or file (returned unchanged when it exists), ``"NAME"`` (its ``split``) or
            ``"NAME/SPLIT"``, with ``NAME`` from [DATASETS][imgtrans.data.downloads.DATASETS].
        split: the split a bare ``"NAME"`` means (``"train"``).
        root: where datasets were downloaded (default ``$HF_HOME/imgtrans/datasets``).

    Returns:
        The path; anything that is neither an existing path nor a dataset name is returned
        unchanged, so that the caller reports it as the missing folder it is.

    Raises:
        FileNotFoundError: a dataset name that is not downloaded yet, or a split it does not have.
    """
    path = Path(value)
    if path.exists() or path.is_absolute():
        return path
    name, _, wanted = str(value).strip("/").partition("/")
    if name not in DATASETS or "/" in wanted:
        return path
    entry, wanted = DATASETS[name], wanted or split
    folder = dataset_dir(name, root)
    if not is_downloaded(name, root):
        if not entry.downloadable:
            raise FileNotFoundError(f"{name} is not at {folder}: {entry.licence}")
        where = "" if root is None else f" --root {root}"
        raise FileNotFoundError(
            f"dataset {name!r} is not downloaded: run `imgtrans data download {name}{where}` "
            f"({entry.size}), or pass a folder of paired images"
        )
    if not (folder / wanted).is_dir():
        raise FileNotFoundError(
            f"dataset {name!r} has no split {wanted!r}; it has {', '.join(splits_of(folder))} "
            f"(e.g. {name}/{splits_of(folder)[0]})"
        )
    return folder / wanted


def download_dataset(
    name: str, root: str | os.PathLike | None = None, *, force: bool = False, keep_archive: bool = False
) -> Path:
    """Download and extract dataset ``name``; returns its folder. Does nothing if it is already there.

    Args:
        name: a name from [DATASETS][imgtrans.data.downloads.DATASETS].
        root: the folder to put it in (default ``$HF_HOME/imgtrans/datasets``).
        force: download and extract again over a complete copy.
        keep_archive: keep ``NAME.tar.gz`` in ``root/.downloads`` after extraction.

    Raises:
        ValueError: Cityscapes (it needs the user's registration), or a folder in the way that
            imgtrans did not make.
        DownloadError: offline, unreachable, cut short after every retry, or corrupt twice.
        UnsafeArchiveError: the archive holds members that escape its folder, or links.
    """
    entry = dataset_entry(name)
    if not entry.downloadable:
        raise ValueError(f"{name} cannot be downloaded by imgtrans: it {entry.licence}")
    base = datasets_dir(root)
    target = base / entry.name
    base.mkdir(parents=True, exist_ok=True)
    with _locked(base / f".{entry.name}.lock"):
        if (target / MARKER).is_file() and not force:
            return target
        if target.exists() and not (target / MARKER).is_file():
            raise ValueError(
                f"{target} exists but was not made by `imgtrans data download` (no {MARKER} in it); "
                "move it away, or download elsewhere with --root DIR"
            )
        _remove_stale(base, entry.name)
        archive = base / ".downloads" / f"{entry.name}.tar.gz"
        for attempt in range(2):  # a corrupt archive is deleted and fetched once more
            if not archive.is_file():
                download_resumable(entry.url, archive)
            try:
                members = check_archive(archive, entry.name)
                break
            except (tarfile.TarError, EOFError, zlib.error, OSError) as error:
                archive.unlink(missing_ok=True)
                if attempt == 1:
                    raise DownloadError(
                        f"{entry.url} gave a corrupt archive twice ({type(error).__name__}: {error}); "
                        "the server or mirror (IMGTRANS_DATASETS_URL) serves a damaged file"
                    ) from None
                print(f"{archive.name} is corrupt ({type(error).__name__}: {error}); downloading it again")
        extract_atomically(archive, base, entry.name, {"url": entry.url, "files": members})
        if not keep_archive:
            archive.unlink(missing_ok=True)
    return target


def check_archive(archive: Path, name: str) -> int:
    """Read every member of a ``.tar.gz`` to its end; returns the number of files.

    Reading through to the end checks the gzip CRC and length, so truncation and corruption are
    found here, before anything is extracted.

    Raises:
        tarfile.TarError, EOFError, zlib.error, OSError: a truncated or corrupt archive.
        UnsafeArchiveError: a member outside ``name/``, an absolute or ``..`` path, a link or a device.
    """
    files = 0
    with tarfile.open(archive, mode="r:gz") as tar:
        for member in tar:
            unsafe_member(member, name)
            if member.isfile():
                stream = tar.extractfile(member)
                while stream is not None and stream.read(1 << 20):
                    pass
                files += 1
    if files == 0:
        raise tarfile.TarError(f"{archive.name} holds no files")
    return files


def unsafe_member(member: tarfile.TarInfo, name: str) -> None:
    """Raise [UnsafeArchiveError][imgtrans.data.downloads.UnsafeArchiveError] unless ``member`` is a plain file
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
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(f"{where} is a device or special file; refusing to extract the archive")
    if path.parts[0] != name:
        raise UnsafeArchiveError(f"{where} is not inside {name}/, where the dataset must unpack; refusing to extract")


def extract_atomically(archive: Path, base: Path, name: str, info: dict) -> Path:
    """Extract ``archive`` (holding ``name/...``) to ``base/name`` so that it appears complete or not at all.

    The archive is unpacked into a hidden sibling, ``base/.name.extracting-XXXX``; the marker file
    is written inside the dataset's folder there, and only then is that folder renamed to
    ``base/name``. A process killed on the way leaves only the hidden folder, which the next
    download removes.
    """
    staging = base / f".{name}.extracting-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                unsafe_member(member, name)
            tar.extractall(staging, members=members, filter="data")
        folder = staging / name
        if not folder.is_dir() or not splits_of(folder):
            raise DownloadError(f"{archive.name} does not hold {name}/ with split folders (train/, test/...)")
        (folder / MARKER).write_text(json.dumps({"name": name, **info}, indent=2) + "\n")
        target = base / name
        old = None
        if target.exists():  # a complete copy being replaced (force): move it aside first
            old = base / f".{name}.replaced-{uuid.uuid4().hex[:8]}"
            os.rename(target, old)
        os.rename(folder, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _remove_stale(base: Path, name: str) -> None:
    """Remove the hidden folders that killed extractions of ``name`` left behind."""
    for stale in base.glob(f".{name}.extracting-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in base.glob(f".{name}.replaced-*"):
        shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path``, so that two downloads of one dataset do not interleave."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
