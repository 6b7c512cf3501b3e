"""Reading checkpoints of the reference PyTorch pix2pix/CycleGAN code, and of pix2pixHD's, into imgtrans models.

The reference networks (``networks.py``: ``UnetGenerator``, ``ResnetGenerator``,
``NLayerDiscriminator``, ``PixelDiscriminator``; pix2pixHD's ``GlobalGenerator``, ``LocalEnhancer``
and ``MultiscaleDiscriminator``) and imgtrans's compute the same layers in the same order, with
different module names. [convert_reference][imgtrans.store.reference.convert_reference] pairs their tensors in that
order and checks that each pair plays the same role (``weight``, ``bias``, running
statistics) with the same shape, so a checkpoint that does not fit fails loudly.

Reference files are read with ``torch.load(weights_only=True)``: no pickled code is ever run.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path
from typing import Any, Mapping, Union

import torch

from imgtrans.blocks import GlobalGenerator, LocalEnhancer, MultiscaleDiscriminator, ResnetGenerator, UNetGenerator
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


_NATURAL = re.compile(r"(\d+)")


def _natural(part: str) -> tuple:
    """``"model1_2"`` -> ``("model", 1, "_", 2, "")``: numbers inside names compare as numbers."""
    return tuple(int(p) if i % 2 else p for i, p in enumerate(_NATURAL.split(part)))


def _module_order(key: str) -> tuple:
    """Sort key giving the reference modules' registration order: numeric path, then role.

    A module's own tensors come before its children's, as in ``state_dict()``: the role's
    ``("", -1, order)`` sorts before any path part (``("", n, "")`` or ``("name", ...)``).
    """
    *path, role = key.split(".")
    return tuple(_natural(p) for p in path) + (("", -1, _ROLE_ORDER.get(role, 9)),)


_INSTANCE_BUFFERS = {"running_mean", "running_var", "num_batches_tracked"}


def _modules(state_dict: Mapping[str, torch.Tensor]) -> dict[str, set[str]]:
    """``{module path: roles}``: which tensors (``weight``, ``running_mean``, ...) each module holds."""
    modules: dict[str, set[str]] = {}
    for key in state_dict:
        module, _, role = key.rpartition(".")
        modules.setdefault(module, set()).add(role)
    return modules


def upgrade_legacy(state_dict: Mapping[str, torch.Tensor]) -> tuple[StateDict, int]:
    """Bring a checkpoint saved by an old PyTorch to today's layout; returns it and the tensors dropped.

    - PyTorch before 0.4 saved ``running_mean``/``running_var`` for every ``InstanceNorm2d``, even
      without affine parameters (the published 2017 CycleGAN models hold them). Those layers use
      each image's own statistics, so the buffers never entered a result: they are dropped, as the
      reference's loader does (``__patch_instance_norm_state_dict``). Such a module holds both
      running statistics and nothing but buffers; a BatchNorm also holds its ``weight`` and ``bias``.
    - PyTorch before 0.4.1 saved BatchNorm without ``num_batches_tracked``; it is added as 0, as
      ``BatchNorm2d`` itself does when loading such a file (it only matters with ``momentum=None``).
    """
    upgraded: StateDict = dict(state_dict)
    dropped = 0
    for module, roles in _modules(state_dict).items():
        prefix = f"{module}." if module else ""
        if {"running_mean", "running_var"} <= roles <= _INSTANCE_BUFFERS:  # an InstanceNorm2d(affine=False)
            for role in ("running_mean", "running_var", "num_batches_tracked"):
                dropped += upgraded.pop(prefix + role, None) is not None
        elif {"weight", "running_mean"} <= roles and "num_batches_tracked" not in roles:
            upgraded[prefix + "num_batches_tracked"] = torch.zeros((), dtype=torch.long)
    return upgraded, dropped


def _convs(state_dict: Mapping[str, torch.Tensor], prefix: str = "") -> list[torch.Tensor]:
    """The convolution weights under ``prefix``, in module order."""
    ordered = sorted(state_dict.items(), key=lambda kv: _module_order(kv[0]))
    return [v for k, v in ordered if k.startswith(prefix) and k.endswith(".weight") and v.ndim == 4]


def _count(state_dict: Mapping[str, torch.Tensor], pattern: str) -> int:
    """How many distinct first groups of ``pattern`` (a regular expression) the keys hold."""
    return len({m.group(1) for k in state_dict if (m := re.match(pattern, k))})


def _global_arguments(state_dict: Mapping[str, torch.Tensor], prefix: str = "model.") -> dict[str, Any]:
    """``n_downsampling`` and ``n_blocks`` of a pix2pixHD global generator held under ``prefix``."""
    top = [v for k, v in state_dict.items() if re.fullmatch(re.escape(prefix) + r"\d+\.weight", k) and v.ndim == 4]
    return {
        # one stride-2 convolution down and one transposed convolution up per level, all 3x3
        "n_downsampling": sum(v.shape[-1] == 3 for v in top) // 2,
        "n_blocks": _count(state_dict, re.escape(prefix) + r"(\d+)\.conv_block\."),
    }


_SCALE = re.compile(r"^(scale(\d+)_layer\d+|layer(\d+))\.")


def _scales(state_dict: Mapping[str, torch.Tensor]) -> int:
    """Scales of a pix2pixHD ``MultiscaleDiscriminator`` (``scaleI_layerJ.*`` or ``layerI.*`` keys)."""
    return len({m.group(2) or m.group(3) for k in state_dict if (m := _SCALE.match(k))})


def _reverse_scales(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Renumber the reference's scales so that scale 0 is the full-resolution one.

    NVIDIA's ``MultiscaleDiscriminator.forward`` runs its ``scale{num_D-1-i}`` modules on the image
    downsampled ``i`` times: its scale 0 sees the coarsest image. imgtrans's ``scales[0]`` sees the
    full-resolution one, as the outputs are ordered; all scales have the same shapes, so only this
    renumbering keeps the pairing right.
    """
    last = _scales(state_dict) - 1

    def rename(key: str) -> str:
        match = _SCALE.match(key)
        if match is None:
            return key
        if match.group(2) is not None:
            return re.sub(r"^scale\d+", f"scale{last - int(match.group(2))}", key)
        return re.sub(r"^layer\d+", f"layer{last - int(match.group(3))}", key)

    return {rename(k): v for k, v in state_dict.items()}


def reference_arguments(state_dict: Mapping[str, torch.Tensor], arch: str) -> dict[str, Any]:
    """Constructor arguments of ``arch`` that fit a reference state dict.

    Channels and width are read from the first and last convolutions, the norm from the
    presence of running statistics (of BatchNorm: old InstanceNorm buffers do not count, see
    [upgrade_legacy][imgtrans.store.reference.upgrade_legacy]); U-Nets get the reference's dropout
    placement; pix2pixHD's depths and block counts are counted from the module names.
    """
    if arch not in ARCHS:
        raise ValueError(f"unknown reference architecture {arch!r}; choose one of {', '.join(ARCHS)}")
    state_dict, _ = upgrade_legacy(state_dict)
    convs = _convs(state_dict)
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
    elif target in (ResnetGenerator, GlobalGenerator):
        args["out_channels"] = last.shape[0]
    if target is GlobalGenerator:
        args.update(_global_arguments(state_dict))
    elif target is LocalEnhancer:
        enhancers = _count(state_dict, r"model(\d+)_1\.")
        local = _convs(state_dict, f"model{enhancers}_2.") if enhancers else []
        if not local:
            raise ValueError(
                "no local enhancer in the state dict (no model1_1.* keys): it is not a pix2pixHD local generator"
            )
        first = _convs(state_dict, "model1_1.")[0]
        args.update(
            in_channels=first.shape[1],
            base_channels=local[-1].shape[1],  # the head: (out, ngf, 7, 7)
            out_channels=local[-1].shape[0],
            n_local_enhancers=enhancers,
            n_blocks_local=_count(state_dict, r"model1_2\.(\d+)\.conv_block\."),
            **_global_arguments(state_dict),
        )
    elif target is MultiscaleDiscriminator:
        scales = _scales(state_dict)
        if scales == 0:
            raise ValueError("no scaleI_layerJ.* or layerI.* keys: it is not a pix2pixHD multi-scale discriminator")
        per_scale = len(convs) // scales  # n_layers + 2 convolutions each
        args.update(num_scales=scales, n_layers=per_scale - 2)
    return args


def _layout(arch: str, args: Mapping[str, Any]) -> StateDict:
    with torch.device("meta"):
        return ModelConfig.create(arch, args).instantiate().state_dict()


def _described(arch: str, args: Mapping[str, Any]) -> str:
    """``resnet9 (norm batch, base_channels 8)``: the layout a checkpoint was compared with."""
    shown = ", ".join(f"{k} {v}" for k, v in args.items() if k not in ("dropout_layout",))
    return f"{arch} ({shown})"


def convert_reference(state_dict_or_path: Mapping[str, torch.Tensor] | PathLike, arch: str) -> StateDict:
    """Map a reference checkpoint onto imgtrans's key layout for the registered ``arch``.

    Args:
        state_dict_or_path: a reference state dict, or the path of a ``.pth`` file holding one
            (read with ``torch.load(weights_only=True)``).
        arch: ``unet256``, ``unet128``, ``resnet9``, ``resnet6``, ``patchgan70``, ``patchgan16``,
            ``patchgan286`` or ``pixelgan`` (pix2pix and CycleGAN, instance or batch norm, any
            number of channels), or ``pix2pixhd-global``, ``pix2pixhd-local`` or
            ``multiscale-patchgan`` (pix2pixHD's ``latest_net_G.pth`` and ``latest_net_D.pth``).

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
    arguments = reference_arguments(source, arch)
    target = _layout(arch, arguments)
    source, dropped = upgrade_legacy(source)
    if entry(arch).target is MultiscaleDiscriminator:
        source = _reverse_scales(source)
    ordered = sorted(source.items(), key=lambda kv: _module_order(kv[0]))
    if len(ordered) != len(target):
        legacy = f", after dropping {dropped} InstanceNorm buffers of an old PyTorch" if dropped else ""
        raise ValueError(
            f"the checkpoint holds {len(ordered)} tensors{legacy}, where {_described(arch, arguments)} "
            f"holds {len(target)}: it is not a reference {arch} checkpoint{_guess(source, arch)}"
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
        try:
            target = _layout(arch, reference_arguments(source, arch))
        except (ValueError, TypeError, IndexError, RuntimeError):
            continue  # its keys do not even describe this architecture
        candidate = _reverse_scales(source) if entry(arch).target is MultiscaleDiscriminator else source
        shapes = [v.shape for _, v in sorted(candidate.items(), key=lambda kv: _module_order(kv[0]))]
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

