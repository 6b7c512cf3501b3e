"""What a model is: the one object that owns ``config.json`` and a checkpoint's model metadata.

A [ModelConfig][imgtrans.store.config.ModelConfig] holds a registered name, the full **architecture**
arguments and the translation direction the model was made for. It is created from a name and
overrides ([create][imgtrans.store.config.ModelConfig.create]) or read back from JSON
([from_dict][imgtrans.store.config.ModelConfig.from_dict]), and either way it is validated before
anything is built: the name must be registered, every argument must exist and have the type its
annotation gives, and the model it describes must fit in memory (counted on the ``meta`` device,
where building allocates nothing). So a corrupt or hostile ``config.json`` fails in milliseconds
with one clear line, instead of hanging or allocating gigabytes.

Arguments that only choose initial weights (``pretrained_encoder``, ``encoder_weights``...: each
target's ``weight_arguments``, see [imgtrans.registry][]) are not architecture. They are never
written, and a configuration read from a file is built with their neutral values, so loading a
folder, a run or a checkpoint never reaches the network nor opens any other file.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

import imgtrans.models  # noqa: F401  (registers the built-in names this module checks against)
from imgtrans.registry import Direction, Entry, check_direction, entry

MAX_PARAMETERS = 2**30
"""The most elements (parameters and buffers) a configuration may describe: 4 GiB of float32."""

CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class ModelConfig:
    """A registered name, its architecture arguments and its direction; validated on creation.

    Attributes:
        name: the registry name (``"pix2pix-facades"``, ``"unet256"``...).
        arguments: every constructor argument that defines the architecture, defaults
            included, as JSON gives them back (lists, not tuples).
        direction: ``"AtoB"`` or ``"BtoA"``: which half of a dataset's AB images is the input;
            ``None`` when unknown.
        label_nc: the classes of the integer label maps the model reads, one-hot encoded (pix2pixHD's
            ``--label_nc``); 0: it reads images. ``config.json`` records it as ``"labels"``, and a file
            without that key describes a model of images, as every file before it did.
        instance: with ``label_nc``, the model also reads the instance-boundary map of an instance map.
    """

    name: str
    arguments: dict[str, Any]
    direction: Direction | None = None
    # The arguments this build is made with: the caller's weight choices, or their neutral values.
    build_arguments: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    label_nc: int = 0
    instance: bool = False

    @classmethod
    def create(cls, name: str, overrides: Mapping[str, Any] | None = None, direction: str | None = None) -> "ModelConfig":
        """The configuration of ``build(name, **overrides)``, checked before anything is built.

        Args:
            name: a registered name.
            overrides: constructor arguments replacing the entry's defaults; weight choices
                (``pretrained_encoder=True``) are used for this build but not recorded.
            direction: overrides the entry's own direction.

        Raises:
            KeyError: unknown name (with the closest known ones).
            TypeError: unknown argument names.
            ValueError: arguments of the wrong type, or a model too large to build.
        """
        item = entry(name)
        resolved = item.arguments(dict(overrides or {}))
        _check_types(item, resolved)
        direction = check_direction(direction or item.direction)
        config = cls(name, _json_form(_architecture(item, resolved)), direction, resolved)
        config.check_size()
        return config

    @classmethod
    def from_dict(cls, data: Any, source: str = "the configuration") -> "ModelConfig":
        """Read a configuration written by [to_dict][imgtrans.store.config.ModelConfig.to_dict] (or by imgtrans 0.1).

        The result is built with neutral weight arguments: whatever the file says, building it
        fetches nothing. Names of backbones on the Hub (``hf-hub:``) are refused, since only a
        download could say what they are.

        Raises:
            ValueError: not a configuration, or one that fails [create][imgtrans.store.config.ModelConfig.create]'s checks;
                the message names ``source``.
        """
        if not isinstance(data, Mapping) or not isinstance(data.get("name"), str):
            raise ValueError(f"{source} does not describe a model: it needs a 'name' and a dict of 'arguments'")
        arguments = data.get("arguments", {})
        if not isinstance(arguments, Mapping):
            raise ValueError(f"{source}: 'arguments' must be a dict of constructor arguments")
        _refuse_hub_names(arguments, source)
        try:
            item = entry(data["name"])
            neutral = _architecture(item, item.arguments(dict(arguments)), neutral=True)
            config = cls.create(data["name"], neutral, check_direction(data.get("direction")))  # source added below
            config = config.with_labels(*_labels(data.get("labels")))
        except (KeyError, TypeError, ValueError) as error:
            message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
            raise ValueError(f"{source}: {message}") from None
        return config

    def to_dict(self) -> dict[str, Any]:
        """The JSON form: ``{"name", "arguments", "direction"}``, and ``"labels"`` for a model of label maps;
        it must load offline (no ``hf-hub:`` names)."""
        _refuse_hub_names(self.arguments, f"{self.name}'s configuration")
        labels = {"labels": {"label_nc": self.label_nc, "instance": self.instance}} if self.label_nc else {}
        return {"name": self.name, "arguments": self.arguments, "direction": self.direction, **labels}

    def with_direction(self, direction: str | None) -> "ModelConfig":
        """The same model made for another direction (a run records the one it trained with)."""
        return dataclasses.replace(self, direction=check_direction(direction))

    def with_labels(self, label_nc: int, instance: bool = False) -> "ModelConfig":
        """The same model reading label maps of ``label_nc`` classes (0: images), as a run trained it.

        Raises a ``ValueError`` when the generator's ``in_channels`` is not ``label_nc`` (+1 with ``instance``).
        """
        label_nc, instance = _labels({"label_nc": label_nc, "instance": instance} if label_nc else None)
        channels = self.arguments.get("in_channels")
        if label_nc and isinstance(channels, int) and channels != label_nc + instance:
            raise ValueError(
                f"label_nc {label_nc}{' with instance maps' if instance else ''} gives {label_nc + instance} input "
                f"channels, but {self.name} has in_channels {channels}"
            )
        return dataclasses.replace(self, label_nc=label_nc, instance=instance)

    def instantiate(self) -> nn.Module:
        """Call the registered target with this configuration's arguments; ``model.config`` is ``self``."""
        model = entry(self.name).target(**self.build_arguments)
        model.config = self
        return model

    def for_loading(self) -> "ModelConfig":
        """This configuration built with neutral weight arguments: for a model about to receive a state dict."""
        item = entry(self.name)
        return dataclasses.replace(self, build_arguments=_architecture(item, self.build_arguments, True))

    def check_size(self) -> None:
        """Count the model's elements on the ``meta`` device; refuse more than ``MAX_PARAMETERS``."""
        try:
            with torch.device("meta"):
                model = entry(self.name).target(**self.for_loading().build_arguments)
        except RuntimeError as error:  # torch's own size arithmetic overflowed: far too large
            if "overflow" not in str(error):
                raise
            raise ValueError(
                f"{self.name} with these arguments is too large to build ({str(error).splitlines()[0]}); check the "
                "sizes (base_channels, num_downs, n_layers...)"
            ) from None
        if not isinstance(model, nn.Module):
            raise TypeError(f"{self.name!r} built a {type(model).__name__}, not a torch.nn.Module")
        count = sum(t.numel() for t in (*model.parameters(), *model.buffers()))
        if count > MAX_PARAMETERS:
            raise ValueError(
                f"{self.name} with these arguments has {count:,} parameters, more than the {MAX_PARAMETERS:,} "
                "imgtrans builds (4 GiB of float32); check the sizes (base_channels, num_downs, n_layers...)"
            )

    def write(self, folder: str | Path, **extra: Any) -> Path:
        """Write ``config.json`` into ``folder`` atomically, with ``extra`` fields (``sha256``, ``parts``)."""
        from imgtrans import __version__
        from imgtrans.io import atomic_write

        data = {"imgtrans_version": __version__, **self.to_dict(), **extra}
        path = Path(folder) / CONFIG_FILE
        atomic_write(path, json.dumps(data, indent=2) + "\n")
        return path

    @classmethod
    def read(cls, path: str | Path) -> tuple["ModelConfig", dict[str, Any]]:
        """Read a ``config.json``: the configuration and the file's other fields (``sha256``...)."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as error:
            raise ValueError(f"{path} is not a readable config.json ({error})") from None
        config = cls.from_dict(data, str(path))
        return config, {k: v for k, v in data.items() if k not in ("name", "arguments", "direction", "labels")}


def _labels(value: Any) -> tuple[int, bool]:
    """``(label_nc, instance)`` from a configuration's ``"labels"`` (absent: a model of images, ``(0, False)``)."""
    if value is None:
        return 0, False
    label_nc = value.get("label_nc") if isinstance(value, Mapping) else None
    instance = value.get("instance", False) if isinstance(value, Mapping) else None
    if isinstance(label_nc, bool) or not isinstance(label_nc, int) or label_nc < 1 or not isinstance(instance, bool):
        raise ValueError(
            f"'labels' must be {{'label_nc': a whole number of at least 1, 'instance': true or false}}; got {value!r}"
        )
    return label_nc, instance


def _architecture(item: Entry, arguments: Mapping[str, Any], neutral: bool = False) -> dict[str, Any]:
    """``arguments`` without weight choices, or (``neutral``) with their neutral values; parts recursively."""
    weights = item.weight_arguments
    out = {k: v for k, v in arguments.items() if k not in weights}
    if neutral:
        out.update(weights)
    for args_key, name_key in item.part_arguments.items():
        part, nested = arguments.get(name_key), arguments.get(args_key)
        if part is None or not isinstance(part, str) or not isinstance(nested, (Mapping, type(None))):
            continue  # a missing part, or a bad value that the part's own build reports
        try:
            part_entry = entry(part)
        except KeyError:
            continue  # reported with suggestions when the part is built
        inner = _architecture(part_entry, dict(nested or {}), neutral)
        out[args_key] = inner or None  # {} and None say the same; one form, whichever way the arguments came
    return out


def _refuse_hub_names(arguments: Mapping[str, Any], source: str) -> None:
    """Refuse ``hf-hub:`` backbone names: only a download could say what they are."""
    if hub := _hub_names(arguments):
        raise ValueError(
            f"{source} names a backbone on the Hugging Face Hub ({hub[0]!r}); its architecture is only known by "
            "downloading it, and imgtrans never reaches the network to load a saved model. Build it with a timm "
            "model name (e.g. 'resnet34') and its weights file (encoder_weights=PATH) instead"
        )


def _hub_names(value: Any) -> list[str]:
    """Every ``hf-hub:`` string inside ``value``."""
    if isinstance(value, str):
        return [value] if value.startswith("hf-hub:") else []
    if isinstance(value, Mapping):
        return [name for item in value.values() for name in _hub_names(item)]
    if isinstance(value, (list, tuple)):
        return [name for item in value for name in _hub_names(item)]
    return []


def _json_form(arguments: dict[str, Any]) -> dict[str, Any]:
    """``arguments`` as JSON gives them back (tuples become lists), so a configuration equals its reloaded copy."""
    try:
        return json.loads(json.dumps(arguments))
    except (TypeError, ValueError) as error:
        raise ValueError(f"the arguments cannot be written to config.json: {error}") from None


def _check_types(item: Entry, arguments: Mapping[str, Any]) -> None:
    """Check each argument against its annotation (``int``, ``float``, ``Literal``, unions...), parts included."""
    target = item.target.__init__ if isinstance(item.target, type) else item.target
    try:
        hints = typing.get_type_hints(target)
    except Exception:  # annotations that cannot be evaluated: leave the checks to the target
        hints = {}
    for name, value in arguments.items():
        hint = hints.get(name)
        if hint is not None and not _fits(value, hint):
            raise ValueError(
                f"{item.name}: argument {name}={value!r} ({type(value).__name__}) is not of type {_show(hint)}"
            )
    for args_key, name_key in item.part_arguments.items():
        part, nested = arguments.get(name_key), arguments.get(args_key)
        if isinstance(part, str) and isinstance(nested, Mapping):
            part_entry = entry(part)
            part_entry.arguments(nested)  # unknown names, with suggestions
            _check_types(part_entry, nested)


def _fits(value: Any, hint: Any) -> bool:
    """Whether ``value`` has the type ``hint`` (containers are checked one level deep)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any or hint is typing.Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin in (dict, collections.abc.Mapping) or hint is dict:
        return isinstance(value, Mapping)
    if origin in (list, tuple, collections.abc.Sequence) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and Ellipsis not in args:
            return len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args))
        return not args or all(_fits(v, args[0]) for v in value)
    return not isinstance(hint, type) or isinstance(value, hint)


def _show(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")
