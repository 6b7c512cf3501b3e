"""``imgtrans eval``: score a model on paired test images and write an HTML/JSON report."""

from __future__ import annotations

import argparse
from pathlib import Path

from torch.utils.data import Subset

from imgtrans.cli.common import MODEL_HELP, count, load_model, model_channels, model_direction
from imgtrans.data import PairedImageDataset
from imgtrans.data.downloads import resolve_data
from imgtrans.metrics.scoring import MODES, evaluate_model
from imgtrans.metrics import format_summary


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "eval",
        help="evaluate a model on paired images (L1, PSNR, SSIM, Lab colour, sharpness)",
        description="Writes metrics.json, index.html (input | output | target with scores) and "
        "lab_histograms.png, in the usual eval mode and in the paper's test-time mode.",
    )
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--data", required=True, help="folder of AB images, or with A/ and B/ subfolders; or a downloaded dataset: NAME[/SPLIT]")
    p.add_argument("--direction", choices=["AtoB", "BtoA"], help="which half of AB images is the input (default: the model's)")
    p.add_argument("--out", help="report folder (default: eval-<data folder name>)")
    p.add_argument("--size", type=count(1), help="resize images to SIZE x SIZE (default: native size)")
    p.add_argument("--batch-size", type=count(1), default=8)
    p.add_argument("--modes", default=",".join(MODES), help="eval, paper or both (default eval,paper)")
    p.add_argument("--limit", type=count(1), help="evaluate the first N images only")
    p.add_argument("--device", default="auto")
    # FID and KID (imgtrans.metrics.fid): optional, they need the [fid] extra and Inception weights
    p.add_argument("--fid", action="store_true", help='also FID and KID (pip install "imgtrans[fid]")')
    p.add_argument("--inception-weights", metavar="FILE", help="FID Inception weights, weights-inception-"
                   "2015-12-05-6726825d.pth (default: the torch hub cache, else a download)")  # fmt: skip
    p.add_argument("--kid-subset-size", type=int, help="images per KID subset (default 1000, or all when fewer)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if (args.inception_weights or args.kid_subset_size) and not args.fid:
        raise ValueError("--inception-weights and --kid-subset-size only matter with --fid; add --fid")
    args.data = str(resolve_data(args.data))  # a downloaded dataset's name means its folder
    model, device = load_model(args.model, args.device)
    in_channels, out_channels = model_channels(model)
    direction = model_direction(model, args.direction)
    dataset = PairedImageDataset(
        args.data, direction, in_channels, out_channels, load_size=args.size, crop_size=None, train=False
    )
    if args.limit is not None:
        dataset = Subset(dataset, range(min(args.limit, len(dataset))))
    out = Path(args.out or f"eval-{Path(args.data).resolve().name}")
    info = {"model": args.model, "data": args.data, "direction": direction, "images": len(dataset)}
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    fid = {}
    if args.fid:
        fid = dict(fid=True, inception_weights=args.inception_weights, kid_subset_size=args.kid_subset_size)
    metrics = evaluate_model(model, dataset, out, modes, args.batch_size, info, device, **fid)
    print(format_summary(metrics))
    print(f"report: {out / 'index.html'}  metrics: {out / 'metrics.json'}  Lab histograms: {out / 'lab_histograms.png'}")
    return 0
