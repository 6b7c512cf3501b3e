"""``imgtrans data list|download``: the pix2pix datasets, what they hold, and fetching them."""

from __future__ import annotations

import argparse

from imgtrans.data.downloads import (
    DATASETS,
    dataset_dir,
    dataset_entry,
    datasets_dir,
    download_dataset,
    is_downloaded,
    splits_of,
)


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("data", help="list and download the pix2pix datasets (facades, maps, edges2shoes...)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the datasets: size, direction, splits, licence, where they are")
    listing.add_argument("--root", help="where datasets are kept (default $HF_HOME/imgtrans/datasets)")
    listing.set_defaults(run=run_list)
    download = actions.add_parser(
        "download",
        help="download and extract a dataset (resumable; use it by name: --data NAME or NAME/SPLIT)",
        description="Fetches NAME.tar.gz from the reference implementation's server (or the mirror in "
        "IMGTRANS_DATASETS_URL), resuming an interrupted download, and extracts it safely. Without network, "
        "fetch the archive elsewhere and pass it with --from FILE.",
    )
    download.add_argument("name", help="a name from `imgtrans data list`")
    download.add_argument("--root", help="where to put it (default $HF_HOME/imgtrans/datasets)")
    download.add_argument("--overwrite", "--force", action="store_true", dest="overwrite",
                          help="download and extract again over a complete copy that imgtrans made")  # fmt: skip
    download.add_argument("--from", dest="archive", metavar="FILE",
                          help="extract this NAME.tar.gz (fetched by hand) instead of downloading; it is checked the "
                          "same way and left where it is")  # fmt: skip
    download.add_argument("--keep-archive", action="store_true", help="keep NAME.tar.gz in ROOT/.downloads")
    download.set_defaults(run=run_download)


def run_list(args: argparse.Namespace) -> int:
    print(f"datasets folder: {datasets_dir(args.root)}")
    width = max(map(len, DATASETS))
    for name, entry in DATASETS.items():
        if is_downloaded(name, args.root):
            state = f"downloaded: {dataset_dir(name, args.root)}"
        elif entry.downloadable:
            state = "not downloaded"
        else:
            state = "not downloadable"
        print(f"{name:<{width}}  {entry.size:>7}  {entry.direction}  {', '.join(entry.splits)}  [{state}]")
        print(f"{'':<{width}}  {entry.task}")
        print(f"{'':<{width}}  source: {entry.source}")
        print(f"{'':<{width}}  licence: {entry.licence}")
        if entry.downloadable:
            warning = "  (plain http: not encrypted; checked against the SHA-256 of its first download)"
            print(f"{'':<{width}}  from: {entry.url}{warning if entry.plain_http else ''}")
    return 0


def run_download(args: argparse.Namespace) -> int:
    entry = dataset_entry(args.name)
    if entry.downloadable and is_downloaded(args.name, args.root) and not args.overwrite:
        print(f"{dataset_dir(args.name, args.root)} is already there, unchanged (--overwrite downloads it again)")
    folder = download_dataset(args.name, args.root, overwrite=args.overwrite, keep_archive=args.keep_archive,
                              archive=args.archive)  # fmt: skip
    print(f"{folder}: {', '.join(splits_of(folder))}; direction {entry.direction} ({entry.task})")
    if args.root is None:
        print(f"use it as --data {args.name} (the train split) or --data {args.name}/SPLIT")
    else:  # names resolve in the default folder only; elsewhere the path is the name
        print(f"use it as --data {folder / 'train'} (or another split folder)")
    return 0
