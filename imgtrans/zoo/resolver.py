"""Where ``build(name, pretrained=True)`` finds its weights.

In order:

1. ``weights=PATH`` when given: a [save_pretrained][imgtrans.zoo.pretrained.save_pretrained]
   folder, a ``.safetensors`` file, or a reference ``.pth`` checkpoint (converted on the fly);
2. the zoo entry ``name`` (see [entries][imgtrans.zoo.entries]):
    - with a Hub source: ``hf_hub_download`` at the pinned revision, from the Hub's cache first;
    - otherwise the imgtrans cache ``$HF_HOME/imgtrans/NAME/`` (a save_pretrained folder), filled
      on first use by downloading the reference checkpoint, converting it, checking that it loads
      strictly and saving it as safetensors. The ``.pth`` is deleted once converted: every later
      load reads only safetensors.

Whatever is read is checked against its SHA-256 when one is known (the entry's for downloads,
``config.json``'s for the cache). A damaged cached copy is reported with a warning and fetched
again at once; a failed download leaves nothing behind, so the next call starts afresh.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from torch import nn

from imgtrans.registry import build
from imgtrans.zoo.download import DownloadError, cache_dir, download, file_sha256, hub_cache_dir, hub_download
from imgtrans.zoo.entries import ZOO, ZooEntry, pretrained_entry
from imgtrans.zoo.pretrained import (
    CONFIG,
    WEIGHTS,
    CorruptWeightsError,
    StateDict,
    load_weights,
    read_config,
    read_weights,
    save_pretrained,
)
from imgtrans.zoo.reference import ARCHS, convert_reference

Weights = tuple[StateDict, "tuple[str, ...] | None", Path]


def load_pretrained(model: nn.Module, name: str, weights: str | os.PathLike | None = None) -> nn.Module:
    """Load pretrained weights into ``model``, built from the registry name ``name``.

    Args:
        model: the freshly built model.
        name: its registry name; without ``weights`` it must have a zoo entry.
        weights: a local folder or file to read instead of the zoo.

    Returns:
        ``model``, with ``untrained_parts`` naming the submodules the weights did not cover (the
        discriminator, for the published pix2pix models).
    """
    state, parts, path = read_pretrained(name, weights)
    return load_weights(model, state, parts, str(path))


def read_pretrained(name: str, weights: str | os.PathLike | None = None) -> Weights:
    """The pretrained weights for the registry name ``name``: ``(state dict, parts, file)``.

    ``parts`` names the top-level submodules the state dict covers (``None``: all of them).
    """
    return read_local(weights, name) if weights is not None else _read_entry(pretrained_entry(name))


def fetch(name: str) -> Path:
    """Make sure the weights of the zoo entry ``name`` are on disk and intact; returns their file."""
    return _read_entry(pretrained_entry(name))[2]


def cached_path(entry: ZooEntry) -> Path:
    """Where the weights of ``entry`` are (or will be) on disk."""
    if entry.hub is not None:
        return hub_cache_dir() / f"models--{entry.hub.repo_id.replace('/', '--')}"
    return cache_dir() / entry.name


def is_cached(entry: ZooEntry) -> bool:
    """Whether the weights of ``entry`` are on disk (not checked: loading checks them)."""
    if entry.hub is not None:
        return (cached_path(entry) / "snapshots" / entry.hub.revision / entry.hub.filename).is_file()
    return (cached_path(entry) / CONFIG).is_file() and (cached_path(entry) / WEIGHTS).is_file()


def read_local(weights: str | os.PathLike, name: str) -> Weights:
    """Read ``weights`` for the model ``name``: a save_pretrained folder, safetensors, or a reference ``.pth``."""
    path = Path(weights).expanduser()
    if path.is_dir():
        if not (path / WEIGHTS).is_file():
            raise FileNotFoundError(f"{path} has no {WEIGHTS}: it is not a save_pretrained folder")
        sha256 = read_config(path / CONFIG).get("sha256") if (path / CONFIG).is_file() else None
        return (*read_weights(path / WEIGHTS, sha256), path / WEIGHTS)
    if not path.is_file():
        raise FileNotFoundError(f"no weights at {path}")
    if path.suffix == ".safetensors":
        return (*read_weights(path), path)
    # Anything else is read as a reference checkpoint, with torch.load(weights_only=True).
    if name in ZOO:
        arch, part = ZOO[name].reference_arch, ZOO[name].reference_part
    elif name in ARCHS:
        arch, part = name, None
    else:
        raise ValueError(
            f"{path} is not a .safetensors file, and {name!r} has no reference architecture to convert it from; "
            "pass a save_pretrained folder or a .safetensors file"
        )
    state = convert_reference(path, arch)
    if part is None:
        return state, None, path
    return {f"{part}.{k}": v for k, v in state.items()}, (part,), path


def _read_entry(entry: ZooEntry) -> Weights:
    """The weights of a zoo entry, fetched if needed; a damaged cached copy is fetched again once."""
    for refresh in (False, True):
        path, sha256 = _fetch(entry, refresh)
        try:
            return (*read_weights(path, sha256), path)
        except CorruptWeightsError as problem:
            if refresh:
                raise
            warnings.warn(f"{problem}; downloading it again", stacklevel=4)
    raise AssertionError("unreachable")


def _fetch(entry: ZooEntry, refresh: bool) -> tuple[Path, str | None]:
    """The safetensors file of ``entry`` on disk and the SHA-256 it must have."""
    try:
        if entry.hub is not None:
            hub = entry.hub
            return hub_download(hub.repo_id, hub.filename, hub.revision, refresh=refresh), entry.sha256
        return _fetch_reference(entry, refresh)
    except DownloadError as error:
        raise DownloadError(f"{error}. {_offline_hint(entry)}") from None


def _fetch_reference(entry: ZooEntry, refresh: bool) -> tuple[Path, str | None]:
    """The cached conversion of the reference checkpoint, made on first use."""
    folder = cache_dir() / entry.name
    if refresh:
        for name in (CONFIG, WEIGHTS):
            (folder / name).unlink(missing_ok=True)
    if (folder / CONFIG).is_file() and (folder / WEIGHTS).is_file():
        return folder / WEIGHTS, read_config(folder / CONFIG).get("sha256")
    checkpoint = folder / entry.reference_file
    if not checkpoint.is_file():
        download(entry.url, checkpoint, entry.sha256)
    elif entry.sha256 is not None and (actual := file_sha256(checkpoint)) != entry.sha256:
        checkpoint.unlink()
        raise DownloadError(f"checksum mismatch for {checkpoint}: its SHA-256 is {actual}, expected {entry.sha256}")
    model = build(entry.name)
    try:
        load_weights(model.get_submodule(entry.reference_part), convert_reference(checkpoint, entry.reference_arch))
    except ValueError as error:
        checkpoint.unlink()
        raise ValueError(f"{error}\n{checkpoint} was removed; the next call downloads it again") from None
    save_pretrained(model, folder, parts=(entry.reference_part,), entry=entry)
    checkpoint.unlink()
    return folder / WEIGHTS, read_config(folder / CONFIG)["sha256"]


def _offline_hint(entry: ZooEntry) -> str:
    """How to get the weights of ``entry`` onto a machine without network access."""
    by_path = f"or pass build({entry.name!r}, pretrained=True, weights=PATH)"
    if entry.hub is not None:
        return (
            f"To work offline, run `hf download {entry.hub.repo_id} {entry.hub.filename} --revision "
            f"{entry.hub.revision}` on a connected machine and copy {cached_path(entry)} to this one "
            f"(HF_HUB_CACHE={hub_cache_dir()}), {by_path}"
        )
    return (
        f"To work offline, download {entry.url} on a connected machine and put it at "
        f"{cache_dir() / entry.name / entry.reference_file} (it is converted on first use), {by_path}"
    )
