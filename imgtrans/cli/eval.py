"""``imgtrans eval``: score a model on paired test images and write an HTML/JSON report."""

from __future__ import annotations

import argparse
from pathlib import Path

from torch.utils.data import Subset

from imgtrans.cli.common import MODEL_HELP, count, model_channels, model_direction
from imgtrans.data import PairedImageDataset
from imgtrans.data.downloads import resolve_data
from imgtrans.data.labels import LabelMapDataset
from imgtrans.deploy.translators import load_translator
from imgtrans.metrics.scoring import MODES, check_report_folder, evaluate_model
from imgtrans.metrics import format_summary

SPLITS = ("train", "val", "test")  # a dataset's split folder is named with its dataset: eval-MODEL-facades-test


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "eval",
        help="evaluate a model on paired images (L1, PSNR, SSIM, Lab colour, sharpness)",
        description="Writes metrics.json, index.html (input | output | target with scores) and "
        "lab_histograms.png, in the usual eval mode and in the paper's test-time mode, into a new folder: an "
        "earlier report is replaced only with --overwrite.",
    )
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--data", required=True, help="folder of AB images, or with A/ and B/ subfolders; or a downloaded dataset: NAME[/SPLIT]")
    p.add_argument("--direction", choices=["AtoB", "BtoA"], help="which half of AB images is the input, and a "
                   "CycleGAN's generator: AtoB (G_A) or BtoA (G_B) (default: the model's)")  # fmt: skip
    p.add_argument("--out", help="report folder (default: eval-<model name>-<data name>, in the current folder)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier report in --out (only a report)")
    p.add_argument("--size", type=count(1), help="resize images to SIZE x SIZE (default: native size)")
    p.add_argument("--batch-size", type=count(1), default=8, help="images per forward pass (default 8; the "
                   "paper's mode runs each image alone, so its scores do not depend on it)")  # fmt: skip
    p.add_argument("--modes", default=",".join(MODES), help="eval, paper or both (default eval,paper)")
    p.add_argument("--limit", type=count(1), help="evaluate the first N images only")
    p.add_argument("--no-check-pairs", dest="check_pairs", action="store_false",
                   help="accept AB files that do not look like two images side by side")  # fmt: skip
    p.add_argument("--device", default="auto", help="where the model runs: auto (CUDA when present), cpu, cuda "
                   "or cuda:N (default auto)")  # fmt: skip
    # FID and KID (imgtrans.metrics.fid): optional, they need the [fid] extra and Inception weights
    p.add_argument("--fid", action="store_true", help='also FID and KID (pip install "imgtrans[fid]")')
    p.add_argument("--inception-weights", metavar="FILE", help="FID Inception weights, weights-inception-"
                   "2015-12-05-6726825d.pth (default: the torch hub cache, else a download)")  # fmt: skip
    p.add_argument("--kid-subset-size", type=int, help="images per KID subset (default 1000, or all when fewer)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if (args.inception_weights or args.kid_subset_size) and not args.fid:
        raise ValueError("--inception-weights and --kid-subset-size only matter with --fid; add --fid")
    if str(args.model).endswith(".onnx"):
        raise ValueError(f"imgtrans eval runs PyTorch models (in two modes); give the model {args.model} was "
                         "exported from: a model folder, run folder or checkpoint")  # fmt: skip
    args.data = str(resolve_data(args.data))  # a downloaded dataset's name means its folder
    out = Path(args.out or default_out(args.model, args.data))
    check_report_folder(out, args.overwrite)  # before the model is loaded: seconds, not minutes
    # The weights checked, as translate checks them; a CycleGAN's generator of --direction.
    translator = load_translator(args.model, device=args.device, direction=args.direction)
    model, device = translator.model, translator.device
    if translator.labels is not None:  # a model of label maps: label/, img/ (and inst/), scored against img/
        direction = "AtoB"
        dataset = label_map_dataset(args, translator)
    else:
        in_channels, out_channels = model_channels(model)
        direction = model_direction(model, args.direction)
        dataset = PairedImageDataset(args.data, direction, in_channels, out_channels, load_size=args.size,
                                     crop_size=None, train=False, check_pairs=args.check_pairs)  # fmt: skip
    if args.limit is not None:
        dataset = Subset(dataset, range(min(args.limit, len(dataset))))
    info = {"model": args.model, "data": args.data, "direction": direction, "images": len(dataset)}
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    fid = {}
    if args.fid:
        fid = dict(fid=True, inception_weights=args.inception_weights, kid_subset_size=args.kid_subset_size)
    metrics = evaluate_model(model, dataset, out, modes, args.batch_size, info, device, overwrite=args.overwrite, **fid)
    print(format_summary(metrics))
    print(f"report: {out / 'index.html'}  metrics: {out / 'metrics.json'}  Lab histograms: {out / 'lab_histograms.png'}")
    return 0


def label_map_dataset(args: argparse.Namespace, translator) -> LabelMapDataset:
    """The label maps of ``--data`` (``label/``, ``img/``, ``inst/``), encoded as the model reads them, uncropped."""
    labels, config = translator.labels, translator.model.config
    if args.direction is not None:
        raise ValueError("the model reads label maps, which have no direction: drop --direction")
    out_channels = int(config.arguments.get("out_channels", 3))
    return LabelMapDataset(args.data, labels.label_nc, labels.instance, out_channels, load_size=args.size,
                           crop_size=None, train=False)  # fmt: skip


def default_out(model: str, data: str) -> str:
    """``eval-<model>-<data>``: a run folder or model by its name, a split folder with its dataset's name."""
    model_name = Path(str(model).rstrip("/")).name.removesuffix(".safetensors") or "model"
    folder = Path(data).resolve()
    data_name = f"{folder.parent.name}-{folder.name}" if folder.name in SPLITS and folder.parent.name else folder.name
    return f"eval-{model_name}-{data_name}"
