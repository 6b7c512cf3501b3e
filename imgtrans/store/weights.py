"""State dicts on disk: safetensors files with a checksum, and loading them into a model after checking them.

A weights file may hold a whole model or some of its top-level parts (the published pix2pix
models hold the generator alone); the file's metadata ``imgtrans.parts`` says which. Before any
tensor is copied, [load_weights][imgtrans.store.weights.load_weights] checks every key, shape and
dtype, and that every value is finite, so a file from another architecture, an integer tensor or
the weights of a diverged run are refused with their names instead of producing black images.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from pathlib import Path
from typing import Any, Mapping

import safetensors
import torch
from safetensors.torch import save_file
from torch import nn

from imgtrans.io import atomic_write, file_sha256

StateDict = dict[str, torch.Tensor]
logger = logging.getLogger("imgtrans")
PARTS_KEY = "imgtrans.parts"


class CorruptWeightsError(ValueError):
    """A weights file that cannot be read as safetensors or does not match its recorded SHA-256."""


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


def write_weights(path: str | os.PathLike, state: Mapping[str, torch.Tensor], parts: tuple[str, ...] | None = None) -> str:
    """Write ``state`` as safetensors atomically (``parts`` in its metadata); returns its SHA-256.

    Raises:
        WriteError: the disk is full or read-only (safetensors' own serialisation errors included);
            the previous file is kept whole.
    """
    metadata = {"format": "pt", **({PARTS_KEY: ",".join(parts)} if parts else {})}
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}

    def write(temporary: Path) -> None:
        try:
            save_file(tensors, str(temporary), metadata=metadata)
        except safetensors.SafetensorError as error:
            raise as_os_error(error) from None

    return file_sha256(atomic_write(path, write))


def as_os_error(error: safetensors.SafetensorError) -> OSError:
    """A safetensors serialisation error as the ``OSError`` it is (``I/O error: ... (os error 28)``: a full disk)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    code = int(match.group(1)) if (match := re.search(r"(?:os error |code: )(\d+)", text)) else errno.EIO
    return OSError(code, os.strerror(code) if match else f"safetensors could not write the file ({text})")


def top_level(state: Mapping[str, Any]) -> list[str]:
    """The top-level submodule names of a state dict, in order."""
    return list(dict.fromkeys(k.split(".", 1)[0] for k in state))


def select_parts(state: Mapping[str, torch.Tensor], parts: tuple[str, ...] | None) -> StateDict:
    """The entries of ``state`` under the top-level ``parts`` (all of them for ``None``)."""
    if parts is None:
        return dict(state)
    if unknown := [p for p in parts if p not in top_level(state)]:
        raise ValueError(f"the model has no part {', '.join(map(repr, unknown))}; its parts are {', '.join(top_level(state))}")
    return {k: v for k, v in state.items() if k.split(".", 1)[0] in parts}


def load_weights(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    parts: tuple[str, ...] | None = None,
    source: str = "the weights",
) -> nn.Module:
    """Load ``state`` into ``model`` after [check_state_dict][imgtrans.store.weights.check_state_dict].

    Args:
        model: the module to fill.
        state: its state dict, or the part of it under ``parts``.
        parts: the top-level submodules ``state`` covers; ``None`` means all of them.
        source: where the weights come from, for messages.

    Returns:
        ``model``, with ``untrained_parts`` naming the submodules the weights did not cover.
    """
    check_state_dict(model.state_dict(), state, parts, source)
    model.load_state_dict(dict(state), strict=parts is None)
    model.untrained_parts = tuple(p for p in top_level(model.state_dict()) if parts is not None and p not in parts)
    if model.untrained_parts:
        logger.info("%s holds the %s only; %s keep their initial weights", source, ", ".join(parts), ", ".join(model.untrained_parts))
    return model


def check_state_dict(
    expected: Mapping[str, torch.Tensor],
    state: Mapping[str, torch.Tensor],
    parts: tuple[str, ...] | None = None,
    source: str = "the weights",
) -> None:
    """Check that ``state`` fits a model whose state dict is ``expected`` (its layout on ``meta`` is enough).

    Raises:
        ValueError: missing, unexpected or mis-shaped keys, tensors of a kind the model does not
            hold (integers or booleans for floating-point weights), or NaN/infinite values; each
            listed by name.
    """
    if parts is not None:
        if unknown := [p for p in parts if p not in top_level(expected)]:
            raise ValueError(f"{source} holds part {', '.join(map(repr, unknown))}, which the model does not have")
        expected = select_parts(expected, parts)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [
        f"{k} {tuple(state[k].shape)} where the model has {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    wrong_kind = [
        f"{k} ({state[k].dtype} where the model has {v.dtype})"
        for k, v in expected.items()
        if k in state and v.is_floating_point() and not state[k].is_floating_point()
    ]
    if missing or unexpected or misshaped or wrong_kind:
        problems = [
            f"{label}: {_listing(keys)}"
            for label, keys in (
                ("missing keys", missing),
                ("unexpected keys", unexpected),
                ("mis-shaped", misshaped),
                ("not floating point", wrong_kind),
            )
            if keys
        ]
        raise ValueError(
            f"the weights in {source} do not fit the model; " + "; ".join(problems) + ". They were saved from "
            "another architecture or other arguments, or damaged: from_pretrained rebuilds the right one from config.json"
        )
    if bad := [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]:
        raise ValueError(
            f"the weights in {source} hold NaN or infinite values in {len(bad)} tensor(s) ({_listing(bad, 3)}): "
            "they come from a run that diverged. Use an earlier checkpoint, or train again with a lower learning rate"
        )


def _listing(keys: list[str], limit: int = 10) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")
