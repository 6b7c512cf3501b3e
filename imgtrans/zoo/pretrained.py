"""Saving, loading and publishing models in the Hugging Face layout, without pickle.

A saved model is a folder (or a Hub repository) holding three files:

- ``config.json``: the registry name and full constructor arguments (from ``model.build_config``),
  so the model rebuilds itself without the caller knowing its architecture, and the SHA-256 of
  the weights, checked on every load;
- ``model.safetensors``: the state dict. Its metadata ``imgtrans.parts`` lists the submodules
  it holds when it holds only some (the zoo's pix2pix models hold the generator alone);
- ``README.md``: a model card saying what the model translates, in which direction, from which
  data, under which licence, with the paper's reference.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import huggingface_hub
import safetensors
import torch
from safetensors.torch import save_file
from torch import nn

from imgtrans.registry import build, skip_initial_weights
from imgtrans.zoo.download import file_sha256, hub_download, hub_endpoint, offline

if TYPE_CHECKING:
    from imgtrans.zoo.entries import ZooEntry

CONFIG, WEIGHTS, CARD = "config.json", "model.safetensors", "README.md"
PARTS_KEY = "imgtrans.parts"
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")

logger = logging.getLogger("imgtrans")

StateDict = dict[str, torch.Tensor]


class CorruptWeightsError(ValueError):
    """A weights file that cannot be read as safetensors or does not match its recorded SHA-256."""


def save_pretrained(
    model: nn.Module, directory: str | os.PathLike, *, parts: Iterable[str] | None = None, entry: ZooEntry | None = None
) -> Path:
    """Write ``model`` to ``directory`` as ``config.json``, ``model.safetensors`` and ``README.md``.

    Args:
        model: a model made by [build][imgtrans.registry.build] (it carries ``build_config``).
        directory: the folder to write; created if needed, its files replaced atomically.
        parts: save only these top-level submodules, e.g. ``("generator",)`` to publish a
            pix2pix generator without its discriminator. ``None`` saves everything.
        entry: what the model was trained for, written into the model card (the zoo passes its
            [ZooEntry][imgtrans.zoo.entries.ZooEntry]; describe your own models the same way).

    Returns:
        The folder, readable by [from_pretrained][imgtrans.zoo.pretrained.from_pretrained].
    """
    build_config = getattr(model, "build_config", None)
    if build_config is None:
        raise ValueError(
            "save_pretrained needs a model made by imgtrans.build (it records the architecture in "
            "model.build_config); register your class with imgtrans.register and build it by name"
        )
    state = model.state_dict()
    if parts is not None:
        parts = tuple(parts)
        available = _top_level(state)
        if unknown := [p for p in parts if p not in available]:
            names = ", ".join(map(repr, unknown))
            raise ValueError(f"the model has no part {names}; its parts are {', '.join(available)}")
        state = {k: v for k, v in state.items() if k.split(".", 1)[0] in parts}
    config: dict[str, Any] = {"name": build_config.name, "arguments": build_config.arguments}
    try:
        json.dumps(config)
    except TypeError as error:
        raise ValueError(f"the arguments of {build_config.name!r} cannot be written to config.json: {error}") from None

    from imgtrans import __version__

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    metadata = {"format": "pt", **({PARTS_KEY: ",".join(parts)} if parts else {})}
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    _write_atomically(directory / WEIGHTS, lambda tmp: save_file(tensors, tmp, metadata=metadata))
    config = {"imgtrans_version": __version__, **config, "sha256": file_sha256(directory / WEIGHTS)}
    card = model_card(model, parts=parts, entry=entry)
    _write_atomically(directory / CARD, lambda tmp: Path(tmp).write_text(card))
    # config.json goes last: a folder with a config is a complete one.
    _write_atomically(directory / CONFIG, lambda tmp: Path(tmp).write_text(json.dumps(config, indent=2) + "\n"))
    return directory


def from_pretrained(directory_or_repo_id: str | os.PathLike, *, revision: str | None = None) -> nn.Module:
    """Rebuild a model saved by [save_pretrained][imgtrans.zoo.pretrained.save_pretrained] and load its weights.

    Args:
        directory_or_repo_id: a local folder, or a Hub repository ``"organisation/name"``
            (downloaded into the Hub's cache, or read from it in offline mode).
        revision: for a Hub repository, the branch, tag or commit to read (default ``main``).

    Returns:
        The model, with ``build_config`` and ``untrained_parts`` (the submodules the weights
        did not cover, left at their initialisation).

    Raises:
        FileNotFoundError: neither a folder nor a repository id.
        CorruptWeightsError: the weights do not match the SHA-256 in ``config.json`` or are unreadable.
        ValueError: the weights do not fit the architecture (the keys are listed).
    """
    folder = Path(directory_or_repo_id).expanduser()
    if folder.is_dir():
        for name in (CONFIG, WEIGHTS):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder} is not a save_pretrained folder: it has no {name}")
        config = read_config(folder / CONFIG)
        state, parts = read_weights(folder / WEIGHTS, config.get("sha256"))
        source = folder / WEIGHTS
    elif _REPO_ID.fullmatch(str(directory_or_repo_id)):
        config, state, parts, source = _read_from_hub(str(directory_or_repo_id), revision)
    else:
        raise FileNotFoundError(
            f"{directory_or_repo_id} is neither a folder nor a Hub repository id ('organisation/name')"
        )
    try:
        with skip_initial_weights():
            model = build(config["name"], **config["arguments"])
    except KeyError as error:
        raise KeyError(f"{error.args[0]} (from {source}: import the module that registers it first)") from None
    return load_weights(model, state, parts, str(source))


def _read_from_hub(
    repo_id: str, revision: str | None
) -> tuple[dict[str, Any], StateDict, tuple[str, ...] | None, Path]:
    """Config and weights of a Hub repository; a damaged cached copy is downloaded again once."""
    for refresh in (False, True):
        config = read_config(hub_download(repo_id, CONFIG, revision, refresh=refresh))
        weights = hub_download(repo_id, WEIGHTS, revision, refresh=refresh)
        try:
            return (config, *read_weights(weights, config.get("sha256")), weights)
        except CorruptWeightsError as problem:
            if refresh:
                raise
            warnings.warn(f"{problem}; downloading it again", stacklevel=3)
    raise AssertionError("unreachable")


def push_to_hub(
    model: nn.Module,
    repo_id: str,
    *,
    parts: Iterable[str] | None = None,
    entry: ZooEntry | None = None,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload imgtrans model",
) -> huggingface_hub.CommitInfo:
    """Publish ``model`` to the Hub repository ``repo_id`` in the layout the zoo reads.

    Creates the repository if needed, then uploads exactly the folder that
    [save_pretrained][imgtrans.zoo.pretrained.save_pretrained] writes, in one commit. Pin the
    returned commit (``.oid``) in a [HubSource][imgtrans.zoo.entries.HubSource] to add the model to a zoo.

    Args:
        model: a model made by [build][imgtrans.registry.build].
        repo_id: ``"organisation/name"``.
        parts: as in [save_pretrained][imgtrans.zoo.pretrained.save_pretrained].
        entry: as in [save_pretrained][imgtrans.zoo.pretrained.save_pretrained], for the model card.
        private: create the repository private (``None``: the Hub's default).
        token: a Hub token; by default the one ``hf auth login`` stored.
        commit_message: the commit's message.
    """
    if offline():
        raise ConnectionError(f"offline mode (HF_HUB_OFFLINE is set): cannot push to {repo_id}")
    api = huggingface_hub.HfApi(endpoint=hub_endpoint(), token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="imgtrans-push-") as folder:
        save_pretrained(model, folder, parts=parts, entry=entry)
        return api.upload_folder(repo_id=repo_id, folder_path=folder, commit_message=commit_message)


def read_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read the ``config.json`` of a saved model, checking that it names a model and its arguments."""
    try:
        config = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise CorruptWeightsError(f"{path} is not a readable config.json ({error})") from None
    if not isinstance(config, dict) or not isinstance(config.get("name"), str) or not isinstance(
        config.get("arguments", {}), dict
    ):
        raise CorruptWeightsError(f"{path} does not describe a model: it needs a 'name' and a dict of 'arguments'")
    config.setdefault("arguments", {})
    return config


def read_weights(path: str | os.PathLike, sha256: str | None = None) -> tuple[StateDict, tuple[str, ...] | None]:
    """Read a safetensors file: its tensors and the parts it holds (``None``: the whole model).

    Raises:
        CorruptWeightsError: the file is not valid safetensors, or its SHA-256 is not ``sha256``.
    """
    path = Path(path)
    if sha256 is not None and (actual := file_sha256(path)) != sha256.lower():
        raise CorruptWeightsError(f"{path} is corrupted: its SHA-256 is {actual}, expected {sha256}")
    try:
        with safetensors.safe_open(str(path), framework="pt") as file:
            parts = (file.metadata() or {}).get(PARTS_KEY)
            state = {key: file.get_tensor(key) for key in file.keys()}
    except (safetensors.SafetensorError, OSError) as error:
        raise CorruptWeightsError(f"{path} is not a readable safetensors file ({error})") from None
    return state, tuple(parts.split(",")) if parts else None


def load_weights(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    parts: tuple[str, ...] | None = None,
    source: str = "the weights",
) -> nn.Module:
    """Load ``state`` into ``model`` after checking that every key and shape fits.

    Args:
        model: the module to fill.
        state: its state dict, or the part of it under ``parts``.
        parts: the top-level submodules ``state`` covers; ``None`` means all of them.
        source: where the weights come from, for messages.

    Raises:
        ValueError: missing, unexpected or mis-shaped keys, each listed by name.
    """
    expected = model.state_dict()
    if parts is not None:
        if unknown := [p for p in parts if p not in _top_level(expected)]:
            raise ValueError(f"{source} holds part {', '.join(map(repr, unknown))}, which the model does not have")
        expected = {k: v for k, v in expected.items() if k.split(".", 1)[0] in parts}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} {tuple(state[k].shape)} where the model has {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or misshaped:
        problems = [
            f"{label}: {_listing(keys)}"
            for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("mis-shaped", misshaped))
            if keys
        ]
        raise ValueError(
            f"the weights in {source} do not fit the model; " + "; ".join(problems) + ". They were saved from "
            "another architecture or other arguments: from_pretrained rebuilds the right one from config.json"
        )
    model.load_state_dict(dict(state), strict=parts is None)
    model.untrained_parts = tuple(p for p in _top_level(model.state_dict()) if parts is not None and p not in parts)
    if model.untrained_parts:
        kept = ", ".join(model.untrained_parts)
        logger.info("%s holds the %s only; %s keep their initial weights", source, ", ".join(parts), kept)
    return model


def model_card(model: nn.Module, *, parts: Iterable[str] | None = None, entry: ZooEntry | None = None) -> str:
    """The ``README.md`` of a saved model: what it translates, its data, licence and paper.

    Without an ``entry`` the card records the architecture and leaves the training data to be described.
    """
    from imgtrans.registry import entry as registry_entry
    from imgtrans.zoo.entries import PAPER, REFERENCE_REPOSITORY

    name, arguments = model.build_config.name, model.build_config.arguments
    untrained = [p for p in _top_level(model.state_dict()) if parts and p not in parts]
    rows = []
    if entry is not None:
        direction = f"{entry.direction}: the input is the {entry.direction[0]} half of the dataset's AB images"
        rows += [("translates", entry.task), ("direction", direction)]
    if "in_channels" in arguments:
        rows.append(("channels", f"{arguments['in_channels']} -> {arguments.get('out_channels', '?')}"))
    if entry is not None:
        source = entry.source + (f", `{entry.reference_file}` converted to safetensors" if entry.reference_file else "")
        rows += [
            ("training resolution", f"{entry.resolution} x {entry.resolution}"),
            ("training data", entry.dataset),
            ("source", source),
            ("license", f"{entry.license} (the training data has its own terms of use)"),
        ]
    else:
        rows.append(("training data, direction, license", "not recorded: describe them here before publishing"))
    covered = f"{', '.join(parts)} only; not included: {', '.join(untrained)}" if untrained else "the whole model"
    rows += [("weights", covered), ("architecture", f"`{name}` from the imgtrans registry; arguments in `config.json`")]

    license_line = [f"license: {entry.license}"] if entry is not None else []
    tags = ["pipeline_tag: image-to-image", "tags:", "- image-to-image", "- pix2pix", "- imgtrans"]
    load = f'build("{name}", pretrained=True)' if entry is not None else 'from_pretrained("FOLDER_OR_ORG/NAME")'
    call = "model.translate(x)" if hasattr(model, "translate") else "model.eval()(x)"
    lines = ["---", "library_name: imgtrans", *license_line, *tags, "---", "", f"# {name}", ""]
    lines += [registry_entry(name).description, "", "| | |", "| --- | --- |"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    lines += ["", "## Use", "", "```python", "import imgtrans", "", f"model = imgtrans.{load}"]
    lines += [f"y = {call}  # x: images in [-1, 1], shape (N, C, H, W)", "```", ""]
    lines += ["## Reference", "", f"{PAPER}. Reference implementation: {REFERENCE_REPOSITORY}.", ""]
    return "\n".join(lines)


def _top_level(state: Mapping[str, Any]) -> list[str]:
    """The top-level submodule names of a state dict, in order."""
    return list(dict.fromkeys(k.split(".", 1)[0] for k in state))


def _listing(keys: list[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def _write_atomically(path: Path, write) -> None:
    """Call ``write(temporary_path)`` next to ``path``, then rename it over ``path``."""
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
