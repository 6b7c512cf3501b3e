"""Where and in which precision a generator runs: PyTorch (float32, bfloat16) or onnxruntime (float32, int8).

A [Translator][imgtrans.deploy.translators.Translator] maps a float32 batch ``N x C x H x W`` in [-1, 1] to
its translation, whatever runs it. Every translator checks what could otherwise turn into black
or constant images written without complaint: weights that are not floating point or not finite,
inputs with NaN or inf, and outputs with NaN or inf, each reported with its likely cause.
[load_translator][imgtrans.deploy.translators.load_translator] is the one factory: ``imgtrans
translate``, ``imgtrans eval``, ``imgtrans app`` and Python make their translator there.

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

import copy
import os
from functools import partial
from itertools import chain
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

import numpy as np

import torch
from torch import nn

from imgtrans.data.labels import LabelInput, label_input
from imgtrans.devices import (  # noqa: F401  (keep_freed_memory: its home before it served training too)
    INSTRUCTION_FLAGS, cpu_flags, instruction_set, keep_freed_memory, native_bf16, resolve_device,
)
from imgtrans.deploy.fusion import compile_for_inference, inference_copy
from imgtrans.inference import check_finite_input, generator_of, translate

BACKENDS: tuple[str, ...] = ("torch", "onnxruntime")
PRECISIONS: dict[str, tuple[str, ...]] = {"torch": ("fp32", "bf16"), "onnxruntime": ("fp32", "int8")}
"""The precisions each backend offers."""
class NonFiniteOutputError(RuntimeError):
    """A translation produced NaN or inf; raised instead of writing black or constant images."""


def check_finite(model: nn.Module) -> None:
    """Raise a ``ValueError`` naming the first weight of the generator that is not finite floating point.

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


def pad_multiple(model: nn.Module) -> int:
    """The side multiple the generator pads its inputs to: ``2 ** num_downs`` for a U-Net, 4 for a ResNet."""
    generator = generator_of(model)
    if hasattr(generator, "num_downs"):
        return 2 ** int(generator.num_downs)
    if hasattr(generator, "multiple"):
        return int(generator.multiple)
    return 4 if type(generator).__name__ == "ResnetGenerator" else 1  # (and sides below 8 to 8)


class Translator:
    """Translate float32 batches ``N x C x H x W`` in [-1, 1]; returns float32 on the CPU.

    Attributes:
        backend: ``"torch"`` or ``"onnxruntime"``.
        precision: ``"fp32"``, ``"bf16"`` or ``"int8"``.
        in_channels: channels of the input images.
        paper_test_mode: whether it runs the paper's test mode (per image; see
            [translate][imgtrans.inference.translate]).
        direction: ``"AtoB"`` or ``"BtoA"`` as the model records it (which half of AB pairs it
            reads), or ``None``.
        multiple: the side multiple the generator pads every input to (a pass on anything smaller
            costs as much as one on this size).
        two_way: whether the model has a generator per direction (CycleGAN), so that a direction
            picks the generator, not only the half of AB pairs it reads.
        labels: what a model of label maps reads ([LabelInput][imgtrans.data.labels.LabelInput]:
            ``label_nc``, instance maps); ``None`` for a model of images.
    """

    backend: str = ""
    precision: str = "fp32"
    in_channels: int = 3
    paper_test_mode: bool = False
    direction: str | None = None
    multiple: int = 1
    two_way: bool = False
    labels: LabelInput | None = None

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
        check_finite(model)
        self.precision, self.paper_test_mode, self.device = precision, paper_test_mode, torch.device(device)
        self.in_channels = int(getattr(generator_of(model), "in_channels", 3))
        self.multiple = pad_multiple(model)
        self.direction = getattr(getattr(model, "config", None), "direction", None)
        self.two_way = callable(getattr(model, "generator_for", None))
        self.labels = label_input(model)
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
        self.multiple = int(self.metadata.get("imgtrans.multiple", 1))
        recorded = self.metadata.get("imgtrans.direction")
        self.direction = recorded if recorded in ("AtoB", "BtoA") else None
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


def check_precision(backend: str, precision: str, say: Callable[[str, str], str] = lambda flag, name: name) -> None:
    """Raise a ``ValueError`` naming the valid choices when ``backend`` does not run ``precision``.

    ``say(flag, parameter)`` picks the words for an option (see
    [load_translator][imgtrans.deploy.translators.load_translator]).
    """
    if backend not in BACKENDS:
        raise ValueError(f"{say('--backend', 'backend')} must be one of {', '.join(BACKENDS)}; got {backend!r}")
    if precision not in PRECISIONS[backend]:
        others = [b for b in BACKENDS if precision in PRECISIONS[b]]
        option = say(f"--backend {others[0]}", f"backend={others[0]!r}") if others else ""
        hint = f"; {precision} runs on the {others[0]} backend ({option})" if others else ""
        raise ValueError(
            f"the {backend} backend runs precision {' or '.join(PRECISIONS[backend])}, not {precision!r}{hint}"
        )


Words = Literal["python", "translate"]
"""Whose words a message uses: this module's parameters, or the flags of ``imgtrans translate``."""


def _said(words: Words, flag: str, parameter: str) -> str:
    return flag if words == "translate" else parameter


def load_translator(
    source: str | os.PathLike,
    *,
    backend: str = "torch",
    precision: str | None = None,
    device: torch.device | str = "cpu",
    paper_test_mode: bool = False,
    compile: bool = False,
    calibration: Iterable[torch.Tensor] | Callable[[nn.Module], Iterable[torch.Tensor]] | None = None,
    words: Words = "python",
    direction: str | None = None,
) -> Translator:
    """The translator for a model as ``imgtrans translate`` names it, or for an ``.onnx`` file: the one factory.

    ``imgtrans translate``, ``imgtrans eval``, ``imgtrans app`` and Python all make their translator
    here, with the same checks on every backend: the weights are finite floating point (in a
    model, in its export, and in an ONNX file's initializers), the options fit the backend, and
    the translator then checks every input and output for NaN and inf.

    Args:
        source: zoo name, saved model folder, run folder, checkpoint, or an ONNX file written by
            ``imgtrans export`` (which runs on the onnxruntime backend in the file's precision).
        backend: ``"torch"`` or ``"onnxruntime"`` (the model is then exported, and checked, first).
        precision: ``"fp32"`` (default), ``"bf16"`` (torch) or ``"int8"`` (onnxruntime).
        device: torch's device (``"auto"``: CUDA when present); onnxruntime runs on the CPU.
        paper_test_mode: the paper's test mode (torch, fp32 only).
        compile: torch.compile with frozen weights (torch only).
        calibration: input images in [-1, 1] for int8 quantisation, or a function of the loaded
            model that gives them (to read files in its channels and direction).
        words: whose words errors use: ``"python"`` (these parameters) or ``"translate"`` (its flags).
        direction: for a model with a generator per direction (CycleGAN), the one that translates
            (see [directed][imgtrans.deploy.translators.directed]); other models ignore it.

    The translator's ``direction`` is ``direction`` for such a model, else the one the model (or the
    file) records, or ``None``.
    """
    say = partial(_said, words)
    if str(source).endswith(".onnx"):
        if backend != "onnxruntime":
            fix = say("add --backend onnxruntime", "backend='onnxruntime'")
            raise ValueError(f"{source} is an ONNX file: run it on the onnxruntime backend ({fix})")
        _check_onnx_options(paper_test_mode, compile, say)
        if not Path(source).is_file():
            raise FileNotFoundError(f"no such ONNX file: {source}")
        check_finite_onnx(source)
        translator = OnnxTranslator(source)
        if precision is not None and precision != translator.precision:
            raise ValueError(
                f"{source} holds a {translator.precision} model, not {precision}: export another with "
                f"imgtrans export MODEL --out FILE --precision {precision}"
            )
        if calibration is not None:
            raise ValueError(f"{source} is already exported: drop {say('--calibration', 'calibration')}")
        return translator
    precision = precision or "fp32"
    check_precision(backend, precision, say)
    if calibration is not None and precision != "int8":
        raise ValueError(say(
            "--calibration is for --precision int8 (on --backend onnxruntime); drop it or add --precision int8",
            "calibration images are for precision='int8' (on backend='onnxruntime'); drop them or pass precision='int8'",
        ))  # fmt: skip
    if backend == "onnxruntime":
        _check_onnx_options(paper_test_mode, compile, say)
        if precision == "int8" and calibration is None:
            raise ValueError(say(
                "--precision int8 needs --calibration DIR: a folder of real input images to set its ranges",
                "precision='int8' needs calibration images to set its ranges: pass calibration=[images in [-1, 1]]",
            ))  # fmt: skip
    from imgtrans.store.factory import load

    where = torch.device("cpu") if backend == "onnxruntime" else resolve_device(str(device))
    model = directed(load(source, device=where), direction)
    if backend != "torch" and label_input(model) is not None:
        fix = say("drop --backend", "backend='torch'")
        raise ValueError(f"{source} reads label maps, which the {backend} backend does not encode yet: run it on "
                         f"the torch backend ({fix})")  # fmt: skip
    if backend == "torch":
        translator: Translator = TorchTranslator(
            model, precision, where, paper_test_mode=paper_test_mode, compile=compile
        )
    else:
        check_finite(model)
        images = calibration(model) if callable(calibration) else calibration
        translator = onnx_translator(model, precision, calibration=images)
    return translator


def directed(model: nn.Module, direction: str | None) -> nn.Module:
    """``model`` translating in ``direction``, when it has a generator per direction (CycleGAN); else ``model``.

    The result shares the model's networks and records ``direction`` in its ``config``, so that
    everything that takes the model (translators, ONNX export and its metadata, scoring) uses the
    generator of that direction. A direction whose generator the weights do not hold (a published
    CycleGAN file holds one) is refused in one line.
    """
    pick = getattr(model, "generator_for", None)
    if direction is None or not callable(pick):
        return model
    pick(direction)  # refuses a generator the weights do not hold
    view = copy.copy(model)
    view.config = model.config.with_direction(direction)
    return view


def check_finite_onnx(path: str | os.PathLike) -> None:
    """Raise a ``ValueError`` naming the first floating-point initializer of an ONNX file that holds NaN or inf."""
    from imgtrans.deploy.onnx import _require

    onnx = _require("onnx")
    from onnx import numpy_helper

    proto = onnx.load_model(str(path))
    for initializer in proto.graph.initializer:
        array = numpy_helper.to_array(initializer)
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            bad = int((~np.isfinite(array)).sum())
            raise ValueError(
                f"weight {initializer.name} of {path} holds {bad} NaN or inf value(s), so every output would be NaN "
                "(black images); the model it was exported from diverged or the file is damaged: export it again"
            )


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
                "int8 needs calibration images to set its ranges: pass calibration=[real input images in [-1, 1]]"
            )
        from imgtrans.deploy.int8 import quantize_onnx

        quantize_onnx(model, path, calibration)
    else:
        from imgtrans.deploy.onnx import export_onnx

        export_onnx(model, path)
    return OnnxTranslator(path, keep=folder)


def _check_onnx_options(paper_test_mode: bool, compile: bool, say: Callable[[str, str], str]) -> None:
    if paper_test_mode:
        raise ValueError(
            "the onnxruntime backend runs eval mode; the paper's test mode (dropout on, per-image statistics) runs "
            f"on the torch backend in fp32: drop {say('--paper-test-mode', 'paper_test_mode')}"
        )
    if compile:
        raise ValueError(f"compile is for the torch backend; onnxruntime optimises its graph itself: drop "
                         f"{say('--compile', 'compile')}")  # fmt: skip
