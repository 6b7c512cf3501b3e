r"""int8 ONNX models: static quantisation with a calibration set of real images, checked against float32.

Weights are quantised per output channel, symmetric, to int8; activations per tensor to uint8,
with ranges observed on calibration images (min/max). onnxruntime then runs every convolution as
an int8 product (``QLinearConv``; VNNI on x86 CPUs that have it). The decoder's transposed
convolutions are first rewritten as ordinary ones
([SubpixelConvTranspose2d][imgtrans.blocks.subpixel.SubpixelConvTranspose2d]), since onnxruntime has no
int8 ``ConvTranspose``; without that, two thirds of the arithmetic would stay in float32 behind
quantise/dequantise pairs, slower than float32 alone.

Quantisation changes the output: the result is compared with PyTorch's float32 eval mode on the
calibration images, its PSNR recorded in the file, and a model below
[MIN_PSNR][imgtrans.deploy.int8.MIN_PSNR] is refused rather than written.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch
from torch import nn

from imgtrans.deploy.onnx import ExportError, _require, export_onnx, onnx_metadata, ort_session, set_metadata
from imgtrans.inference import generator_of, translate
from imgtrans.io import WriteError, atomic_write, refuse_existing

MIN_PSNR = 30.0
"""Lowest PSNR (dB, images in [0, 1]) against float32 PyTorch at which an int8 model is written."""


def quantize_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    calibration: Iterable[torch.Tensor],
    *,
    direction: str | None = None,
    min_psnr: float = MIN_PSNR,
    overwrite: bool = False,
) -> dict[str, str]:
    """Write an int8 ONNX model of ``model``'s generator (eval mode), calibrated on real images.

    Args:
        model: a pix2pix model or a bare generator, float32; left unchanged.
        path: the ``.onnx`` file to write.
        calibration: input images, each ``1 x C x H x W`` (or a batch) in [-1, 1], as the model
            will see them (e.g. a few dozen from the training inputs). Ranges of every activation are
            taken from them.
        direction: ``"AtoB"`` or ``"BtoA"``, for the metadata.
        min_psnr: refuse to write a model whose output on the calibration images is below this
            PSNR against PyTorch's float32 output.
        overwrite: replace an existing file at ``path``; without it one is refused before any work.

    Returns:
        The file's metadata (onnxruntime's quantiser adds its own keys); ``imgtrans.psnr_vs_fp32``
        holds the PSNR measured.

    Raises:
        ValueError: no calibration images, or images of the wrong shape.
        ExportError: the quantised output is further from float32 than ``min_psnr`` allows.
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        WriteError: a full or read-only disk, here or in the temporary folder; a previous file at
            ``path`` is kept whole.
    """
    onnx = _require("onnx")
    quantization = _require("onnxruntime.quantization")
    generator = generator_of(model)
    images = [_check_image(x, generator.in_channels, i) for i, x in enumerate(calibration)]
    if not images:
        raise ValueError("int8 quantisation needs calibration images: pass a few real inputs in [-1, 1]")
    path = Path(path)
    refuse_existing(path, overwrite)
    try:
        proto, kept = _quantise(model, images, direction, min_psnr, onnx, quantization)
    except OSError as error:  # the intermediate files, in the temporary folder
        reason, kept = error.strerror or str(error), ", whose previous contents are kept" if path.exists() else ""
        message = (
            f"cannot write the int8 model's intermediate files in {tempfile.gettempdir()}: {reason}; nothing was "
            f"written to {path}{kept}. Free some space there or point TMPDIR at another disk"
        )
        raise WriteError(error.errno, reason, str(path), message) from None
    atomic_write(path, lambda temporary: onnx.save_model(proto, str(temporary)), overwrite=overwrite)
    return kept


def _quantise(
    model: nn.Module, images: list[torch.Tensor], direction: str | None, min_psnr: float, onnx: Any, quantization: Any
) -> tuple[Any, dict[str, str]]:
    """The int8 model as an ONNX proto, and its metadata; its intermediate files live in a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="imgtrans-int8-") as folder:
        fp32, prepared, quantised = (Path(folder) / name for name in ("fp32.onnx", "prepared.onnx", "int8.onnx"))
        export_onnx(model, fp32, direction=direction, subpixel=True)  # checked against PyTorch on the way
        # Shape inference and graph clean-up first, as onnxruntime's quantiser asks; the symbolic
        # pass cannot reason about the dynamic padding and only prints doubts, so it is skipped.
        quantization.quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        quantization.quantize_static(
            str(prepared),
            str(quantised),
            _reader(quantization.CalibrationDataReader, images),
            quant_format=quantization.QuantFormat.QDQ,
            per_channel=True,
            reduce_range=not _has_vnni(),
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            calibrate_method=quantization.CalibrationMethod.MinMax,
            # Not CalibMaxIntermediateOutputs: onnxruntime 1.2x-1.3x drops each full chunk of outputs
            # without taking its ranges, so only the last chunk's images would count.
        )
        psnr = psnr_against_pytorch(model, quantised, images)
        if not psnr >= min_psnr:
            raise ExportError(
                f"the int8 model's output is {psnr:.1f} dB PSNR from float32 on the calibration images, below "
                f"{min_psnr:g} dB: it would differ visibly. Use float32 (or bf16 in PyTorch), or calibrate with "
                "images closer to the ones you translate"
            )
        proto = onnx.load_model(str(quantised))
        metadata = onnx_metadata(model, direction=direction, precision="int8")
        metadata["imgtrans.calibration"] = f"{len(images)} image(s), min/max ranges; weights per channel"
        metadata["imgtrans.psnr_vs_fp32"] = json.dumps(round(psnr, 2))
        set_metadata(proto, metadata)
        # The float32 export's error bound does not describe the int8 model: its PSNR does.
        kept = [(p.key, p.value) for p in proto.metadata_props if p.key != "imgtrans.max_abs_error"]
        del proto.metadata_props[:]
        set_metadata(proto, dict(kept))
    return proto, dict(kept)


def psnr_against_pytorch(model: nn.Module, onnx_model: str | os.PathLike, images: list[torch.Tensor]) -> float:
    """PSNR (dB, on [0, 1]) of an ONNX model's outputs against PyTorch's float32 eval mode, over ``images``."""
    session = ort_session(onnx_model)
    name = session.get_inputs()[0].name
    squared, count = 0.0, 0
    for x in images:
        reference = translate(model, x).float()
        output = torch.from_numpy(session.run(None, {name: x.numpy()})[0])
        squared += float(((output - reference) / 2).pow(2).sum())
        count += reference.numel()
    mse = squared / count
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def _reader(base: type, images: list[torch.Tensor]) -> object:
    """onnxruntime's calibration reader over ``images`` (its base class is imported only when needed)."""

    class Reader(base):
        def __init__(self) -> None:
            self.images: Iterator[torch.Tensor] = iter(images)

        def get_next(self) -> dict | None:
            x = next(self.images, None)
            return None if x is None else {"input": x.numpy()}

    return Reader()


def _check_image(x: torch.Tensor, channels: int, index: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim not in (3, 4):
        raise ValueError(f"calibration image {index} must be a tensor shaped (C, H, W) or (N, C, H, W)")
    x = x.unsqueeze(0) if x.ndim == 3 else x
    if x.shape[1] != channels:
        raise ValueError(f"calibration image {index} has {x.shape[1]} channels; the model reads {channels}")
    if not torch.isfinite(x).all() or x.abs().max() > 1:
        raise ValueError(f"calibration image {index} must hold finite values in [-1, 1] (pixel / 127.5 - 1)")
    return x.detach().float().cpu().contiguous()


def _has_vnni() -> bool:
    # Without VNNI, x86 int8 products go through 16-bit sums that can saturate with full 8-bit
    # weights; onnxruntime's advice is then to quantise weights to 7 bits (reduce_range).
    from imgtrans.devices import cpu_flags

    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & cpu_flags()) or not cpu_flags()
