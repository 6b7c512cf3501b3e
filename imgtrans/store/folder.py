"""The folder format of a saved model: its file names, and the one writer and reader of such a folder.

A saved model is a folder of three files, as models are on the Hugging Face Hub:

- ``config.json``: the [ModelConfig][imgtrans.store.config.ModelConfig] (which owns that file), with
  the SHA-256 of the weights and the parts they hold;
- ``model.safetensors``: the weights ([imgtrans.store.weights][]);
- ``README.md``: the model card ([imgtrans.store.card][]).

[write_folder][imgtrans.store.folder.write_folder] writes the three into a temporary sibling and swaps
it into place ([atomic_folder][imgtrans.io.atomic_folder]), so a crash or a full disk leaves the old
folder or the new one, never a mix; an existing folder is replaced only when asked, and never
when it holds files of the user's own. ``save_pretrained``, the zoo's cache and the trainer's
``model/`` all go through it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from imgtrans.io import atomic_folder, atomic_write
from imgtrans.registry import Published
from imgtrans.store.card import model_card
from imgtrans.store.config import CONFIG_FILE, ModelConfig
from imgtrans.store.weights import StateDict, read_weights, write_weights

WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
FOLDER_FILES = (CONFIG_FILE, WEIGHTS_FILE, CARD_FILE)
"""The files of a saved model folder; ``config.json`` is written last: a folder that has one is complete."""


def write_folder(
    directory: str | os.PathLike,
    config: ModelConfig,
    state: Mapping[str, torch.Tensor],
    *,
    parts: tuple[str, ...] | None = None,
    published: Published | None = None,
    model_parts: tuple[str, ...] = (),
    overwrite: bool = False,
    replaceable: Iterable[str] = (),
    extra_files: Mapping[str, str | bytes] | None = None,
    config_fields: Mapping[str, Any] | None = None,
    keep_others: bool = False,
) -> Path:
    """Write a saved model folder whole: weights, model card, ``extra_files``, then ``config.json``.

    Args:
        directory: the folder; created with its parents if needed.
        config: the model's configuration.
        state: the weights to save (all of the model's, or those of ``parts``).
        parts: the top-level parts ``state`` holds; ``None``: the whole model.
        published: what the weights were published as, for the card.
        model_parts: the model's top-level parts, so the card can say which the weights leave out.
        overwrite: replace an existing folder (only its imgtrans files: one holding other files
            is refused).
        replaceable: other names in an existing folder this writer may discard (the zoo's
            downloaded ``.pth``).
        extra_files: more files to write into the folder, by name.
        config_fields: more fields of ``config.json`` (a run's export records its ``step``).
        keep_others: keep the files of the user's own in an existing folder (a run's ``model/``)
            rather than refuse it.

    Raises:
        FileExistsError: ``directory`` exists and ``overwrite`` is false.
        ValueError: ``directory`` is a file or holds files of the user's own; the configuration
            cannot be written.
        WriteError: a write failed (a full disk...); ``directory`` is left as it was.
    """
    config.to_dict()  # a configuration that could not load offline is refused before anything is written
    extra_files = dict(extra_files or {})
    owned = {*FOLDER_FILES, *replaceable, *extra_files}
    writing = atomic_folder(directory, overwrite=overwrite, replaceable=owned.__contains__, what="the model folder",
                           keep_others=keep_others)
    with writing as fresh:
        sha256 = write_weights(fresh / WEIGHTS_FILE, state, parts)
        atomic_write(fresh / CARD_FILE, model_card(config, parts=parts, published=published, model_parts=model_parts))
        for name, data in extra_files.items():
            atomic_write(fresh / name, data)
        config.write(fresh, sha256=sha256, **dict(config_fields or {}))
    return Path(directory)


def is_saved_folder(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` holds a saved model's ``config.json`` and weights (not checked: reading checks them)."""
    return all((Path(folder) / name).is_file() for name in (CONFIG_FILE, WEIGHTS_FILE))


def read_folder(folder: str | os.PathLike) -> tuple[ModelConfig, StateDict, tuple[str, ...] | None, Path]:
    """Read a saved model folder: ``(config, state dict, parts, weights file)``, the weights checked by SHA-256.

    Raises:
        FileNotFoundError: the folder lacks ``config.json`` or the weights.
        CorruptWeightsError: the weights are unreadable or do not match ``config.json``'s SHA-256.
        ValueError: ``config.json`` does not check.
    """
    folder = Path(folder)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} is not a save_pretrained folder: it has no {name}")
    config, extra = ModelConfig.read(folder / CONFIG_FILE)
    state, parts = read_weights(folder / WEIGHTS_FILE, extra.get("sha256"))
    return config, state, parts, folder / WEIGHTS_FILE
