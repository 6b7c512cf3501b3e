"""A registry of named parts and models: ``register``, ``build`` and ``list_models``.

Every entry is a class or function plus default arguments. ``build(name, **overrides)``
calls it with the defaults updated by the overrides, checks the argument names against its
signature first, and records what it built in ``model.build_config`` so that the model can be
saved and rebuilt later without the caller knowing its architecture.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import fnmatch
import inspect
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, TypeVar

from torch import nn

T = TypeVar("T", bound=Callable[..., nn.Module])


@dataclass(frozen=True)
class Entry:
    """A registered name: what it builds, with which defaults, and a one-line description."""

    name: str
    target: Callable[..., nn.Module]
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def parameters(self) -> dict[str, inspect.Parameter]:
        """The keyword arguments ``build`` accepts for this entry."""
        return dict(inspect.signature(self.target).parameters)

    def arguments(self, overrides: dict[str, Any]) -> dict[str, Any]:
        """The full argument set (signature defaults, entry defaults, overrides), checked."""
        params = self.parameters()
        requested = {**self.defaults, **overrides}
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        unknown = [] if takes_any else [k for k in requested if k not in params]
        if unknown:
            hints = "".join(
                f"; did you mean {close[0]!r} for {k!r}?"
                for k in unknown
                if (close := difflib.get_close_matches(k, params, n=1))
            )
            raise TypeError(
                f"{self.name!r} has no argument {', '.join(map(repr, unknown))}{hints} "
                f"Its arguments are: {', '.join(params)}."
            )
        bound = inspect.signature(self.target).bind(**requested)
        bound.apply_defaults()
        return dict(bound.arguments)


_REGISTRY: dict[str, Entry] = {}


def register(name: str, target: T | None = None, *, description: str = "", **defaults: Any):
    """Register ``target`` (a class or a function returning a module) under ``name``.

    Use as a decorator, ``@register("my-generator")``, or call it with a target to register
    one class several times with different defaults::

        register("unet128", UNetGenerator, num_downs=7, description="U-Net for 128x128")

    ``description`` defaults to the first line of the target's docstring.
    """

    def add(target: T) -> T:
        if name in _REGISTRY:
            raise ValueError(f"{name!r} is already registered; choose another name")
        doc = (inspect.getdoc(target) or "").split("\n")[0]
        item = Entry(name, target, dict(defaults), description or doc)
        item.arguments({})  # the defaults must fit the signature
        _REGISTRY[name] = item
        return target

    return add if target is None else add(target)


def entry(name: str) -> Entry:
    """The registry entry called ``name``; unknown names fail with the closest known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"no model called {name!r}.{did_you_mean(name, _REGISTRY)} `imgtrans.list_models()` lists them all."
        ) from None


def did_you_mean(name: str, choices: Iterable[str], n: int = 3) -> str:
    """`` Did you mean 'a' or 'b'?`` for the known names closest to ``name``, or an empty string."""
    close = difflib.get_close_matches(name, list(choices), n=n, cutoff=0.4)
    return f" Did you mean {' or '.join(map(repr, close))}?" if close else ""


def list_models(pattern: str = "*") -> list[str]:
    """Registered names matching a shell-style ``pattern`` (``"pix2pix-*"``), sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


@dataclass(frozen=True)
class BuildConfig:
    """What [build][imgtrans.registry.build] was asked for: enough to rebuild the same architecture."""

    name: str
    arguments: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form (see `from_dict`)."""
        return {"name": self.name, "arguments": self.arguments}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "BuildConfig":
        """Read the output of `to_dict`."""
        return cls(data["name"], dict(data.get("arguments", {})))


def json_form(arguments: dict[str, Any]) -> dict[str, Any]:
    """``arguments`` as they read back from JSON (tuples become lists), so that a recorded
    configuration equals its saved and reloaded copy; left as they are if not JSON-serialisable."""
    try:
        return json.loads(json.dumps(arguments))
    except (TypeError, ValueError):
        return dict(arguments)


def build(name: str, pretrained: bool = False, weights: str | os.PathLike | None = None, **overrides: Any) -> nn.Module:
    """Build the registered part or model ``name``.

    Args:
        name: a name from [list_models][imgtrans.registry.list_models], e.g. ``"unet256"`` or ``"pix2pix-facades"``.
        pretrained: load the zoo's weights for ``name`` (see [the zoo][imgtrans.zoo.resolver]):
            from the cache, else downloaded once and cached as safetensors.
        weights: load these weights instead of the zoo's: a save_pretrained folder, a
            ``.safetensors`` file or a reference ``.pth``. Giving ``weights`` implies ``pretrained``.
        **overrides: constructor arguments that replace the entry's defaults
            (``in_channels``, ``base_channels``, ``norm``, ...).

    Returns:
        The module, with ``build_config`` recording ``name`` and the full arguments. Pretrained
        models also carry ``untrained_parts``: the submodules the weights do not cover (the
        published pix2pix weights hold the generator only, so that is ``("discriminator",)``).
    """
    item = entry(name)
    arguments = item.arguments(overrides)
    if pretrained or weights is not None:
        from imgtrans.zoo.pretrained import load_weights
        from imgtrans.zoo.resolver import read_pretrained

        state, parts, source = read_pretrained(name, weights)  # before building: a missing file fails fast
    with skip_initial_weights() if pretrained or weights is not None else contextlib.nullcontext():
        model = item.target(**arguments)
    model.build_config = BuildConfig(name, json_form(arguments))
    if pretrained or weights is not None:
        load_weights(model, state, parts, str(source))
    return model


_FETCH_INITIAL_WEIGHTS: contextvars.ContextVar[bool] = contextvars.ContextVar("imgtrans_initial_weights", default=True)


@contextlib.contextmanager
def skip_initial_weights() -> Iterator[None]:
    """Build parts without fetching their own pretrained weights (a pretrained encoder, say).

    Used whenever a state dict is about to replace every weight anyway (loading a saved model or
    a checkpoint), so that rebuilding it never downloads, nor needs a file that has moved.
    """
    token = _FETCH_INITIAL_WEIGHTS.set(False)
    try:
        yield
    finally:
        _FETCH_INITIAL_WEIGHTS.reset(token)


def fetch_initial_weights() -> bool:
    """Whether parts may fetch their own pretrained weights (``False`` inside [skip_initial_weights][imgtrans.registry.skip_initial_weights])."""
    return _FETCH_INITIAL_WEIGHTS.get()
