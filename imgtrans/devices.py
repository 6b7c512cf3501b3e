"""Where models run: choosing a device, what it computes natively (bfloat16, int8 dot products), its allocator."""

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


def has_amx() -> bool:
    """Whether this CPU has AMX tiles for bfloat16 (Intel Xeon since Sapphire Rapids): oneDNN's fastest convolutions."""
    return "amx_bf16" in cpu_flags()


def keep_freed_memory() -> bool:
    """Ask glibc's allocator to keep freed memory for reuse rather than return it to the system.

    By default glibc maps every allocation above 32 MB afresh and unmaps it when it is freed, so
    each forward pass touches its large activations as new pages, and the kernel zero-fills them
    one page fault at a time: about a third of a U-Net 256's CPU inference time (256x256, batch 8,
    measured in docs/performance.md), and in training the 32 MB gradients and bf16 weight copies of
    the decoder's deepest layers (pix2pix step, 256x256 batch 1: bf16 403 -> 365 ms, fp32
    652 -> 631 ms). PyTorch's CPU tuning guide suggests another allocator
    (jemalloc, tcmalloc) for this; raising glibc's thresholds does the same without one. It affects
    the whole process, and memory freed after a peak stays with it, so ``imgtrans translate`` and
    a [Trainer][imgtrans.train.Trainer] on the CPU call it, and other library users opt in. Returns whether the allocator accepted it (``False`` off glibc).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    return bool(mallopt(m_mmap_threshold, 1 << 30)) and bool(mallopt(m_trim_threshold, (1 << 31) - 1))
