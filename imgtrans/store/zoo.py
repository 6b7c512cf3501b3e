"""The zoo: published weights of registered models, fetched once, verified, and cached as safetensors.

A published model is described once, next to its registration (see `imgtrans/models/pix2pix.py`),
by a [Published][imgtrans.registry.Published] record. Its weights come from one of two places:

- a Hub repository in imgtrans's own format, pinned to a commit, read through the Hub's cache;
- otherwise a checkpoint of the reference PyTorch implementation, downloaded once, converted
  without pickle ([convert_reference][imgtrans.store.reference.convert_reference]) and cached as a
  save_pretrained folder in ``$HF_HOME/imgtrans/NAME/``; the ``.pth`` is deleted once converted,
  so every later load reads only safetensors.

Whatever is read is checked against its SHA-256 when one is known (the published one for
downloads, ``config.json``'s for the cache); a reference checkpoint published without one has its
SHA-256 recorded at its first download and later downloads are checked against it
([check_first_seen][imgtrans.hub.check_first_seen]). A download is bounded by the size the
model's architecture implies. A damaged cached copy is reported with a warning and fetched again
at once ([retry_corrupt][imgtrans.hub.retry_corrupt]); a failed download leaves nothing behind,
so the next call starts afresh.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from imgtrans.hub import (
    ChangedDownloadError,
    DownloadError,
    cache_dir,
    check_first_seen,
    download,
    hub_cache_dir,
    hub_download,
    retry_corrupt,
)
from imgtrans.io import file_sha256
from imgtrans.registry import Published, did_you_mean, entry, list_models
from imgtrans.store.config import CONFIG_FILE, ModelConfig
from imgtrans.store.folder import WEIGHTS_FILE, is_saved_folder, write_folder
from imgtrans.store.reference import convert_reference
from imgtrans.store.weights import CorruptWeightsError, StateDict, check_state_dict, read_weights, top_level
Weights = tuple[StateDict, "tuple[str, ...] | None", Path]

REFERENCE_URL = "https://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch"
"""Where the reference implementation publishes its pix2pix checkpoints (its ``download_pix2pix_model.sh``
names the same server over plain http); ``IMGTRANS_REFERENCE_URL`` overrides it."""

CYCLEGAN_URL = "https://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models"
"""Where the reference publishes its CycleGAN generators (``scripts/download_cyclegan_model.sh``); a record's
``reference_file`` ``cyclegan/NAME.pth`` is fetched from here, or from ``$IMGTRANS_REFERENCE_URL/cyclegan/NAME.pth``."""

__all__ = [
    "CYCLEGAN_URL",
    "REFERENCE_URL",
    "cached_path",
    "convert_reference",
    "fetch",
    "is_cached",
    "list_pretrained",
    "published",
    "read_published",
    "reference_url",
]


def reference_url(filename: str) -> str:
    """The address of a reference checkpoint, on ``IMGTRANS_REFERENCE_URL`` when it is set (read at each call).

    ``filename`` is a pix2pix file (``facades_label2photo.pth``) or a CycleGAN one (``cyclegan/horse2zebra.pth``),
    which the reference serves from another folder ([CYCLEGAN_URL][imgtrans.store.zoo.CYCLEGAN_URL]); a mirror
    keeps the ``cyclegan/`` part.
    """
    mirror = os.environ.get("IMGTRANS_REFERENCE_URL")
    if mirror:
        return f"{mirror.rstrip('/')}/{filename}"
    collection, _, name = filename.rpartition("/")
    return f"{CYCLEGAN_URL}/{name}" if collection == "cyclegan" else f"{REFERENCE_URL}/{filename}"


def list_pretrained() -> list[str]:
    """Names with published weights, sorted."""
    return list_models(pretrained=True)


def published(name: str) -> Published:
    """What was published for ``name``; unknown names fail with the closest ones and the alternatives."""
    item = entry(name)
    if item.published is None:
        hint = did_you_mean(name, list_pretrained(), n=1)
        if "pretrained_encoder" in item.parameters():
            hint += " For this part's pretrained timm encoder, build it with pretrained_encoder=True instead."
        raise KeyError(
            f"no published weights for {name!r}.{hint} The zoo has: {', '.join(list_pretrained())}; for other "
            "models pass weights=PATH (a save_pretrained folder, a .safetensors file or a reference .pth)."
        )
    return item.published


def cached_path(name: str) -> Path:
    """Where the weights of ``name`` are (or will be) on disk."""
    hub = published(name).hub
    if hub is not None:
        return hub_cache_dir() / f"models--{hub[0].replace('/', '--')}"
    return cache_dir() / name


def is_cached(name: str) -> bool:
    """Whether the weights of ``name`` are on disk (not checked: loading checks them)."""
    hub, folder = published(name).hub, cached_path(name)
    if hub is not None:
        return (folder / "snapshots" / hub[1] / hub[2]).is_file()
    return is_saved_folder(folder)


def fetch(name: str, *, overwrite: bool = False) -> Path:
    """Make sure the weights of ``name`` are on disk and intact; returns their file.

    A cached copy is checked, never replaced silently: a damaged one is refused unless
    ``overwrite``, which also downloads an intact one again.

    Raises:
        CorruptWeightsError: the cached copy is damaged and ``overwrite`` is false (the message
            says how to replace it).
    """
    item = published(name)
    if overwrite or not is_cached(name):
        path, sha256 = _fetch(name, item, refresh=overwrite)
        read_weights(path, sha256)
        return path
    path, sha256 = _fetch(name, item, refresh=False)
    try:
        read_weights(path, sha256)
    except CorruptWeightsError as problem:
        kept = f"{problem}; the cached copy was left as it is: pass"
        error = CorruptWeightsError(f"{kept} overwrite=True to download it again")
        error.cli_message = f"{kept} --overwrite to download it again"
        raise error from None
    return path


def read_published(name: str) -> Weights:
    """The published weights of ``name``: ``(state dict, parts, file)``, fetched if needed.

    A damaged cached copy is fetched again once.
    """
    item = published(name)

    def note(problem: Exception) -> None:
        warnings.warn(f"{problem}; downloading it again", stacklevel=5)

    return retry_corrupt(
        lambda refresh: _fetch(name, item, refresh),
        lambda got: (*read_weights(*got), got[0]),
        CorruptWeightsError,
        note,
    )


def _fetch(name: str, item: Published, refresh: bool) -> tuple[Path, str | None]:
    """The safetensors file of ``name`` on disk and the SHA-256 it must have."""
    try:
        if item.hub is not None:
            repo_id, revision, filename = item.hub
            return hub_download(repo_id, filename, revision, refresh=refresh), item.sha256
        return _fetch_reference(name, item, refresh)
    except ChangedDownloadError:  # the network worked: an offline hint would mislead
        raise
    except DownloadError as error:
        failure = DownloadError(f"{error}. {_offline_hint(name, item)}")
        failure.cli_message = f"{error}. {_offline_hint(name, item, cli=True)}"
        raise failure from None


def _fetch_reference(name: str, item: Published, refresh: bool) -> tuple[Path, str | None]:
    """The cached conversion of the reference checkpoint, made on first use."""
    folder = cache_dir() / name  # a damaged copy stays until its replacement is complete
    if not refresh and is_saved_folder(folder):
        return folder / WEIGHTS_FILE, ModelConfig.read(folder / CONFIG_FILE)[1].get("sha256")
    checkpoint, url = folder / Path(item.reference_file).name, reference_url(item.reference_file)
    if not checkpoint.is_file():
        download(url, checkpoint, item.sha256, max_bytes=_largest_checkpoint(name))
    if item.sha256 is None:  # none published: the first download's is recorded, later ones must match it
        try:
            key = f"reference/{item.reference_file}"
            trust = f"If the new file is trusted, remove the entry {key!r} from that file."
            check_first_seen(key, checkpoint, url, trust)
        except DownloadError:
            checkpoint.unlink()
            raise
    elif item.sha256 is not None and (actual := file_sha256(checkpoint)) != item.sha256:
        checkpoint.unlink()
        raise DownloadError(f"checksum mismatch for {checkpoint}: its SHA-256 is {actual}, expected {item.sha256}")
    try:  # the conversion checks every tensor's role and shape against the part's layout
        prefix = f"{item.part}." if item.part else ""
        state = {prefix + k: v for k, v in convert_reference(checkpoint, item.reference_arch).items()}
        config = ModelConfig.create(name)
        model_parts = _check_part(config, item, state, str(checkpoint))
    except ValueError as error:
        checkpoint.unlink()
        raise ValueError(f"{error}\n{checkpoint} was removed; the next call downloads it again") from None
    parts = (item.part,) if item.part else None
    # The whole cached folder is replaced in one step; the downloaded .pth goes with the old one.
    write_folder(folder, config, state, parts=parts, published=item, model_parts=model_parts, overwrite=True,
                 replaceable=(checkpoint.name,))  # fmt: skip
    checkpoint.unlink(missing_ok=True)
    return folder / WEIGHTS_FILE, ModelConfig.read(folder / CONFIG_FILE)[1]["sha256"]


def _largest_checkpoint(name: str) -> int:
    """The most bytes a reference checkpoint of ``name`` can hold: its float32 weights, twice, and 1 MiB.

    The parameters are counted on the ``meta`` device (nothing allocated); a reference ``.pth``
    holds one part in float32 plus pickle's few bytes a tensor, so twice the whole model is ample.
    """
    with torch.device("meta"):
        layout = ModelConfig.create(name).for_loading().instantiate().state_dict()
    return 2 * 4 * sum(t.numel() for t in layout.values()) + 2**20


def _check_part(config: ModelConfig, item: Published, state: StateDict, source: str) -> tuple[str, ...]:
    """Check that the converted state dict fits the model's part, on the ``meta`` device (nothing allocated).

    Returns the model's top-level parts.
    """
    with torch.device("meta"):
        layout = config.for_loading().instantiate().state_dict()
    check_state_dict(layout, state, (item.part,) if item.part else None, source)
    return tuple(top_level(layout))


def _offline_hint(name: str, item: Published, cli: bool = False) -> str:
    """How to get the weights of ``name`` onto a machine without network access (in the command line's words)."""
    by_path = (
        f"or convert the file you have and give its folder as the model: imgtrans convert FILE DIR --arch {item.reference_arch}"
        if cli
        else f"or pass build({name!r}, pretrained=True, weights=PATH)"
    )
    if item.hub is not None:
        repo_id, revision, filename = item.hub
        return (
            f"To work offline, run `hf download {repo_id} {filename} --revision {revision}` on a connected "
            f"machine and copy {cached_path(name)} to this one (HF_HUB_CACHE={hub_cache_dir()}), {by_path}"
        )
    return (
        f"To work offline, download {reference_url(item.reference_file)} on a connected machine and put it at "
        f"{cache_dir() / name / Path(item.reference_file).name} (it is converted on first use), {by_path}"
    )
