"""Export a generator to ONNX, checked against PyTorch, or to a ``torch.export`` program.

The exported graph is the generator in eval mode (BatchNorm's running statistics, no dropout),
with BatchNorm folded into the convolutions ([imgtrans.deploy.fusion][]). Batch, height and width are
dynamic: the U-Net's padding to a multiple of ``2 ** num_downs`` and the crop back are part of the
graph ([pad_by_index][imgtrans.blocks.pad.pad_by_index]), so any image size goes in as it is.

Every ONNX file carries what a user of it needs in its ``metadata_props`` (keys ``imgtrans.*``,
see [METADATA_KEYS][imgtrans.deploy.onnx.METADATA_KEYS]): the model's name and arguments, the
translation's direction, input and output channels, range and layout, the mode, the precision,
and the largest difference from PyTorch measured when it was written.

The paper's test mode (dropout on, each image's own BatchNorm statistics, section 3.3) is refused
when the model has dropout or BatchNorm, since an exported graph would draw its own dropout masks
and could not be checked against PyTorch; it is never silently exported as eval mode.

``torch.export`` programs are offered in memory only ([export_program][imgtrans.deploy.onnx.export_program]):
their file format (``.pt2``) unpickles its weights when loaded, which imgtrans never does.
"""

from __future__ import annotations

import importlib
import json
import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from torch import nn

from imgtrans.deploy.fusion import inference_copy
from imgtrans.inference import generator_of
from imgtrans.io import atomic_write, refuse_existing
from imgtrans.registry import check_direction

INPUT, OUTPUT = "input", "output"
METADATA_KEYS: dict[str, str] = {
    "imgtrans.model": "registry name of the model (imgtrans.build), or its class name",
    "imgtrans.arguments": "its constructor arguments, JSON",
    "imgtrans.direction": "AtoB or BtoA: which half of a dataset's AB images is the input; 'unrecorded' if unknown",
    "imgtrans.in_channels": "channels of the input images",
    "imgtrans.out_channels": "channels of the output images",
    "imgtrans.input_range": "value range of input and output pixels: [-1, 1] (pixel / 127.5 - 1)",
    "imgtrans.layout": "NCHW, float32; batch, height and width are dynamic",
    "imgtrans.multiple": "side multiple the network pads to inside the graph (informative: any size is accepted)",
    "imgtrans.mode": "eval: BatchNorm running statistics, no dropout",
    "imgtrans.precision": "fp32, or int8 (quantised with calibration images)",
    "imgtrans.max_abs_error": "largest |ONNX - PyTorch| measured on export, per checked input shape, JSON",
    "imgtrans.version": "imgtrans version that wrote the file",
}
"""The ``metadata_props`` an exported file carries, and what each holds (int8 files add
``imgtrans.calibration`` and ``imgtrans.psnr_vs_fp32``)."""
VERIFY_SHAPES: tuple[tuple[int, int, int], ...] = ((1, 256, 256), (1, 300, 210), (4, 256, 256))
"""(batch, height, width) of the inputs an export is checked on: the issue's three cases."""


class ExportError(ValueError):
    """A model that cannot be exported faithfully, or an export whose outputs differ from PyTorch's."""


@dataclass
class ExportReport:
    """What [export_onnx][imgtrans.deploy.onnx.export_onnx] wrote and how closely it matches PyTorch.

    Attributes:
        path: the ONNX file.
        metadata: its ``metadata_props``.
        max_abs_error: ``{"1x256x256": error, ...}``, largest absolute difference from PyTorch's
            eval-mode output per checked input shape (empty when not verified).
    """

    path: Path
    metadata: dict[str, str]
    max_abs_error: dict[str, float] = field(default_factory=dict)


def check_exportable(model: nn.Module, paper_test_mode: bool = False) -> None:
    """Raise [ExportError][imgtrans.deploy.onnx.ExportError] when ``model`` cannot be exported as asked.

    With ``paper_test_mode`` the model must have neither dropout nor BatchNorm, so that its
    paper test mode is its eval mode and the export is faithful.
    """
    generator = generator_of(model)
    if paper_test_mode:
        stochastic = [
            name
            for name, m in generator.named_modules()
            if (isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0) or isinstance(m, nn.modules.batchnorm._BatchNorm)
        ]
        if stochastic:
            raise ExportError(
                "the paper's test mode cannot be exported faithfully: it draws dropout masks at every call and "
                f"normalises with each image's own statistics ({len(stochastic)} such layers, e.g. {stochastic[0]}), "
                "and an exported graph would draw its own masks, so its outputs could not be checked against "
                "PyTorch's. Export eval mode (without paper_test_mode / --paper-test-mode), or run the paper's "
                "mode in PyTorch"
            )
    if not isinstance(getattr(generator, "in_channels", None), int):
        raise ExportError(f"{type(generator).__name__} does not say how many channels it reads (in_channels)")
    if label_nc := getattr(getattr(model, "config", None), "label_nc", 0):
        raise ExportError(f"the model reads label maps ({label_nc} classes, one-hot), which an ONNX file does not "
                          "record yet, so its inputs would be read as images: translate it on the torch backend")


def onnx_metadata(
    model: nn.Module, *, direction: str | None = None, precision: str = "fp32", out_channels: int | None = None
) -> dict[str, str]:
    """The ``imgtrans.*`` metadata of an export of ``model`` (see [METADATA_KEYS][imgtrans.deploy.onnx.METADATA_KEYS]).

    ``out_channels`` defaults to the model's ``out_channels`` argument, else 3.
    """
    from imgtrans import __version__

    config = getattr(model, "config", None)
    direction = direction or getattr(config, "direction", None)
    check_direction(direction)
    generator = generator_of(model)
    if out_channels is None:
        arguments = config.arguments if config else {}
        out_channels = getattr(generator, "out_channels", arguments.get("out_channels", 3))
    multiple = 2 ** generator.num_downs if hasattr(generator, "num_downs") else getattr(generator, "multiple", 1)
    return {
        "imgtrans.model": config.name if config else type(generator).__name__,
        "imgtrans.arguments": json.dumps(config.arguments if config else {}),
        "imgtrans.direction": direction or "unrecorded",
        "imgtrans.in_channels": str(generator.in_channels),
        "imgtrans.out_channels": str(out_channels),
        "imgtrans.input_range": "[-1, 1]",
        "imgtrans.layout": "NCHW float32, dynamic batch, height and width",
        "imgtrans.multiple": str(multiple),
        "imgtrans.mode": "eval",
        "imgtrans.precision": precision,
        "imgtrans.version": __version__,
    }


def export_program(model: nn.Module, *, subpixel: bool = False) -> torch.export.ExportedProgram:
    """The generator's eval mode as a ``torch.export`` program with dynamic batch, height and width.

    ``program.module()(x)`` equals ``translate(model, x)`` to float rounding for any input size.
    Keep it in memory, or rebuild it from the saved model: its ``.pt2`` files unpickle when loaded.
    """
    check_exportable(model)
    graph = inference_copy(model, subpixel=subpixel)
    # Sizes are symbolic; "size-oblivious" reasoning keeps export from specialising the graph to
    # the example's size class (e.g. "not a multiple of 256"), so every size runs the same graph.
    with _size_oblivious():
        return torch.export.export(graph, (_example(graph),), dynamic_shapes=(_dynamic_axes(),))


def export_onnx(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    direction: str | None = None,
    paper_test_mode: bool = False,
    verify: bool = True,
    tolerance: float = 1e-4,
    opset: int | None = None,
    subpixel: bool = False,
    precision: str = "fp32",
    overwrite: bool = False,
) -> ExportReport:
    """Write ``model``'s generator to ``path`` as ONNX, with metadata, checked against PyTorch.

    Args:
        model: a pix2pix model or a bare generator, in float32; it is left unchanged.
        path: the ``.onnx`` file to write (one file, weights included).
        direction: ``"AtoB"`` or ``"BtoA"``, recorded in the metadata; by default the one the
            model records (``model.config.direction``).
        paper_test_mode: export the paper's test mode; refused unless it equals eval mode.
        verify: run the file with onnxruntime on [VERIFY_SHAPES][imgtrans.deploy.onnx.VERIFY_SHAPES] and
            compare with PyTorch's eval mode; raise when the difference exceeds ``tolerance``.
        tolerance: largest absolute difference accepted, in output units ([-1, 1]).
        opset: ONNX opset; by default the exporter's.
        subpixel: write the decoder's transposed convolutions as ordinary convolutions
            ([SubpixelConvTranspose2d][imgtrans.blocks.subpixel.SubpixelConvTranspose2d]), as int8 quantisation needs.
        precision: recorded in the metadata (the quantiser sets ``"int8"``).
        overwrite: replace an existing file at ``path``; without it one is refused before any work.

    Returns:
        An [ExportReport][imgtrans.deploy.onnx.ExportReport].

    Raises:
        ExportError: the model cannot be exported faithfully, or its export differs from PyTorch.
        ImportError: onnx or onnxruntime is missing (``pip install "imgtrans[onnx]"``).
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        WriteError: the disk is full or read-only; a previous file at ``path`` is kept whole.
    """
    onnx = _require("onnx")
    check_exportable(model, paper_test_mode)
    path = Path(path)
    refuse_existing(path, overwrite)
    graph = inference_copy(model, subpixel=subpixel)
    with _size_oblivious():
        program = torch.onnx.export(
            graph,
            (_example(graph),),
            input_names=[INPUT],
            output_names=[OUTPUT],
            dynamic_shapes=(_dynamic_axes(names=True),),
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    proto = program.model_proto
    out_channels = proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value or None  # static in the graph
    metadata = onnx_metadata(model, direction=direction, precision=precision, out_channels=out_channels)
    report = ExportReport(path, metadata)
    if verify:
        report.max_abs_error = compare_with_pytorch(model, proto.SerializeToString(), tolerance=tolerance)
        metadata["imgtrans.max_abs_error"] = json.dumps({k: float(f"{v:.3g}") for k, v in report.max_abs_error.items()})
    set_metadata(proto, metadata)
    atomic_write(path, lambda temporary: onnx.save_model(proto, str(temporary)), overwrite=overwrite)
    return report


def compare_with_pytorch(
    model: nn.Module,
    onnx_model: str | os.PathLike | bytes,
    shapes: Iterable[tuple[int, int, int]] = VERIFY_SHAPES,
    *,
    tolerance: float | None = 1e-4,
    seed: int = 0,
) -> dict[str, float]:
    """Largest ``|onnxruntime - PyTorch|`` per input shape, PyTorch in eval mode, float32.

    Inputs are uniform in [-1, 1], drawn from ``seed``. Raises [ExportError][imgtrans.deploy.onnx.ExportError]
    naming the shape when a difference exceeds ``tolerance`` (``None``: no check).
    """
    from imgtrans.inference import translate

    session = ort_session(onnx_model)
    generator = generator_of(model)
    rng = torch.Generator().manual_seed(seed)
    errors: dict[str, float] = {}
    for batch, height, width in shapes:
        x = torch.rand(batch, generator.in_channels, height, width, generator=rng) * 2 - 1
        ours = translate(generator, x).float()
        theirs = torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])
        if theirs.shape != ours.shape:
            raise ExportError(f"the exported model's output for {tuple(x.shape)} is {tuple(theirs.shape)}; PyTorch's is {tuple(ours.shape)}")
        key = f"{batch}x{height}x{width}"
        errors[key] = float((theirs - ours).abs().max())
        if tolerance is not None and not errors[key] <= tolerance:
            raise ExportError(
                f"the exported model differs from PyTorch by {errors[key]:.3g} (more than {tolerance:g}) for inputs "
                f"shaped {tuple(x.shape)}; do not use it, and report this with the model's name"
            )
    return errors


def set_metadata(proto: Any, metadata: Mapping[str, str]) -> None:
    """Replace ``proto``'s ``metadata_props`` entries named in ``metadata``, keeping the others."""
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key not in metadata]
    del proto.metadata_props[:]
    for key, value in [*kept, *metadata.items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, str(value)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file, without loading its weights."""
    onnx = _require("onnx")
    proto = onnx.load_model(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def ort_session(onnx_model: str | os.PathLike | bytes, threads: int | None = None) -> Any:
    """An onnxruntime CPU session for a file or serialised model, using torch's thread count."""
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.log_severity_level = 3  # errors only: the graph optimiser's notes are not the user's business
    source = onnx_model if isinstance(onnx_model, bytes) else str(onnx_model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _size_oblivious() -> AbstractContextManager:
    """Export's size-oblivious reasoning (a private switch of torch; without it, export as usual)."""
    try:
        import torch.fx.experimental._config as fx_config

        return fx_config.patch(backed_size_oblivious=True)
    except (ImportError, AttributeError):  # pragma: no cover - other torch versions
        return nullcontext()


def _example(graph: nn.Module) -> torch.Tensor:
    # Batch 2 and distinct sides that are not multiples: export treats sizes 0 and 1 as constants.
    return torch.rand(2, graph.in_channels, 70, 90) * 2 - 1


def _dynamic_axes(names: bool = False) -> dict[int, Any]:
    if names:
        return {0: "batch", 2: "height", 3: "width"}
    dynamic = torch.export.Dim.DYNAMIC
    return {0: dynamic, 2: dynamic, 3: dynamic}


def _require(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ImportError(
            f"{name.split('.')[0]} is not installed; ONNX export and the onnxruntime backend need it: "
            'pip install "imgtrans[onnx]"'
        ) from None
