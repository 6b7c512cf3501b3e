"""The pix2pix and CycleGAN datasets in one command: a catalogue, a resumable download, and a safe extraction.

The reference implementation fetches its paired datasets with
``datasets/download_pix2pix_dataset.sh NAME``: ``wget`` of ``NAME.tar.gz`` from
``http://efrosgans.eecs.berkeley.edu/pix2pix/datasets/``, then ``tar -zxvf``. This module does the
same with the guarantees a script does not give (and so for CycleGAN's unpaired datasets, which
``datasets/download_cyclegan_dataset.sh NAME`` fetches as ``NAME.zip`` from ``.../cyclegan/datasets/``):

- **resumable**: the archive is written to ``NAME.tar.gz.part`` and a dropped connection is
  resumed with an HTTP ``Range`` request, within the same call (a few tries) and on the next call;
- **atomic**: the archive gets its final name only once its length is complete, and the dataset
  is extracted into a hidden sibling folder that is renamed into place with a completion marker
  inside, so a killed extraction never leaves a folder that looks like a dataset;
- **verified**: every member of the archive is read to its end before extraction, so a truncated
  or corrupt archive (gzip CRC, tar headers) is detected; it is deleted and fetched once more
  ([retry_corrupt][imgtrans.hub.retry_corrupt]). Its SHA-256 is recorded at the first download
  and a later download that differs is refused ([check_first_seen][imgtrans.hub.check_first_seen]);
- **bounded**: the catalogue's size bounds the download (1.5 times it), the expanded size (4 times
  it) and the members (twice the images, and 64); beyond, the download or the archive is refused
  and nothing is kept;
- **safe**: members that would land outside the dataset's folder (``../``, absolute paths), links,
  sparse and device files are refused before anything is written, and extraction also runs under
  Python's ``tarfile`` ``"data"`` filter (see [archives][imgtrans.data.archives]).

https is used: the reference's server offers it (its script names plain http).

Datasets go to ``$HF_HOME/imgtrans/datasets/NAME/`` beside the zoo's models (or ``root``), each
with its splits as the archive has them (``train/``, ``val/``, ``test/``). Training and
evaluation take them by name: [resolve_data][imgtrans.data.downloads.resolve_data] turns ``"facades"``
into the train split's folder and ``"facades/test"`` into the test split's.

| variable | effect |
| --- | --- |
| ``IMGTRANS_DATASETS_URL`` | a mirror: a base address under which ``NAME.tar.gz`` (and ``cyclegan/NAME.zip``) is fetched |
| ``HF_HOME`` | root of the caches (datasets in ``$HF_HOME/imgtrans/datasets``) |
| ``HF_HUB_OFFLINE`` | ``1``: never use the network |
| ``HF_HUB_DOWNLOAD_TIMEOUT`` | seconds a connection may stay silent (default 10) |
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
from pathlib import Path
from typing import Iterator

from imgtrans.data.archives import (
    CORRUPT,
    MARKER,
    ArchiveTooLargeError,
    UnsafeArchiveError,
    check_archive,
    extract_atomically,
    splits_of,
)
from imgtrans.data.catalogue import CYCLEGAN_DATASETS_URL, DATASETS, DATASETS_URL, DatasetEntry
from imgtrans.hub import (
    ChangedDownloadError,
    DownloadError,
    cache_dir,
    check_first_seen,
    download_resumable,
    retry_corrupt,
)
from imgtrans.registry import did_you_mean

__all__ = [
    "CYCLEGAN_DATASETS_URL",
    "DATASETS",
    "DATASETS_URL",
    "MARKER",
    "ArchiveTooLargeError",
    "DatasetEntry",
    "UnsafeArchiveError",
    "dataset_dir",
    "dataset_entry",
    "datasets_dir",
    "download_dataset",
    "is_downloaded",
    "list_datasets",
    "resolve_data",
    "splits_of",
]



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


def resolve_data(value: str | os.PathLike, split: str = "train", root: str | os.PathLike | None = None) -> Path:
    """The folder a ``--data`` value names: an existing path as it is, or a downloaded dataset's split.

    Args:
        value: a folder or file (returned unchanged when it exists), ``"NAME"`` (its ``split``) or
            ``"NAME/SPLIT"``, with ``NAME`` from [DATASETS][imgtrans.data.catalogue.DATASETS]. For a
            CycleGAN dataset ``NAME/train`` is the path ``NAME/train`` that stands for ``NAME/trainA`` and
            ``NAME/trainB`` (see [UnpairedImageDataset][imgtrans.data.unpaired.UnpairedImageDataset]), and
            ``NAME/testA`` the folder of one domain (the images to translate: ``ae_photos/testA``).
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
    if entry.layout == "unpaired":  # NAME/SPLIT means NAME/SPLITA and NAME/SPLITB; NAME/testA is one domain's folder
        if wanted.endswith(("A", "B")) and (folder / wanted).is_dir():
            return folder / wanted
        if not (folder / f"{wanted}A").is_dir():
            have = sorted({s[:-1] for s in splits_of(folder) if s.endswith(("A", "B"))})
            raise FileNotFoundError(f"dataset {name!r} has no split {wanted!r} ({wanted}A/); it has {', '.join(have)}")
        return folder / wanted
    if not (folder / wanted).is_dir():
        raise FileNotFoundError(
            f"dataset {name!r} has no split {wanted!r}; it has {', '.join(splits_of(folder))} "
            f"(e.g. {name}/{splits_of(folder)[0]})"
        )
    return folder / wanted


def download_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    keep_archive: bool = False,
    archive: str | os.PathLike | None = None,
    force: bool = False,
) -> Path:
    """Download and extract dataset ``name``; returns its folder. Does nothing if it is already there.

    Args:
        name: a name from [DATASETS][imgtrans.data.catalogue.DATASETS].
        root: the folder to put it in (default ``$HF_HOME/imgtrans/datasets``).
        overwrite: download and extract again over a complete copy that imgtrans made
            (``force`` is the old name); a folder imgtrans did not make is never replaced.
        keep_archive: keep ``NAME.tar.gz`` in ``root/.downloads`` after extraction.
        archive: a ``NAME.tar.gz`` already on disk (fetched by hand) to extract instead of
            downloading; it is checked the same way and left where it is.

    Raises:
        ValueError: Cityscapes (it needs the user's registration), a folder in the way that
            imgtrans did not make, or an ``archive`` that cannot be read.
        DownloadError: offline, unreachable, cut short after every retry, longer than the
            catalogue allows, corrupt twice, or (ChangedDownloadError) not the file first downloaded.
        UnsafeArchiveError: members that escape the folder, links, or (ArchiveTooLargeError) far
            more members or bytes than the catalogue's entry.
    """
    entry = dataset_entry(name)
    if not entry.downloadable:
        raise ValueError(f"{name} cannot be downloaded by imgtrans: it {entry.licence}")
    base = datasets_dir(root)
    target = base / entry.name
    base.mkdir(parents=True, exist_ok=True)
    with _locked(base / f".{entry.name}.lock"):
        if (target / MARKER).is_file() and not (overwrite or force):
            return target
        if target.exists() and not (target / MARKER).is_file():
            raise ValueError(
                f"{target} exists but was not made by `imgtrans data download` (no {MARKER} in it), so it is not "
                "replaced (not even with --overwrite); move it away, or download elsewhere with --root DIR"
            )
        _remove_stale(base, entry.name)
        if archive is not None:
            source, members = Path(archive), _check_given(Path(archive), entry)
            sha256 = _first_seen(entry, source, str(source))
        else:
            source = base / ".downloads" / entry.archive_file
            try:
                members = _fetch_checked(entry, source)
                sha256 = _first_seen(entry, source, entry.url)
            except (UnsafeArchiveError, ChangedDownloadError):
                source.unlink(missing_ok=True)  # nothing a later run would trust stays behind
                raise
        extract_atomically(source, base, entry.root, {"url": entry.url if archive is None else str(source),
                                                      "files": members, "sha256": sha256}, entry.bounds,
                           folder_name=entry.name)  # fmt: skip
        if archive is None and not keep_archive:
            source.unlink(missing_ok=True)
    return target


def _fetch_checked(entry: DatasetEntry, archive: Path) -> int:
    """Download ``archive`` (unless a complete one is there) and check it; a corrupt one is fetched once more."""

    def fetch(refresh: bool) -> Path:
        if refresh or not archive.is_file():
            archive.unlink(missing_ok=True)
            try:
                download_resumable(entry.url, archive, max_bytes=entry.max_download)
            except DownloadError as error:
                _by_hand(error, entry, archive)
        return archive

    def use(path: Path) -> int:
        try:
            return check_archive(path, entry.root, entry.bounds)
        except CORRUPT:
            path.unlink(missing_ok=True)
            raise

    def note(error: Exception) -> None:
        print(f"{archive.name} is corrupt ({type(error).__name__}: {error}); downloading it again")

    try:
        return retry_corrupt(fetch, use, CORRUPT, note)
    except DownloadError:
        raise
    except CORRUPT as error:
        raise DownloadError(
            f"{entry.url} gave a corrupt archive twice ({type(error).__name__}: {error}); "
            "the server or mirror (IMGTRANS_DATASETS_URL) serves a damaged file"
        ) from None


def _by_hand(error: DownloadError, entry: DatasetEntry, archive: Path) -> None:
    """Raise ``error`` with what to do without a network, when the network is what failed."""
    message = str(error)
    if not any(words in message for words in ("offline mode", "cannot reach", "did not answer", "answered HTTP")):
        raise error
    failure = DownloadError(
        f"{message}. Without network here: fetch {entry.url} on a connected machine, then pass the file: "
        f"download_dataset({entry.name!r}, archive=FILE)"
    )
    failure.cli_message = (
        f"{message}. Without network here: fetch {entry.url} on a connected machine, then run "
        f"`imgtrans data download {entry.name} --from FILE`"
    )
    raise failure from None


def _check_given(archive: Path, entry: DatasetEntry) -> int:
    """Check an archive the user fetched by hand; one that cannot be read is a ``ValueError`` naming it."""
    if not archive.is_file():
        raise ValueError(f"{archive} is not a file; pass the {entry.archive_file} you downloaded")
    try:
        return check_archive(archive, entry.root, entry.bounds)
    except CORRUPT as error:
        raise ValueError(
            f"{archive} is not a complete {entry.archive_file} ({type(error).__name__}: {error}); fetch "
            f"{entry.url} again"
        ) from None


def _first_seen(entry: DatasetEntry, archive: Path, source: str) -> str:
    """The archive's SHA-256, recorded at the first download of ``entry`` and compared at every later one."""
    return check_first_seen(
        f"datasets/{entry.archive_file}", archive, source,
        f"If the new file is trusted, remove the entry 'datasets/{entry.archive_file}' from that file and run the "
        "same command again",
    )  # fmt: skip


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
