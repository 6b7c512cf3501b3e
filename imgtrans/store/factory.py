"""One path from a name to a model and back to disk: build, save, load.

- [build][imgtrans.store.factory.build] makes a registered model, with or without weights;
- [save_pretrained][imgtrans.store.factory.save_pretrained] writes it as a Hugging Face-style folder
  (``config.json``, ``model.safetensors``, ``README.md``), and
  [from_pretrained][imgtrans.store.factory.from_pretrained] reads one back, from disk or the Hub;
- [load][imgtrans.store.factory.load] takes whatever the command line accepts: a published model's
  name, a saved folder, a training run, or a checkpoint file.

Every configuration passes through [ModelConfig][imgtrans.store.config.ModelConfig], which checks it
before anything is built; every weights file through [imgtrans.store.weights][], which checks it
before anything is loaded; every download through [imgtrans.hub][]. Nothing here unpickles.

imgtrans does not use ``huggingface_hub.ModelHubMixin``: the mixin ties ``config.json`` to one
class's ``__init__``, while imgtrans saves any registered part or model by name through one
function, with a checksum of the weights and the parts they hold; the Hub's own functions
(``hf_hub_download``, ``upload_folder``) carry the transfers.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgtrans import hub
from imgtrans.models.parts import REFERENCE_ARCHS
from imgtrans.registry import Published, list_models
from imgtrans.store import zoo
from imgtrans.store.checkpoint import checkpoint_meta, load_checkpoint, load_good_checkpoint, model_config, trained_labels
from imgtrans.store.config import CONFIG_FILE, ModelConfig
from imgtrans.store.folder import WEIGHTS_FILE, read_folder, write_folder
from imgtrans.store.reference import convert_reference
from imgtrans.store.weights import CorruptWeightsError, StateDict, load_weights, read_weights, select_parts, top_level

RUN_MODEL, RUN_CHECKPOINT = "model", "checkpoints/last.safetensors"
logger = logging.getLogger("imgtrans")
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def build(name: str, pretrained: bool = False, weights: str | os.PathLike | None = None, **overrides: Any) -> nn.Module:
    """Build the registered part or model ``name``.

    Args:
        name: a name from [list_models][imgtrans.registry.list_models], e.g. ``"unet256"`` or ``"pix2pix-facades"``.
        pretrained: load the weights published for ``name`` (see [imgtrans.store.zoo][]): from the
            cache, else downloaded once and cached as safetensors.
        weights: load these weights instead: a save_pretrained folder, a ``.safetensors`` file or
            a reference ``.pth``. Giving ``weights`` implies ``pretrained``.
        **overrides: constructor arguments that replace the entry's defaults
            (``in_channels``, ``base_channels``, ``norm``, ...).

    Returns:
        The module, with ``config`` (its [ModelConfig][imgtrans.store.config.ModelConfig]). Pretrained
        models also carry ``untrained_parts``: the submodules the weights do not cover (the
        published pix2pix weights hold the generator only, so that is ``("discriminator",)``).
    """
    config = ModelConfig.create(name, overrides)  # checked before anything is read or built
    if not pretrained and weights is None:
        return config.instantiate()
    state, parts, source = _read_local(weights, name) if weights is not None else zoo.read_published(name)
    return load_weights(config.for_loading().instantiate(), state, parts, str(source))


def save_pretrained(
    model: nn.Module,
    directory: str | os.PathLike,
    *,
    parts: tuple[str, ...] | None = None,
    published: Published | None = None,
    overwrite: bool = False,
    step: int | None = None,
    keep_others: bool = False,
) -> Path:
    """Write ``model`` to ``directory`` as ``config.json``, ``model.safetensors`` and ``README.md``.

    Args:
        model: a model made by [build][imgtrans.store.factory.build] (it carries ``config``).
        directory: the folder to write, whole and atomically ([write_folder][imgtrans.store.folder.write_folder]):
            a crash or a full disk leaves the previous folder or the new one.
        parts: save only these top-level submodules, e.g. ``("generator",)`` to publish a pix2pix
            generator without its discriminator. ``None`` saves everything.
        published: what the model was trained for, for the model card.
        overwrite: replace an existing saved model at ``directory``; without it an existing,
            non-empty folder is refused. A folder holding files of your own is refused either way, unless ``keep_others``.
        step: the training step the weights are from (a run's export records it in ``config.json``).
        keep_others: with ``overwrite``, keep files of your own in the folder instead of refusing it.

    Returns:
        The folder, readable by [from_pretrained][imgtrans.store.factory.from_pretrained].

    Raises:
        FileExistsError: ``directory`` exists and ``overwrite`` is false.
        WriteError: the disk is full or read-only; ``directory`` is left as it was.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, ModelConfig):
        raise ValueError(
            "save_pretrained needs a model made by imgtrans.build (it records the architecture in model.config); "
            "register your class with imgtrans.register and build it by name"
        )
    parts = tuple(parts) if parts is not None else None
    full = model.state_dict()
    return write_folder(directory, config, select_parts(full, parts), parts=parts, published=published,
                        model_parts=tuple(top_level(full)), overwrite=overwrite,
                        config_fields={} if step is None else {"step": step}, keep_others=keep_others)  # fmt: skip


def from_pretrained(directory_or_repo_id: str | os.PathLike, *, revision: str | None = None) -> nn.Module:
    """Rebuild a model saved by [save_pretrained][imgtrans.store.factory.save_pretrained] and load its weights.

    Args:
        directory_or_repo_id: a local folder (never any network), or a Hub repository
            ``"organisation/name"`` (downloaded into the Hub's cache, or read from it offline).
        revision: for a Hub repository, the branch, tag or commit to read (default ``main``).

    Returns:
        The model, with ``config`` and ``untrained_parts``.

    Raises:
        FileNotFoundError: neither a folder nor a repository id.
        CorruptWeightsError: the weights do not match the SHA-256 in ``config.json`` or are unreadable.
        ValueError: a configuration that does not check, or weights that do not fit (listed by key).
    """
    folder = Path(directory_or_repo_id).expanduser()
    if folder.is_dir():
        config, state, parts, source = read_folder(folder)
    elif _REPO_ID.fullmatch(str(directory_or_repo_id)):
        config, state, parts, source = _read_from_hub(str(directory_or_repo_id), revision)
    else:
        raise FileNotFoundError(f"{directory_or_repo_id} is neither a folder nor a Hub repository id ('organisation/name')")
    return load_weights(config.instantiate(), state, parts, str(source))


def load(source: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Load a model from any of the places imgtrans keeps one; local sources never touch the network.

    Args:
        source: a saved model folder ([save_pretrained][imgtrans.store.factory.save_pretrained]), a
            training run folder (its exported ``model/``, else its last checkpoint), a training
            checkpoint file (``.safetensors``), or the name of a published model.
        device: where to put the model.
    """
    path = Path(source).expanduser()
    if path.is_dir():
        if (path / CONFIG_FILE).is_file():
            return from_pretrained(path).to(device)
        if (path / RUN_MODEL / CONFIG_FILE).is_file() or (path / RUN_CHECKPOINT).is_file():
            return load_run(path).to(device)
        raise FileNotFoundError(f"{path} holds no model: expected {CONFIG_FILE}, {RUN_MODEL}/ or {RUN_CHECKPOINT}")
    if path.is_file():
        if path.suffix in (".pth", ".pt", ".ckpt", ".bin"):
            raise ValueError(
                f"{path} looks like a PyTorch pickle checkpoint; imgtrans does not unpickle. If it comes from the "
                "reference implementation, convert it first: imgtrans convert FILE OUT --arch unet256"
            )
        return from_checkpoint(path).to(device)
    if str(source) in list_models(pretrained=True):
        return build(str(source), pretrained=True).to(device)
    raise FileNotFoundError(
        f"{source} is neither a file, a folder, nor a published model (`imgtrans zoo list` shows them)"
    )


def from_checkpoint(path: str | os.PathLike, fall_back: bool = False) -> nn.Module:
    """Rebuild the model a training checkpoint holds, with its weights (and the run's direction).

    ``fall_back``: a damaged checkpoint gives way to the previous good one beside it (with a warning).
    The model's ``loaded_step`` is the checkpoint's step.
    """
    checkpoint = load_good_checkpoint(path) if fall_back else load_checkpoint(path)
    config = model_config(checkpoint.meta, str(checkpoint.path))
    model = load_weights(config.instantiate(), checkpoint.section("model"), None, str(checkpoint.path))
    model.loaded_step = checkpoint.meta.get("step")
    return model


def load_run(run: str | os.PathLike) -> nn.Module:
    """A training run's newest state: its exported ``model/``, or its checkpoint when that is newer.

    A run that was resumed and interrupted has a checkpoint beyond the step ``model/`` was
    exported at; loading ``model/`` then would silently give the older weights. Which one was
    loaded, and its step, is kept on the model (``loaded_from``, ``loaded_step``) and said on the
    ``imgtrans`` logger: at INFO (a line on the command line's stderr) when it is the checkpoint,
    at DEBUG when it is ``model/``.
    """
    run = Path(run)
    exported, checkpoint = run / RUN_MODEL, run / RUN_CHECKPOINT
    has_export = (exported / CONFIG_FILE).is_file()
    exported_step = ModelConfig.read(exported / CONFIG_FILE)[1].get("step") if has_export else None
    meta = checkpoint_meta(checkpoint) if checkpoint.is_file() else {}
    checkpoint_at = meta.get("step")
    if has_export and not _newer(checkpoint, checkpoint_at, exported, exported_step):
        model, source = from_pretrained(exported), exported
        model.config = trained_labels(model.config, meta)  # a model/ written before config.json recorded label maps
        model.loaded_step = exported_step
    else:
        model = from_checkpoint(checkpoint, fall_back=True)
        source = checkpoint
    model.loaded_from = source
    step = "an unrecorded step" if model.loaded_step is None else f"step {model.loaded_step}"
    newer = ""
    if source == checkpoint and exported_step is not None:
        newer = f", newer than {RUN_MODEL}/ (step {exported_step})"
    # Said on stderr (INFO) when the checkpoint is loaded, the case that used to be silent; model/ at the
    # checkpoint's step is what a reader expects, and is said at DEBUG only, so that errors stay one line.
    level = logging.INFO if source == checkpoint else logging.DEBUG
    logger.log(level, f"loading {run}: {source.relative_to(run)} at {step}{newer}")
    return model


def _newer(checkpoint: Path, checkpoint_at: int | None, exported: Path, exported_step: int | None) -> bool:
    """Whether the checkpoint holds a later state than the exported model (by step, else by time written)."""
    if checkpoint_at is None and not checkpoint.is_file():
        return False
    if checkpoint_at is not None and exported_step is not None:
        return checkpoint_at > exported_step
    return checkpoint.stat().st_mtime > (exported / WEIGHTS_FILE).stat().st_mtime


def push_to_hub(
    model: nn.Module,
    repo_id: str,
    *,
    parts: tuple[str, ...] | None = None,
    published: Published | None = None,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload imgtrans model",
):
    """Publish ``model`` to the Hub repository ``repo_id``: exactly the folder save_pretrained writes, in one commit.

    Pin the returned commit (``.oid``) in a [Published][imgtrans.registry.Published] record
    (``hub=(repo_id, commit, "model.safetensors")``) to add the model to the zoo.
    """
    with tempfile.TemporaryDirectory(prefix="imgtrans-push-") as folder:
        save_pretrained(model, folder, parts=parts, published=published)
        return hub.upload_folder(folder, repo_id, private=private, token=token, commit_message=commit_message)


def _read_from_hub(repo_id: str, revision: str | None) -> tuple[ModelConfig, StateDict, tuple[str, ...] | None, Path]:
    """Config and weights of a Hub repository; a damaged cached copy is downloaded again once."""
    for refresh in (False, True):
        config, extra = ModelConfig.read(hub.hub_download(repo_id, CONFIG_FILE, revision, refresh=refresh))
        weights = hub.hub_download(repo_id, WEIGHTS_FILE, revision, refresh=refresh)
        try:
            return (config, *read_weights(weights, extra.get("sha256")), weights)
        except CorruptWeightsError as problem:
            if refresh:
                raise
            warnings.warn(f"{problem}; downloading it again", stacklevel=3)
    raise AssertionError("unreachable")


def _read_local(weights: str | os.PathLike, name: str) -> zoo.Weights:
    """Weights for ``name`` from a save_pretrained folder, a safetensors file or a reference ``.pth``."""
    path = Path(weights).expanduser()
    if path.is_dir():
        if not (path / WEIGHTS_FILE).is_file():
            raise FileNotFoundError(f"{path} has no {WEIGHTS_FILE}: it is not a save_pretrained folder")
        sha256 = ModelConfig.read(path / CONFIG_FILE)[1].get("sha256") if (path / CONFIG_FILE).is_file() else None
        return (*read_weights(path / WEIGHTS_FILE, sha256), path / WEIGHTS_FILE)
    if not path.is_file():
        raise FileNotFoundError(f"no weights at {path}")
    if path.suffix == ".safetensors":
        return (*read_weights(path), path)
    # Anything else is read as a reference checkpoint, with torch.load(weights_only=True).
    item = zoo.published(name) if name in list_models(pretrained=True) else None
    if item is not None and item.reference_file is not None:
        arch, part = item.reference_arch, item.part
    elif name in REFERENCE_ARCHS:
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

