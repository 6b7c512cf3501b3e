"""``imgtrans eval``: score a model on paired test images, or on unpaired domains by FID and KID, and write a report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from torch.utils.data import Subset

from imgtrans.cli.common import MODEL_HELP, count, model_channels, model_direction
from imgtrans.data import PairedImageDataset, evaluation_domains
from imgtrans.data.downloads import resolve_data
from imgtrans.data.labels import LabelMapDataset
from imgtrans.deploy.translators import load_translator
from imgtrans.metrics.scoring import MODES, check_report_folder, evaluate_model
from imgtrans.metrics import format_summary

SPLITS = ("train", "val", "test")  # a dataset's split folder is named with its dataset: eval-MODEL-facades-test


def add_parser(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser(
        "eval",
        help="evaluate a model on paired images (L1, PSNR, SSIM, Lab colour, sharpness), or on unpaired "
        "domains (FID, KID, Lab colour)",
        description="Writes metrics.json, index.html (input | output | target with scores) and "
        "lab_histograms.png, in the usual eval mode and in the paper's test-time mode, into a new folder: an "
        "earlier report is replaced only with --overwrite. On unpaired data (testA/ and testB/, CycleGAN's "
        "layout) there are no targets: the source domain's images are translated and compared with the target "
        "domain's real images by FID and KID (--fid) and the Lab marginals; L1, PSNR and SSIM are not reported.",
    )
    p.add_argument("model", help=MODEL_HELP)
    p.add_argument("--data", required=True, help="folder of AB images, or with A/ and B/ subfolders; unpaired: a "
                   "folder with testA/ and testB/ (or trainA/, trainB/); or a downloaded dataset: NAME[/SPLIT] (a bare "
                   "NAME: its test split)")  # fmt: skip
    p.add_argument("--split", help="unpaired data or a downloaded dataset: the split to evaluate, e.g. test "
                   "(testA/, testB/) or train (default: test; unpaired folders without testA/, testB/: train, "
                   "with a warning)")  # fmt: skip
    p.add_argument("--direction", choices=["AtoB", "BtoA"], help="which half of AB images is the input, and a "
                   "CycleGAN's generator: AtoB (G_A) or BtoA (G_B) (default: the model's)")  # fmt: skip
    p.add_argument("--out", help="report folder (default: eval-<model name>-<data name>, in the current folder; "
                   "unpaired data: eval-<model name>-<data name>-<split>[-<direction given>])")  # fmt: skip
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
    data = resolve_data(args.data, split=args.split or "test")  # a downloaded dataset's name means its folder
    split = unpaired_split(data, args.split)
    if split is not None and not args.fid:
        raise ValueError(f"--data {args.data} is unpaired ({split}A/, {split}B/): without targets only distribution "
                         "metrics apply (L1, PSNR, SSIM need targets); add --fid for FID and KID")  # fmt: skip
    if split is None and args.split is not None and data == Path(args.data):
        raise ValueError(f"--split is for unpaired folders (testA/, testB/) and downloaded datasets; {args.data} is a "
                         "folder of pairs: drop --split, or give the split's folder as --data")  # fmt: skip
    args.data = str(data)
    out = Path(args.out or default_out(args.model, args.data if split is None else split_folder(data, split)))
    if args.out is None and split is not None and args.direction is not None:  # both of a CycleGAN's directions
        out = out.with_name(f"{out.name}-{args.direction}")
    check_report_folder(out, args.overwrite)  # before the model is loaded: seconds, not minutes
    # The weights checked, as translate checks them; a CycleGAN's generator of --direction.
    translator = load_translator(args.model, device=args.device, direction=args.direction)
    model, device = translator.model, translator.device
    info = {"model": args.model, "data": args.data}
    real = None
    if translator.labels is not None:  # a model of label maps: label/, img/ (and inst/), scored against img/
        direction, dataset = "AtoB", label_map_dataset(args, translator)
    else:
        in_channels, out_channels = model_channels(model)
        direction = model_direction(model, args.direction)
        if split is None:
            dataset = PairedImageDataset(args.data, direction, in_channels, out_channels, load_size=args.size,
                                         crop_size=None, train=False, check_pairs=args.check_pairs)  # fmt: skip
        else:  # the source domain translated, compared with every real image of the target domain
            dataset, real = evaluation_domains(data, direction, split, in_channels, out_channels, args.size)
            info.update(split=split, source=str(dataset.folder), real=str(real.folder), real_images=len(real))
    info["direction"] = direction
    if args.limit is not None:
        dataset = Subset(dataset, range(min(args.limit, len(dataset))))
    info["images"] = len(dataset)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    fid = {}
    if args.fid:
        fid = dict(fid=True, inception_weights=args.inception_weights, kid_subset_size=args.kid_subset_size)
    metrics = evaluate_model(model, dataset, out, modes, args.batch_size, info, device, overwrite=args.overwrite,
                             real=real, **fid)  # fmt: skip
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


def unpaired_split(data: Path, split: str | None) -> str | None:
    """The split of unpaired domains ``data`` holds ({split}A/ and {split}B/), or ``None`` for paired data.

    ``data`` may hold the split's folders (``horse2zebra``: testA/ and testB/, else trainA/ and
    trainB/ with a warning on stderr, unless ``--split`` chose it) or name the split itself
    (``horse2zebra/test``).
    """
    if not data.is_dir() and data.parent.is_dir() and has_domains(data.parent, data.name):  # NAME/test
        if split is not None and split != data.name:
            raise ValueError(f"--data {data} is the split {data.name} and --split says {split}: drop one")
        return data.name
    if not data.is_dir():
        return None  # reported by the paired dataset as the missing folder it is
    if split is not None:
        if not has_domains(data, split) and any(has_domains(data, s) for s in ("test", "train")):
            held = [s for s in ("test", "train") if has_domains(data, s)]
            raise FileNotFoundError(f"--split {split}: {data} has no {split}A/ or {split}B/ folder; it has "
                                    f"{', '.join(f'{s}A/, {s}B/' for s in held)}")  # fmt: skip
        return split if has_domains(data, split) else None
    if has_domains(data, "test"):
        return "test"
    if has_domains(data, "train"):
        print(f"warning: {data} has no testA/ or testB/: evaluating on trainA/ and trainB/, the images the model may "
              "have been trained on (which flatters its FID); add --split train to say so", file=sys.stderr)
        return "train"
    return None


def split_folder(data: Path, split: str) -> Path:
    """``data``'s folder of ``split`` (``horse2zebra/test``), which names the report; ``data`` when it is the split."""
    return data if data.name == split else data / split


def has_domains(root: Path, split: str) -> bool:
    """Whether ``root`` holds ``{split}A/`` or ``{split}B/`` (a missing partner is then named by the dataset)."""
    return (root / f"{split}A").is_dir() or (root / f"{split}B").is_dir()


def default_out(model: str, data: str) -> str:
    """``eval-<model>-<data>``: a run folder or model by its name, a split folder with its dataset's name."""
    model_name = Path(str(model).rstrip("/")).name.removesuffix(".safetensors") or "model"
    folder = Path(data).resolve()
    data_name = f"{folder.parent.name}-{folder.name}" if folder.name in SPLITS and folder.parent.name else folder.name
    return f"eval-{model_name}-{data_name}"
