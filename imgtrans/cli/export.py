"""``imgtrans export``: write a model's generator as an ONNX file, checked against PyTorch."""

from __future__ import annotations

import argparse
from pathlib import Path

from imgtrans.cli.common import CALIBRATION_IMAGES, MODEL_HELP, input_files, load_input, model_channels
from imgtrans.data.downloads import resolve_data
from imgtrans.deploy.onnx import VERIFY_SHAPES, export_onnx
from imgtrans.io import refuse_existing
from imgtrans.deploy.translators import directed
from imgtrans.store.factory import load


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "export",
        help="export a model to ONNX (any batch, height and width), checked against PyTorch",
        description="Export the generator in eval mode to ONNX with dynamic batch, height and width (padding to "
        "the U-Net's multiple and the crop back are inside the graph) and its metadata: model, direction, "
        "channels, input range. The file is run with onnxruntime and compared with PyTorch before it is kept "
        f"(inputs {', '.join('x'.join(map(str, s)) for s in VERIFY_SHAPES)}, max abs error 1e-4). "
        "torch.export programs are offered in Python only (imgtrans.deploy.onnx.export_program): their files unpickle.",
    )
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--out", required=True, help="the .onnx file to write")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="onnx (the only file format offered)")
    p.add_argument("--precision", choices=["fp32", "int8"], default="fp32", help="fp32 (default) or int8 (needs --calibration)")
    p.add_argument("--calibration", help=f"int8: folder of real input images (the first {CALIBRATION_IMAGES} are used)")
    p.add_argument("--split", choices=["input", "left", "right"],
                   help="int8: the calibration images are AB pairs: use their input half (by the direction), or a half")
    p.add_argument("--direction", choices=["AtoB", "BtoA"], help="recorded in the file (default: what the source records)")
    p.add_argument("--paper-test-mode", action="store_true", help="refused unless the model has no dropout nor BatchNorm")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file (without it: refused)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not args.out.endswith(".onnx"):
        raise ValueError(f"--out must name an .onnx file; got {args.out}")
    if args.calibration is not None and args.precision != "int8":
        raise ValueError("--calibration is for --precision int8; drop it or add --precision int8")
    if args.precision == "int8" and args.calibration is None:
        raise ValueError("--precision int8 needs --calibration DIR: a folder of real input images to set its ranges")
    if args.precision == "int8" and args.paper_test_mode:
        raise ValueError("--precision int8 quantises eval mode; drop --paper-test-mode")
    refuse_existing(args.out, args.overwrite)  # before the model and the calibration images are read
    model = directed(load(args.model), args.direction)  # a CycleGAN exports the generator of --direction
    direction = args.direction or model.config.direction
    if args.precision == "int8":
        from imgtrans.deploy.int8 import quantize_onnx

        channels = model_channels(model)[0]
        files = input_files([str(resolve_data(args.calibration))])[:CALIBRATION_IMAGES]
        split = {"AtoB": "left", "BtoA": "right"}.get(direction) if args.split == "input" else args.split
        if args.split == "input" and split is None:
            raise ValueError("--split input needs a direction: the model records none, so give --direction")
        images = [load_input(f, channels, split) for f in files]
        metadata = quantize_onnx(model, args.out, images, direction=direction, overwrite=args.overwrite)
        checked = f"PSNR against float32 PyTorch on the {len(images)} calibration image(s): {metadata['imgtrans.psnr_vs_fp32']} dB"
    else:
        report = export_onnx(model, args.out, direction=direction, paper_test_mode=args.paper_test_mode,
                             overwrite=args.overwrite)  # fmt: skip
        metadata = report.metadata
        checked = "max abs error against PyTorch " + ", ".join(f"{v:.2g} ({k})" for k, v in report.max_abs_error.items())
    shown = direction or "unrecorded (pass --direction)"
    print(
        f"exported {metadata['imgtrans.model']} to {Path(args.out)}: ONNX, {args.precision}, eval mode, any batch, "
        f"height and width, direction {shown}; {checked}"
    )
    return 0
