"""``imgtrans zoo list|info|download``: the pretrained models, what they are, and fetching them."""

from __future__ import annotations

import argparse

from imgtrans.store.config import ModelConfig
from imgtrans.registry import entry
from imgtrans.store.zoo import cached_path, fetch, is_cached, list_pretrained, published, reference_url


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("zoo", help="list, describe and download pretrained models")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="the pretrained models, one line each").set_defaults(run=run_list)
    info = actions.add_parser("info", help="everything known about one pretrained model")
    info.add_argument("name", help="a name from `imgtrans zoo list`")
    info.set_defaults(run=run_info)
    download = actions.add_parser("download", help="fetch a pretrained model into the cache (to use it offline)")
    download.add_argument("name", help="a name from `imgtrans zoo list`")
    download.add_argument("--overwrite", action="store_true",
                          help="download it again, replacing the cached copy (a damaged one is refused without it)")
    download.set_defaults(run=run_download)


def run_list(args: argparse.Namespace) -> int:
    names = list_pretrained()
    width = max(map(len, names))
    for name in names:
        state = "cached" if is_cached(name) else "-"
        print(f"{name:<{width}}  {entry(name).direction}  {state:<6}  {published(name).task}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    item, config = published(args.name), ModelConfig.create(args.name)
    hub = item.hub
    rows = {
        "translates": item.task,
        "direction": config.direction,
        "channels": f"{config.arguments.get('in_channels', 3)} -> {config.arguments.get('out_channels', 3)}",
        "resolution": f"{item.resolution} x {item.resolution}",
        "dataset": item.dataset,
        "source": item.source,
        "license": item.license,
        "hub": f"{hub[0]}/{hub[2]} @ {hub[1]}" if hub else "-",
        "reference url": reference_url(item.reference_file) if item.reference_file else "-",
        "sha256": item.sha256 or "not published",
        "cache": f"{cached_path(args.name)} ({'cached' if is_cached(args.name) else 'not downloaded yet'})",
    }
    for key, value in rows.items():
        print(f"{key:<14} {value}")
    return 0


def run_download(args: argparse.Namespace) -> int:
    print(fetch(args.name, overwrite=args.overwrite))
    return 0
