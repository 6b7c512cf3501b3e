"""What the commands share: naming a model, devices, input files, and flags generated from settings.

Commands import from here and never from each other.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import json
import re
import sys
import typing
import warnings
from pathlib import Path
from typing import Any, Iterator

import torch

from imgtrans.devices import resolve_device
from imgtrans.store.factory import load
from imgtrans.inference import generator_of
from imgtrans.images import CHANNEL_MODES, IMAGE_EXTENSIONS, image_files, image_to_tensor, read_image

NONE = type("ExplicitNone", (), {"__repr__": lambda self: "none"})()
"""What a flag given as ``none`` parses to, told apart from a flag not given (``None``)."""

CALIBRATION_IMAGES = 32
"""The first images (sorted) of ``--calibration`` that set int8 ranges."""

MODEL_HELP = "a published model's name, a saved model folder, a training run folder or a checkpoint file"


def load_model(source: str, device: str) -> tuple[torch.nn.Module, torch.device]:
    """The model ``source`` names (see ``MODEL_HELP``) on the device ``device`` names."""
    where = resolve_device(device)
    return load(source, device=where), where


def model_channels(model: torch.nn.Module) -> tuple[int, int]:
    """The ``(input, output)`` channels of a model's generator, checked to be readable from image files."""
    config = getattr(model, "config", None)
    arguments = config.arguments if config is not None else {}
    channels = getattr(generator_of(model), "in_channels", arguments.get("in_channels", 3))
    if channels not in CHANNEL_MODES:
        raise ValueError(f"the model expects {channels}-channel inputs; only 1, 3 or 4 channels can be read from images")
    domains = getattr(model, "channels_for", None)  # a CycleGAN's B -> A generator reads B's channels
    return domains() if callable(domains) else (channels, arguments.get("out_channels", 3))


def model_direction(model: torch.nn.Module, given: str | None) -> str:
    """The direction to read AB pairs in: the one given, else the one the model records."""
    recorded = getattr(getattr(model, "config", None), "direction", None)
    if given is not None:
        warn_direction(given, recorded)
        return given
    if recorded is None:
        raise ValueError("the model does not record which half of AB images is its input; give --direction AtoB or BtoA")
    return recorded


def warn_direction(given: str | None, recorded: str | None) -> None:
    """Say on stderr when ``--direction`` contradicts the direction the model records (it was trained the other way)."""
    if given is not None and recorded is not None and given != recorded:
        print(f"warning: --direction {given} contradicts the model, which records {recorded}: it reads the other "
              "half of each pair than the one it was trained on", file=sys.stderr)  # fmt: skip


def input_files(inputs: list[str]) -> list[Path]:
    """Every image named, folders expanded; a missing path or an empty folder is an error."""
    files: list[Path] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = image_files(path)
            if not found:
                raise ValueError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {path}")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return files


def load_input(path: Path, channels: int, split: str | None) -> torch.Tensor:
    """One image as a ``1 x C x H x W`` tensor in [-1, 1], optionally the ``"left"`` or ``"right"`` half of an AB file."""
    image = read_image(path, channels)
    if split is not None:
        w, h = image.size
        image = image.crop((0, 0, w // 2, h) if split == "left" else (w // 2, 0, 2 * (w // 2), h))
    return image_to_tensor(image, channels).unsqueeze(0)


def count(low: int) -> Any:
    """An argparse type: a whole number of at least ``low``, refused in the flag's words otherwise."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}; got {value}")
        return value

    parse.__name__ = f"whole number >= {low}"
    return parse


def json_object(text: str) -> dict:
    """An argparse type: a JSON object such as ``'{"generator": "unet128"}'``."""
    try:
        value = json.loads(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, e.g. '{{\"generator\": \"unet128\"}}'; got {text}")
    return value


def add_settings_flags(parser: argparse.ArgumentParser, settings: type, skip: tuple[str, ...] = ()) -> None:
    """One flag per field of the dataclass ``settings``, same name and meaning: ``batch_size`` is ``--batch-size``.

    Help comes from the class's ``Args:`` docstring; types, choices and defaults from the fields.
    Every flag defaults to ``None`` (not given), so that [given_settings][imgtrans.cli.common.given_settings]
    can tell what the user set. A boolean that defaults to true becomes ``--no-NAME``.
    """
    hints, docs = typing.get_type_hints(settings), _argument_docs(settings)
    for field in dataclasses.fields(settings):
        if field.name in skip:
            continue
        hint, flag = hints[field.name], "--" + field.name.replace("_", "-")
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        options: dict[str, Any] = {"dest": field.name, "default": None}
        text = docs.get(field.name, "").rstrip(".")
        if hint is bool and default:  # the flag turns off what the field's description says
            flag, text = f"--no-{flag[2:]}", f"turn off (on by default): {text}"
            options.update(action="store_const", const=False)
        elif hint is bool:
            options.update(action="store_const", const=True)
        else:
            options.update(_argparse_type(hint))
            if default not in (None, {}, [], ()):
                shown = " ".join(map(str, default)) if isinstance(default, (tuple, list)) else default
                text = f"{text} (default {shown})"
        options["help"] = text.replace("%", "%%")  # argparse formats help with %
        parser.add_argument(flag, **options)


@contextlib.contextmanager
def warnings_as_lines(prog: str) -> Iterator[None]:
    """Inside the block, a Python warning is one line on stderr, ``PROG: warning: ...``, in the flags' words.

    (A warning's ``cli_message`` says it as the command line does, like a
    [SettingError][imgtrans.train.settings.SettingError]'s.)
    """

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = getattr(message, "cli_message", None) or str(message)
        print(f"{prog}: warning: {' '.join(text.split())}", file=sys.stderr, flush=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def given_settings(args: argparse.Namespace, settings: type) -> dict[str, Any]:
    """The fields of ``settings`` that were given on the command line."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(settings) if getattr(args, f.name, None) is not None}
    return {name: None if value is NONE else value for name, value in given.items()}


def _argparse_type(hint: Any) -> dict[str, Any]:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or type(hint).__name__ == "UnionType":
        inner = _argparse_type(next(a for a in args if a is not type(None)))
        if inner.get("type") is not None and type(None) in args:  # "none" gives None: --load-size none
            parse = inner["type"]
            inner["type"] = lambda text: NONE if text.lower() == "none" else parse(text)
            inner["type"].__name__ = getattr(parse, "__name__", "value") + " or none"
        return inner
    if origin is typing.Literal:
        return {"choices": list(args)}
    if origin is tuple:
        return {"type": args[0], "nargs": len(args), "metavar": "X"}
    if origin is list:  # --log-to tensorboard [more...]
        return {"nargs": "+", "metavar": "NAME"}
    if origin is dict or hint is dict:
        return {"type": json_object, "metavar": "JSON"}
    return {"type": count(0) if hint is int else hint}


def _argument_docs(settings: type) -> dict[str, str]:
    """``{field: description}`` from the ``Args:`` section of a Google-style docstring."""
    doc, docs, name = inspect.getdoc(settings) or "", {}, None
    section = doc.split("Args:", 1)[1] if "Args:" in doc else ""
    for line in section.splitlines():
        if match := re.match(r"^    (\w+): (.*)", line):
            name, docs[match.group(1)] = match.group(1), match.group(2)
        elif name and line.startswith("        "):
            docs[name] += " " + line.strip()
        elif line.strip():
            break
    # Cross-references of the docs, [text][target] or [target][], read as their text; ``code`` as code.
    links = re.compile(r"\[([^\]]+)\]\[([^\]]*)\]")
    return {k: links.sub(lambda m: m.group(1), v).replace("``", "") for k, v in docs.items()}
