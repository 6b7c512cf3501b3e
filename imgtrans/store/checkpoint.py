"""Training checkpoints: one safetensors file, written atomically, with no pickle anywhere.

Tensors (model weights, optimiser moments, RNG states) are stored as safetensors; everything
else (step, configuration, optimiser hyper-parameters, scheduler and gradient-scaler state) as
JSON in the file's metadata under the key ``imgtrans``. A checkpoint is written to a temporary
file in the same folder, flushed to disk and renamed over the old one, so a crash or a full disk
never leaves a half-written checkpoint behind.

Damage that happens later (a bad sector, a truncated copy, bytes zeroed by a failing disk) is
caught by a checksum: the SHA-256 of the metadata and of every tensor's name, dtype, shape and
bytes, stored under ``imgtrans.sha256`` and checked on every load
([verify_checkpoint][imgtrans.store.checkpoint.verify_checkpoint]). Checkpoints written before
the checksum existed load unchecked.
The checkpoint a save replaces is kept as ``previous.safetensors`` (when it was good), and
[load_good_checkpoint][imgtrans.store.checkpoint.load_good_checkpoint] falls back to it.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from imgtrans.io import atomic_link, atomic_write
from imgtrans.store.config import ModelConfig
from imgtrans.store.weights import as_os_error

FORMAT = "imgtrans-checkpoint-1"
CHECKSUM_KEY = "imgtrans.sha256"
PREVIOUS = "previous.safetensors"


class DamagedCheckpointError(ValueError):
    """A checkpoint file that cannot be read, or whose contents do not match the checksum it was saved with."""


class DamagedCheckpointWarning(UserWarning):
    """A damaged checkpoint was passed over for the previous good one."""


@dataclass
class Checkpoint:
    """The contents of a checkpoint file: named tensors and a JSON-able ``meta`` dict."""

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]
    path: Path | None = None

    def section(self, prefix: str) -> dict[str, torch.Tensor]:
        """The tensors whose names start with ``prefix + "."``, with the prefix removed."""
        start = prefix + "."
        return {k[len(start) :]: v for k, v in self.tensors.items() if k.startswith(start)}


def optimizer_to_tensors(name: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimiser's state dict into tensors and a JSON-able remainder."""
    state = optimizer.state_dict()
    tensors, values = {}, {}
    for index, slots in state["state"].items():
        for key, value in slots.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{name}.{index}.{key}"] = value
            else:
                values.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "values": values}


def optimizer_from_tensors(checkpoint: Checkpoint, name: str, meta: dict) -> dict:
    """Rebuild the state dict that [optimizer_to_tensors][imgtrans.store.checkpoint.optimizer_to_tensors] split."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in checkpoint.section(name).items():
        index, slot = key.split(".", 1)
        state.setdefault(int(index), {})[slot] = value
    for index, values in meta["values"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_tensors() -> dict[str, torch.Tensor]:
    """The torch random number generators' states (CPU, and each CUDA device)."""
    tensors = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors.update({f"rng.cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    return tensors


def restore_rng(checkpoint: Checkpoint) -> None:
    """Put the random number generators back in the state the checkpoint recorded."""
    torch.set_rng_state(checkpoint.tensors["rng.cpu"])
    cuda = checkpoint.section("rng.cuda")
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([cuda[str(i)] for i in range(min(len(cuda), torch.cuda.device_count()))])


def save_checkpoint(
    path: Path,
    model: nn.Module,
    optimizers: dict[str, torch.optim.Optimizer],
    meta: dict[str, Any],
    others: dict[str, torch.Tensor] | None = None,
) -> None:
    """Save ``model``'s weights, the optimisers, the RNG states and ``meta`` to ``path`` atomically.

    A model with a ``training_state()`` (what else it needs to resume exactly: CycleGAN's image
    pools) has it saved as the ``train.`` section, which the trainer gives back to its
    ``load_training_state``. ``others`` are saved as they are: the other processes' state under
    ``torchrun`` (see [imgtrans.train.state.process_states][]).
    """
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if callable(getattr(model, "training_state", None)):
        tensors.update({f"train.{k}": v for k, v in model.training_state().items()})
    optimizer_meta = {}
    for name, optimizer in optimizers.items():
        opt_tensors, optimizer_meta[name] = optimizer_to_tensors(f"optim.{name}", optimizer)
        tensors.update(opt_tensors)
    tensors.update(rng_tensors())
    tensors.update(others or {})
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {**meta, "format": FORMAT, "optimizers": optimizer_meta}
    text = json.dumps(meta)
    metadata = {"imgtrans": text, CHECKSUM_KEY: checksum(text, tensors)}

    def write(temporary: Path) -> None:
        try:
            save_file(tensors, str(temporary), metadata=metadata)
        except SafetensorError as error:  # safetensors reports a full disk as its own error
            raise as_os_error(error) from None

    path = Path(path)
    keep_previous(path, meta.get("step"))
    atomic_write(path, write)


def previous_path(path: str | os.PathLike) -> Path:
    """Where the checkpoint that ``path`` replaced is kept: ``previous.safetensors`` beside ``last.safetensors``."""
    path = Path(path)
    return path.with_name(PREVIOUS) if path.name == "last.safetensors" else path.with_suffix(".previous.safetensors")


def keep_previous(path: Path, step: int | None = None) -> None:
    """Before ``path`` is replaced, keep it as [previous_path][imgtrans.store.checkpoint.previous_path], if it is good.

    A hard link to a temporary name renamed over the previous one: the rotation is atomic, and
    ``path`` itself is never absent. A damaged ``path`` is not kept (the older good one stays), nor
    one of the same ``step`` as its replacement (the previous one stays an earlier state).
    """
    if not path.is_file():
        return
    try:
        kept_step = load_checkpoint(path).meta.get("step")
    except ValueError:
        return
    if step is not None and kept_step == step:
        return
    atomic_link(path, previous_path(path))


def checksum(meta: str, tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a checkpoint's metadata text and of each tensor's name, dtype, shape and bytes, by name."""
    digest = hashlib.sha256(meta.encode())
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"\0{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data if tensor.numel() else b"")
    return digest.hexdigest()


def verify_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint and check it whole: readable, an imgtrans checkpoint, and its contents match their checksum.

    The one check of "is this checkpoint good?": loading, resuming and the trainer's choice of a
    checkpoint to fall back to all call it. A checkpoint without a checksum (imgtrans 0.1 and
    until this one) is read unchecked.

    Raises:
        FileNotFoundError: no file at ``path``.
        DamagedCheckpointError: unreadable, truncated, or its contents differ from what was saved.
        ValueError: a safetensors file that is not an imgtrans checkpoint, or of another format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        message = f"{path} is not a readable checkpoint (corrupt or truncated safetensors: {reason})"
        raise DamagedCheckpointError(message) from None
    if "imgtrans" not in metadata:
        raise ValueError(f"{path} is a safetensors file but not an imgtrans training checkpoint")
    expected = metadata.get(CHECKSUM_KEY)
    if expected is not None and checksum(metadata["imgtrans"], tensors) != expected:
        raise DamagedCheckpointError(
            f"{path} is damaged: its contents do not match the checksum it was saved with (a failing disk or an "
            "incomplete copy); resume from an earlier checkpoint, or copy it again from where it came"
        )
    try:
        meta = json.loads(metadata["imgtrans"])
    except ValueError:
        raise DamagedCheckpointError(f"{path} has unreadable metadata: it is damaged") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} has checkpoint format {meta.get('format')!r}; this imgtrans reads {FORMAT!r}")
    return Checkpoint(tensors, meta, path)


def checkpoint_step(path: str | os.PathLike) -> int | None:
    """The step a checkpoint records, from its metadata alone (no tensor is read); ``None`` if unreadable."""
    return checkpoint_meta(path).get("step")


def checkpoint_meta(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's metadata alone (no tensor is read, nothing verified); ``{}`` if unreadable."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {})["imgtrans"])
    except (SafetensorError, OSError, ValueError, KeyError, TypeError):
        return {}
    return meta if isinstance(meta, dict) else {}


def trained_labels(config: ModelConfig, meta: dict[str, Any]) -> ModelConfig:
    """``config``, reading the label maps of the run's settings when it records none.

    A run on label maps from before ``config.json`` recorded them (its ``model/`` and checkpoints) says
    what its input is in its settings (``train_config``'s ``label_nc`` and ``instance``).
    """
    trained = meta.get("train_config") or {}
    label_nc = trained.get("label_nc") if isinstance(trained, dict) else None
    if config.label_nc or isinstance(label_nc, bool) or not isinstance(label_nc, int) or label_nc < 1:
        return config
    return config.with_labels(label_nc, bool(trained.get("instance", False)))


def load_good_checkpoint(path: str | os.PathLike, warn: bool = True) -> Checkpoint:
    """The checkpoint at ``path``, or, when it is damaged or missing, the previous good one beside it.

    Falling back is said in one warning ([DamagedCheckpointWarning][imgtrans.store.checkpoint.DamagedCheckpointWarning])
    naming both files and the step resumed from; ``checkpoint.path`` says which file was read.

    Raises:
        DamagedCheckpointError: ``path`` is damaged and there is no good previous checkpoint.
        FileNotFoundError: neither file exists.
    """
    path = Path(path)
    try:
        return load_checkpoint(path)
    except (DamagedCheckpointError, FileNotFoundError) as problem:
        previous = previous_path(path)
        try:
            checkpoint = load_checkpoint(previous)
        except (ValueError, FileNotFoundError):
            if isinstance(problem, DamagedCheckpointError) and previous.exists():
                raise DamagedCheckpointError(f"{problem}; the previous checkpoint {previous} is damaged too") from None
            raise problem from None
        if warn:
            warnings.warn(
                DamagedCheckpointWarning(f"{problem}; using the previous checkpoint {previous} "
                                         f"(step {checkpoint.meta.get('step')}) instead"),
                stacklevel=2,
            )  # fmt: skip
        return checkpoint


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint file written by [save_checkpoint][imgtrans.store.checkpoint.save_checkpoint], verified whole.

    See [verify_checkpoint][imgtrans.store.checkpoint.verify_checkpoint], which this is.
    """
    return verify_checkpoint(path)


def model_config(meta: dict[str, Any], source: str = "the checkpoint") -> ModelConfig:
    """The model a checkpoint's metadata describes (imgtrans 0.1 wrote it as ``build_config``, direction aside)."""
    if "model" in meta:
        return trained_labels(ModelConfig.from_dict(meta["model"], source), meta)
    direction = meta.get("train_config", {}).get("direction")
    return ModelConfig.from_dict({**meta.get("build_config", {}), "direction": direction}, source)
