"""``imgtrans convert REFERENCE.pth OUT --arch unet256``: a reference checkpoint to a save_pretrained folder."""

from __future__ import annotations

import argparse

from imgtrans.store.factory import save_pretrained
from imgtrans.models.parts import REFERENCE_ARCHS
from imgtrans.store.reference import load_reference


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "convert", help="convert a reference pix2pix/CycleGAN checkpoint (.pth) to safetensors, without pickle"
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
    print(
        f"wrote {folder}: {args.arch}, base_channels {arguments['base_channels']}, norm {arguments['norm']}, "
        f"{arguments['in_channels']} -> {arguments.get('out_channels', 1)} channels; "
        f"load it with imgtrans.from_pretrained({str(folder)!r})"
    )
    return 0
