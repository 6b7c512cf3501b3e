"""``imgtrans convert REFERENCE.pth OUT --arch unet256``: a reference checkpoint to a save_pretrained folder."""

from __future__ import annotations

import argparse

from imgtrans.store.factory import save_pretrained
from imgtrans.models.parts import REFERENCE_ARCHS
from imgtrans.store.reference import load_reference


# Depths and block counts of pix2pixHD's networks, which the converter infers and the message reports.
COUNTS = ("n_downsampling", "n_blocks", "n_local_enhancers", "n_blocks_local", "num_scales", "n_layers")


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "convert",
        help="convert a reference pix2pix/CycleGAN or pix2pixHD checkpoint (.pth) to safetensors, without pickle",
    )
    parser.add_argument("checkpoint", help="the reference .pth file (read with torch.load(weights_only=True))")
    parser.add_argument("out", help="the folder to write: config.json, model.safetensors, README.md")
    parser.add_argument("--arch", required=True, choices=REFERENCE_ARCHS, help="the reference network the checkpoint holds")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a model already saved in OUT (without it, an existing OUT is refused)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    model = load_reference(args.checkpoint, args.arch)
    folder = save_pretrained(model, args.out, overwrite=args.overwrite)
    arguments = model.config.arguments
    counts = "".join(f", {key} {arguments[key]}" for key in COUNTS if key in arguments)  # read from the file
    print(
        f"wrote {folder}: {args.arch}, base_channels {arguments['base_channels']}, norm {arguments['norm']}, "
        f"{arguments['in_channels']} -> {arguments.get('out_channels', 1)} channels{counts}; "
        f"load it with imgtrans.from_pretrained({str(folder)!r})"
    )
    return 0
