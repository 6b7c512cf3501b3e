"""``imgtrans zoo list|info|download``: the pretrained models, what they are, and fetching them."""

from __future__ import annotations

import argparse

from imgtrans.zoo import fetch, list_pretrained, pretrained_entry
from imgtrans.zoo.resolver import cached_path, is_cached


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("zoo", help="list, describe and download pretrained models")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="the pretrained models, one line each").set_defaults(run=run_list)
    info = actions.add_parser("info", help="everything known about one pretrained model")
    info.add_argument("name", help="a name from `imgtrans zoo list`")
    info.set_defaults(run=run_info)
    download = actions.add_parser("download", help="fetch a pretrained model into the cache (to use it offline)")
    download.add_argument("name", help="a name from `imgtrans zoo list`")
    download.set_defaults(run=run_download)


def run_list(args: argparse.Namespace) -> int:
    names = list_pretrained()
    width = max(map(len, names))
    for name in names:
        entry = pretrained_entry(name)
        state = "cached" if is_cached(entry) else "-"
        print(f"{name:<{width}}  {entry.direction}  {state:<6}  {entry.task}")
    return 0


def run_info(args: argparse.Namespace) -> int:
    entry = pretrained_entry(args.name)
    source_in, source_out = entry.channels
    rows = {
        "translates": entry.task,
        "direction": entry.direction,
        "channels": f"{source_in} -> {source_out}",
        "resolution": f"{entry.resolution} x {entry.resolution}",
        "dataset": entry.dataset,
        "source": entry.source,
        "license": entry.license,
        "hub": f"{entry.hub.repo_id}/{entry.hub.filename} @ {entry.hub.revision}" if entry.hub else "-",
        "reference url": entry.url or "-",
        "sha256": entry.sha256 or "not published",
        "cache": f"{cached_path(entry)} ({'cached' if is_cached(entry) else 'not downloaded yet'})",
    }
    for key, value in rows.items():
        print(f"{key:<14} {value}")
    return 0


def run_download(args: argparse.Namespace) -> int:
    print(fetch(args.name))
    return 0
