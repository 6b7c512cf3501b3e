"""Where and how a run computes: the device, mixed precision, and the networks' distributed wrappers.

One owner for each of these decisions, so that the training loop
([imgtrans.train.trainer][imgtrans.train.trainer]) only asks:

- **precision.** ``fp32``; ``bf16`` autocast (CUDA, or a CPU with native bfloat16, else a
  warning: it is emulated and very slow); ``fp16`` autocast with a gradient scaler (CUDA; on the
  CPU only to check that code path, with a warning). User code never calls autocast or a scaler.
- **networks.** A model lists its trainable networks (``model.networks()``, see
  [imgtrans.train.objective][imgtrans.train.objective]); under ``torchrun`` each is wrapped in
  ``DistributedDataParallel`` (optionally with synchronised BatchNorm), and the training step runs
  on a *view* of the model with the wrappers in place of the networks. Nothing here knows a
  network's name.
- **memory.** On the CPU the trainer asks glibc to keep freed memory
  ([keep_freed_memory][imgtrans.devices.keep_freed_memory]): each step's 32 MB gradients are reused
  rather than page-faulted in afresh.
- **memory format.** With ``channels_last`` every network and batch is channels-last. Without it,
  on the CPU, a BatchNorm PatchGAN is still made channels-last, where oneDNN's convolutions run
  faster (U-Net 256 + 70x70 PatchGAN step on 2 AVX-512 cores: bf16 402 -> 376 ms, fp32
  664 -> 647 ms). The U-Net is made channels-last too where the CPU has AMX, whose bf16
  convolutions run up to twice as fast channels-last (the step on 2 AMX cores: bf16 257 -> 238 ms
  at batch 1 and 639 -> 526 ms at batch 4; fp32 483 -> 480 and 1640 -> 1552 ms), and stays
  contiguous elsewhere: on 2 Zen 5 cores, without AMX, its small-map products and skip
  concatenations made the whole step slower channels-last (fp32 631 -> 646 ms).
"""

from __future__ import annotations

import contextlib
import copy
import warnings

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from imgtrans.blocks.patchgan import PatchDiscriminator
from imgtrans.blocks.unet import UNetGenerator
from imgtrans.devices import has_amx, keep_freed_memory, native_bf16
from imgtrans.train.settings import SettingError, SettingWarning


def check_precision(amp: str, device: torch.device) -> None:
    """Refuse a precision the device cannot run; warn about one it runs only slowly or for checking."""
    if amp == "fp16" and device.type == "cpu":
        warnings.warn(
            SettingWarning(
                "fp16 autocast on the CPU is for checking the fp16 code path (gradient scaler included); it is not "
                "faster than fp32 here. Use {amp} on a CPU with native bfloat16",
                amp="bf16",
            ),
            stacklevel=3,
        )
    if amp == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise SettingError("amp", "bf16 is not supported by this GPU; use fp16")
    if amp == "bf16" and device.type == "cpu" and not native_bf16("cpu"):
        warnings.warn(
            SettingWarning(
                "this CPU has no native bfloat16 arithmetic (AVX512-BF16 or AMX): bf16 autocast runs in a slow "
                "emulation here, hundreds of times slower than fp32; use {amp} on this machine",
                amp="fp32",
            ),
            stacklevel=3,
        )


def autocast(amp: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Mixed precision as ``amp`` says (a no-op for fp32)."""
    if amp == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def arrange_memory(model: nn.Module, device: torch.device, channels_last: bool) -> None:
    """Memory as the module's docstring says: freed memory kept on the CPU; each network's memory format."""
    if device.type == "cpu":
        keep_freed_memory()
    if channels_last:
        model.to(memory_format=torch.channels_last)
        return
    for network in networks_of(model).values():
        if device.type == "cpu" and faster_channels_last(network):
            network.to(memory_format=torch.channels_last)


def faster_channels_last(network: nn.Module) -> bool:
    """Whether ``network`` trains faster channels-last on this CPU (as measured; others not measured faster).

    A PatchGAN with BatchNorm on any CPU; the U-Net on a CPU with AMX.
    """
    if isinstance(network, UNetGenerator):
        return has_amx()
    return isinstance(network, PatchDiscriminator) and any(isinstance(m, nn.BatchNorm2d) for m in network.modules())


def grad_scaler(amp: str, device: torch.device) -> torch.amp.GradScaler:
    """The gradient scaler: active for fp16 only (bf16 has fp32's range)."""
    return torch.amp.GradScaler(device.type, enabled=amp == "fp16")


def networks_of(model: nn.Module) -> dict[str, nn.Module]:
    """``model.networks()``: its trainable networks by attribute name (see [imgtrans.train.objective][])."""
    networks = model.networks()
    for name, network in networks.items():
        if getattr(model, name, None) is not network:
            raise TypeError(f"{type(model).__name__}.networks() must name its attributes; {name!r} is not one")
    return networks


def with_networks(model: nn.Module, replacements: dict[str, nn.Module]) -> nn.Module:
    """The same model around other networks (``{attribute: module}``), e.g. ``DistributedDataParallel`` wrappers.

    The view shares everything else with ``model`` (parameters, losses, settings); ``model`` is left
    unchanged, so checkpoints and exports keep the plain networks' names.
    """
    view = copy.copy(model)
    view._modules = dict(model._modules)  # a shallow copy must not share the submodule table
    for name, network in replacements.items():
        setattr(view, name, network)
    return view


def sync_batchnorm(model: nn.Module, device: torch.device) -> None:
    """Replace BatchNorm by SyncBatchNorm in each of the model's networks (statistics across processes; CUDA only)."""
    if device.type != "cuda":
        raise SettingError("sync_bn", "needs CUDA: torch synchronises BatchNorm statistics only between GPUs")
    for name, network in networks_of(model).items():
        setattr(model, name, nn.SyncBatchNorm.convert_sync_batchnorm(network))


def distributed_view(model: nn.Module, device: torch.device, find_unused_parameters: bool = False) -> nn.Module:
    """``model`` with each network wrapped in ``DistributedDataParallel`` (one process per device)."""
    ids = [device.index] if device.type == "cuda" else None
    # Buffers are not broadcast: a discriminator runs twice (real, fake) before one backward, which the
    # in-place buffer broadcast breaks (pytorch#175024); BatchNorm statistics stay per process.
    return with_networks(model, {
        name: DistributedDataParallel(
            network, device_ids=ids, broadcast_buffers=False, find_unused_parameters=find_unused_parameters
        )
        for name, network in networks_of(model).items()
    })  # fmt: skip


def no_sync(network: nn.Module) -> contextlib.AbstractContextManager:
    """Skip the gradient all-reduce of a DDP-wrapped ``network`` (a no-op for a plain one)."""
    return network.no_sync() if isinstance(network, DistributedDataParallel) else contextlib.nullcontext()
