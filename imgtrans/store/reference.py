"""Reading checkpoints of the reference PyTorch pix2pix/CycleGAN code into imgtrans models.

The reference networks (``networks.py``: ``UnetGenerator``, ``ResnetGenerator``,
``NLayerDiscriminator``, ``PixelDiscriminator``) and imgtrans's compute the same layers in the
same order, with different module names. [convert_reference][imgtrans.store.reference.convert_reference] pairs their tensors in that
order and checks that each pair plays the same role (``weight``, ``bias``, running
statistics) with the same shape, so a checkpoint that does not fit fails loudly.

Reference files are read with ``torch.load(weights_only=True)``: no pickled code is ever run.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any, Mapping, Union

import torch

from imgtrans.blocks import ResnetGenerator, UNetGenerator
from imgtrans.store.config import ModelConfig
from imgtrans.models.parts import REFERENCE_ARCHS as ARCHS
from imgtrans.registry import entry
from imgtrans.store.weights import StateDict

PathLike = Union[str, os.PathLike]

# Order of the tensors of one module in a state dict: parameters, then buffers.
_ROLE_ORDER = {"weight": 0, "bias": 1, "running_mean": 2, "running_var": 3, "num_batches_tracked": 4}


def read_reference(path: PathLike) -> StateDict:
    """Read a reference ``.pth`` checkpoint as a state dict, never executing pickled code.

    Accepts a plain state dict (as the reference code saves) or a dict holding one under
    ``"state_dict"``; strips the ``module.`` prefix that ``DataParallel`` adds.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no reference checkpoint at {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(
            f"{path} holds more than tensors (torch.load(weights_only=True) refused it: "
            f"{str(error).splitlines()[0]}). imgtrans never unpickles code; re-save it from a trusted "
            "environment as a plain state dict: torch.save(net.state_dict(), path)"
        ) from None
    except Exception as error:  # truncated or not a torch file at all
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({type(error).__name__}: {error})") from None
    return as_state_dict(obj, str(path))


def as_state_dict(obj: Any, source: str = "the checkpoint") -> StateDict:
    """Check that ``obj`` is a mapping of names to tensors and strip ``module.`` prefixes."""
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{source} is not a state dict (a mapping of names to tensors)")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _module_order(key: str) -> tuple:
    """Sort key giving the reference modules' registration order: numeric path, then role."""
    *path, role = key.split(".")
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in path) + (_ROLE_ORDER.get(role, 9),)


def reference_arguments(state_dict: Mapping[str, torch.Tensor], arch: str) -> dict[str, Any]:
    """Constructor arguments of ``arch`` that fit a reference state dict.

    Channels and width are read from the first and last convolutions, the norm from the
    presence of running statistics; U-Nets get the reference's dropout placement.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown reference architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    convs = [v for k, v in sorted(state_dict.items(), key=lambda kv: _module_order(kv[0])) if v.ndim == 4]
    if not convs:
        raise ValueError("the state dict holds no convolution weights")
    first, last = convs[0], convs[-1]
    args: dict[str, Any] = {
        "in_channels": first.shape[1],
        "base_channels": first.shape[0],
        "norm": "batch" if any(k.endswith("running_mean") for k in state_dict) else "instance",
    }
    target = entry(arch).target
    if target is UNetGenerator:
        args["out_channels"] = last.shape[1]  # a ConvTranspose2d: (in, out, kh, kw)
        args["dropout_layout"] = "reference"
    elif target is ResnetGenerator:
        args["out_channels"] = last.shape[0]
    return args


def _layout(arch: str, args: Mapping[str, Any]) -> StateDict:
    with torch.device("meta"):
        return ModelConfig.create(arch, args).instantiate().state_dict()


def convert_reference(state_dict_or_path: Mapping[str, torch.Tensor] | PathLike, arch: str) -> StateDict:
    """Map a reference checkpoint onto imgtrans's key layout for the registered ``arch``.

    Args:
        state_dict_or_path: a reference state dict, or the path of a ``.pth`` file holding one
            (read with ``torch.load(weights_only=True)``).
        arch: ``unet256``, ``unet128``, ``resnet9``, ``resnet6``, ``patchgan70``,
            ``patchgan16``, ``patchgan286`` or ``pixelgan``.

    Returns:
        A state dict that ``build(arch, **reference_arguments(sd, arch))`` loads with
        ``strict=True``; at full width (64) that is ``build(arch)`` itself.

    Raises:
        ValueError: when the checkpoint does not have the architecture's layout; the message
            names the first tensor that does not fit.
    """
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        source = read_reference(state_dict_or_path)
    else:
        source = as_state_dict(state_dict_or_path)
    target = _layout(arch, reference_arguments(source, arch))
    ordered = sorted(source.items(), key=lambda kv: _module_order(kv[0]))
    if len(ordered) != len(target):
        raise ValueError(
            f"the checkpoint has {len(ordered)} tensors but {arch} has {len(target)}: "
            f"it is not a reference {arch} checkpoint{_guess(source, arch)}"
        )
    converted: StateDict = {}
    for (src_key, tensor), (dst_key, slot) in zip(ordered, target.items()):
        if src_key.rsplit(".", 1)[-1] != dst_key.rsplit(".", 1)[-1] or tensor.shape != slot.shape:
            raise ValueError(
                f"the checkpoint does not fit {arch}: its {src_key} {tuple(tensor.shape)} falls on "
                f"{dst_key} {tuple(slot.shape)}{_guess(source, arch)}"
            )
        converted[dst_key] = tensor
    return converted


def _guess(source: StateDict, tried: str) -> str:
    """`` (it fits X)`` for the other architectures the checkpoint fits, if any."""
    fits = []
    for arch in ARCHS:
        if arch == tried:
            continue
        target = _layout(arch, reference_arguments(source, arch))
        shapes = [v.shape for _, v in sorted(source.items(), key=lambda kv: _module_order(kv[0]))]
        if shapes == [v.shape for v in target.values()]:
            fits.append(arch)
    return f" (its layout fits {', '.join(fits)})" if fits else ""


def load_reference(state_dict_or_path: Mapping[str, torch.Tensor] | PathLike, arch: str) -> torch.nn.Module:
    """Build ``arch`` with the checkpoint's channels and width and load it strictly."""
    if isinstance(state_dict_or_path, (str, os.PathLike)):
        source = read_reference(state_dict_or_path)
    else:
        source = as_state_dict(state_dict_or_path)
    model = ModelConfig.create(arch, reference_arguments(source, arch)).instantiate()
    model.load_state_dict(convert_reference(source, arch), strict=True)
    return model

