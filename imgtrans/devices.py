"""Where models run: choosing a device, and what it computes natively (bfloat16, int8 dot products)."""

from __future__ import annotations

from functools import lru_cache

import torch


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``"auto"`` means CUDA when present (this process's GPU under torchrun), else the CPU.

    Raises:
        ValueError: not a device name.
        RuntimeError: CUDA asked for where there is none.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"{name!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {name!r} was asked for but CUDA is not available; use the CPU (cpu)")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


INSTRUCTION_FLAGS: tuple[str, ...] = (
    "avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "avx512_vnni", "avx_vnni", "amx_int8",
)  # fmt: skip


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (from ``/proc/cpuinfo``; empty where that does not exist)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def instruction_set() -> str:
    """What this CPU offers for inference, e.g. ``"AVX512: avx2 fma avx512f avx512_bf16 avx512_vnni"``.

    bfloat16 speed depends on ``avx512_bf16``/``amx_bf16``, int8 speed on ``avx512_vnni``/``avx_vnni``/``amx_int8``:
    report it beside every speed measured.
    """
    present = [flag for flag in INSTRUCTION_FLAGS if flag in cpu_flags()]
    return f"{torch.backends.cpu.get_cpu_capability()}: {' '.join(present) or 'flags unknown'}"


def native_bf16(device: torch.device | str = "cpu") -> bool:
    """Whether ``device`` computes bfloat16 natively (oneDNN's check on a CPU: AVX512-BF16 or AMX)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
