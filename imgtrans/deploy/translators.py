"""Where and in which precision a generator runs: PyTorch (float32, bfloat16) or onnxruntime (float32, int8).

A [Translator][imgtrans.deploy.translators.Translator] maps a float32 batch ``N x C x H x W`` in [-1, 1] to
its translation, whatever runs it. Every translator checks what could otherwise turn into black
or constant images written without complaint: weights that are not floating point or not finite,
inputs with NaN or inf, and outputs with NaN or inf, each reported with its likely cause.

| backend | precision | what runs | output against float32 PyTorch |
| --- | --- | --- | --- |
| ``torch`` | ``fp32`` | the model itself (eval or the paper's test mode) | the reference |
| ``torch`` | ``bf16`` | a copy with BatchNorm folded, bfloat16 weights, channels-last | 66.7 dB PSNR, max abs error 6e-3 |
| ``onnxruntime`` | ``fp32`` | an ONNX export, checked on export to 1e-4 | max abs error 6e-7 |
| ``onnxruntime`` | ``int8`` | an ONNX export quantised with calibration images | 49.3 dB PSNR, max abs error 5e-2 |

(PSNR on [0, 1] over the 106 facades test label maps, with a U-Net 256 trained for 439 steps;
the measurements and their commands are in the performance page.)

``bf16`` is offered only where the device computes bfloat16 natively (CPUs with AVX512-BF16 or
AMX, and CUDA GPUs that support it); elsewhere it would be emulated and many times slower.
"""

from __future__ import annotations

import os
from itertools import chain
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from imgtrans.devices import INSTRUCTION_FLAGS, cpu_flags, instruction_set, native_bf16  # noqa: F401 (re-exported)
from imgtrans.deploy.fusion import compile_for_inference, inference_copy
from imgtrans.inference import check_finite_input, generator_of, translate

BACKENDS: tuple[str, ...] = ("torch", "onnxruntime")
PRECISIONS: dict[str, tuple[str, ...]] = {"torch": ("fp32", "bf16"), "onnxruntime": ("fp32", "int8")}
"""The precisions each backend offers."""
class NonFiniteOutputError(RuntimeError):
    """A translation produced NaN or inf; raised instead of writing black or constant images."""


def keep_freed_memory() -> bool:
    """Ask glibc's allocator to keep freed memory for reuse rather than return it to the system.

    By default glibc maps every allocation above 32 MB afresh and unmaps it when it is freed, so
    each forward pass touches its large activations as new pages, and the kernel zero-fills them
    one page fault at a time: about a third of a U-Net 256's CPU inference time (256x256, batch 8,
    measured in docs/performance.md). PyTorch's CPU tuning guide suggests another allocator
    (jemalloc, tcmalloc) for this; raising glibc's thresholds does the same without one. It affects
    the whole process, and memory freed after a peak stays with it, so ``imgtrans translate`` calls
    it and library users opt in. Returns whether the allocator accepted it (``False`` off glibc).
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


def check_weights(model: nn.Module) -> None:
    """Raise a ``ValueError`` naming the first weight of the generator that cannot give a sound output.

    Refused: tensors that are not floating point (integer or boolean weights, from a damaged or
    foreign file), tensors holding NaN or inf, and negative BatchNorm running variances (their
    square root is NaN in eval mode).
    """
    generator = generator_of(model)
    for name, tensor in chain(generator.named_parameters(), generator.named_buffers()):
        if name.endswith("num_batches_tracked"):
            continue  # an integer counter by design
        if not tensor.is_floating_point():
            raise ValueError(
                f"weight {name} is {tensor.dtype}, not floating point: the weights are damaged or were written for "
                "something else; re-export them from the training run"
            )
        if not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise ValueError(
                f"weight {name} holds {bad} NaN or inf value(s), so every output would be NaN (black images); the "
                "training diverged or the file is damaged: use an earlier checkpoint"
            )
        if name.endswith("running_var") and (tensor < 0).any():
            raise ValueError(f"BatchNorm statistic {name} has negative variances, which give NaN outputs in eval mode")


class Translator:
    """Translate float32 batches ``N x C x H x W`` in [-1, 1]; returns float32 on the CPU.

    Attributes:
        backend: ``"torch"`` or ``"onnxruntime"``.
        precision: ``"fp32"``, ``"bf16"`` or ``"int8"``.
        in_channels: channels of the input images.
        paper_test_mode: whether it runs the paper's test mode (per image; see
            [translate][imgtrans.inference.translate]).
    """

    backend: str = ""
    precision: str = "fp32"
    in_channels: int = 3
    paper_test_mode: bool = False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The translation of ``x``, checked for NaN and inf (raises [NonFiniteOutputError][imgtrans.deploy.translators.NonFiniteOutputError])."""
        check_finite_input(x)
        y = self.run(x)
        if not torch.isfinite(y).all():
            bad = (~torch.isfinite(y)).flatten(1).any(1).nonzero().flatten().tolist()
            raise NonFiniteOutputError(
                f"the {self.describe()} output for image(s) {bad} of the batch holds NaN or inf, so it would be "
                f"written as a black or constant image; likely cause: {self.likely_cause()}"
            )
        return y

    def run(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """The raw translation, unchecked."""
        raise NotImplementedError

    def describe(self) -> str:
        """``"backend precision"``, e.g. ``"torch bf16"``."""
        return f"{self.backend} {self.precision}"

    def likely_cause(self) -> str:
        """What most often makes finite inputs give a non-finite output with this translator."""
        return (
            "activations overflowed, which finite, checked weights do only when they are far from what training "
            "gives (a diverged run?) or when the inputs are far outside [-1, 1]"
        )


class TorchTranslator(Translator):
    """The model in PyTorch: float32 as it is, or bfloat16 with BatchNorm folded (eval mode only).

    Args:
        model: a pix2pix model or a bare generator; not modified.
        precision: ``"fp32"`` or ``"bf16"``.
        device: where to run.
        paper_test_mode: dropout on and each image's own statistics (float32 only).
        compile: ``torch.compile`` with frozen weights (eval mode only; compiles once per input shape).
    """

    backend = "torch"

    def __init__(
        self,
        model: nn.Module,
        precision: str = "fp32",
        device: torch.device | str = "cpu",
        *,
        paper_test_mode: bool = False,
        compile: bool = False,
    ) -> None:
        check_precision("torch", precision)
        check_weights(model)
        self.precision, self.paper_test_mode, self.device = precision, paper_test_mode, torch.device(device)
        self.in_channels = int(getattr(generator_of(model), "in_channels", 3))
        if compile and paper_test_mode:
            raise ValueError("compile folds BatchNorm into the weights, which the paper's test mode cannot use; drop one")
        self.model, self.channels_last = model, False
        if precision == "bf16":
            if paper_test_mode:
                raise ValueError(
                    "bf16 folds BatchNorm into the convolutions (eval mode), so it cannot run the paper's test mode, "
                    "which normalises each image with its own statistics; use precision fp32 with the paper's mode"
                )
            if not native_bf16(self.device):
                raise ValueError(
                    f"this {self.device.type.upper()} has no native bfloat16 arithmetic ({instruction_set()}); bf16 "
                    "would be emulated and many times slower. Use precision fp32, or the onnxruntime backend in int8"
                )
            # Folded, converted and laid out once: under autocast, every call re-cast the weights and
            # kept BatchNorm in float32, and NCHW bf16 convolutions reorder their inputs on each call.
            self.channels_last = self.device.type == "cpu"
            memory_format = torch.channels_last if self.channels_last else torch.preserve_format
            self.model = inference_copy(model).to(self.device, torch.bfloat16, memory_format=memory_format)
        self.compiled = compile_for_inference(self.model) if compile else None

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The translation of ``x`` (float32 on the CPU)."""
        if self.precision == "bf16":
            memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
            x = x.to(self.device, torch.bfloat16).contiguous(memory_format=memory_format)
        else:
            x = x.to(self.device)
        with torch.no_grad():
            y = self.compiled(x) if self.compiled is not None else translate(
                self.model, x, paper_test_mode=self.paper_test_mode
            )
        return y.float().cpu().contiguous()


class OnnxTranslator(Translator):
    """An ONNX file (written by [export_onnx][imgtrans.deploy.onnx.export_onnx] or [quantize_onnx][imgtrans.deploy.int8.quantize_onnx]) in onnxruntime.

    Args:
        path: the ``.onnx`` file; its ``imgtrans.*`` metadata gives channels and precision.
        threads: onnxruntime's intra-op threads (default: torch's).
        keep: an object to keep alive as long as the translator (e.g. the temporary folder of the file).
    """

    backend = "onnxruntime"

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None, keep: Any = None) -> None:
        from imgtrans.deploy.onnx import ort_session, read_metadata

        self.path, self._keep = Path(path), keep
        self.metadata = read_metadata(self.path)
        self.precision = self.metadata.get("imgtrans.precision", "fp32")
        self.session = ort_session(self.path, threads)
        self.input_name = self.session.get_inputs()[0].name
        shape = self.session.get_inputs()[0].shape
        channels = self.metadata.get("imgtrans.in_channels") or (shape[1] if isinstance(shape[1], int) else 3)
        self.in_channels = int(channels)
        if self.metadata.get("imgtrans.mode", "eval") != "eval":
            raise ValueError(f"{self.path} runs in mode {self.metadata['imgtrans.mode']!r}; imgtrans runs eval-mode exports")

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """The translation of ``x`` (float32 on the CPU)."""
        array = x.detach().float().cpu().contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])

    def likely_cause(self) -> str:
        """Non-finite values in the file's weights, or (int8) a damaged quantisation."""
        return (
            f"the weights in {self.path} hold NaN or inf (check the model it was exported from with imgtrans "
            "translate --backend torch), or the file is damaged: export it again"
        )


def check_precision(backend: str, precision: str) -> None:
    """Raise a ``ValueError`` naming the valid choices when ``backend`` does not run ``precision``."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if precision not in PRECISIONS[backend]:
        others = [b for b in BACKENDS if precision in PRECISIONS[b]]
        hint = f"; {precision} runs on the {others[0]} backend" if others else ""
        raise ValueError(
            f"the {backend} backend runs precision {' or '.join(PRECISIONS[backend])}, not {precision!r}{hint}"
        )


def load_translator(
    source: str | os.PathLike,
    *,
    backend: str = "torch",
    precision: str | None = None,
    device: torch.device | str = "cpu",
    paper_test_mode: bool = False,
    compile: bool = False,
    calibration: Iterable[torch.Tensor] | None = None,
) -> Translator:
    """A translator for a model as ``imgtrans translate`` names it, or for an ``.onnx`` file.

    Args:
        source: zoo name, saved model folder, run folder, checkpoint, or an ONNX file written by
            ``imgtrans export`` (which runs on the onnxruntime backend in the file's precision).
        backend: ``"torch"`` or ``"onnxruntime"`` (the model is then exported, and checked, first).
        precision: ``"fp32"`` (default), ``"bf16"`` (torch) or ``"int8"`` (onnxruntime).
        device: torch's device; onnxruntime runs on the CPU.
        paper_test_mode: the paper's test mode (torch, fp32 only).
        compile: torch.compile with frozen weights (torch only).
        calibration: input images in [-1, 1] for int8 quantisation.
    """
    if str(source).endswith(".onnx"):
        if backend != "onnxruntime":
            raise ValueError(f"{source} is an ONNX file: run it with backend onnxruntime (--backend onnxruntime)")
        if not Path(source).is_file():
            raise FileNotFoundError(f"no such ONNX file: {source}")
        translator = OnnxTranslator(source)
        if precision is not None and precision != translator.precision:
            raise ValueError(
                f"{source} holds a {translator.precision} model; precision {precision} needs another export "
                f"(imgtrans export MODEL --format onnx --precision {precision})"
            )
        _check_onnx_options(paper_test_mode, compile)
        return translator
    precision = precision or "fp32"
    check_precision(backend, precision)
    from imgtrans.store.factory import load

    model = load(source, device="cpu" if backend == "onnxruntime" else device)
    if backend == "torch":
        if calibration is not None:
            raise ValueError("calibration images are for int8 on the onnxruntime backend; drop them with torch")
        return TorchTranslator(model, precision, device, paper_test_mode=paper_test_mode, compile=compile)
    _check_onnx_options(paper_test_mode, compile)
    check_weights(model)
    return onnx_translator(model, precision, calibration=calibration)


def onnx_translator(
    model: nn.Module, precision: str = "fp32", *, calibration: Iterable[torch.Tensor] | None = None
) -> OnnxTranslator:
    """Export ``model`` to a temporary ONNX file (quantised for ``int8``) and run it in onnxruntime."""
    import tempfile

    check_precision("onnxruntime", precision)
    folder = tempfile.TemporaryDirectory(prefix="imgtrans-onnx-")
    path = Path(folder.name) / "model.onnx"
    if precision == "int8":
        if calibration is None:
            raise ValueError(
                "int8 needs calibration images to set its ranges: pass a folder of real inputs (--calibration DIR)"
            )
        from imgtrans.deploy.int8 import quantize_onnx

        quantize_onnx(model, path, calibration)
    else:
        from imgtrans.deploy.onnx import export_onnx

        export_onnx(model, path)
    return OnnxTranslator(path, keep=folder)


def _check_onnx_options(paper_test_mode: bool, compile: bool) -> None:
    if paper_test_mode:
        raise ValueError(
            "the onnxruntime backend runs eval mode; the paper's test mode (dropout on, per-image statistics) runs "
            "on the torch backend in fp32"
        )
    if compile:
        raise ValueError("compile is for the torch backend; onnxruntime optimises its graph itself")
