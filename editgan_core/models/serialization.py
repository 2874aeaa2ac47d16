"""One save/load contract for every network, in the spirit of diffusers' ``ModelMixin``/``ConfigMixin``.

A network's constructor arguments are its config, captured once when it is built (``@register_config``
on ``__init__``), so no class writes its config by hand and a saved file always rebuilds the same
architecture. ``save`` writes the weights to one safetensors file with that config as JSON under the
metadata key "config", atomically, so a reader never sees half a file. ``load`` rebuilds the network
from the config, checks every key and shape before copying (``CheckpointError`` names what does not
match) and returns it frozen in eval mode: a loaded network is used, not trained, and training code
says so with ``.train().requires_grad_(True)``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import numbers
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from editgan_core.utils import atomic_write

MAX_LISTED = 5
CONFIG_KEY = "config"
M = TypeVar("M", bound="ModelMixin")  # typing.Self needs Python 3.11


class CheckpointError(ValueError):
    """A checkpoint that cannot be used as asked; the message says why."""


def check_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str = "checkpoint") -> None:
    """Raise ``CheckpointError`` naming missing/unexpected keys and shape mismatches."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k}: expected {tuple(expected[k].shape)}, found {tuple(state_dict[k].shape)}"
        for k in expected
        if k in state_dict and tuple(expected[k].shape) != tuple(state_dict[k].shape)
    ]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
        if items:
            more = f" (+{len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
            problems.append(f"{len(items)} {label}: " + "; ".join(items[:MAX_LISTED]) + more)
    if problems:
        raise CheckpointError(f"{what} does not match the model. " + " | ".join(problems))


def load_checked(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str = "checkpoint") -> None:
    check_state_dict(module, state_dict, what)
    module.load_state_dict(state_dict, strict=True)


@contextlib.contextmanager
def _open_safetensors(path: Path, device: str | torch.device = "cpu") -> Iterator[Any]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            yield f
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{path.name} is not a readable safetensors file: {exc}") from exc


def read_safetensors(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor],
                                                                                   dict[str, str]]:
    """All tensors of a safetensors file and its metadata, with a clear error for a missing or foreign file."""
    with _open_safetensors(Path(path), device) as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118 (not a dict)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a safetensors file (what training stored beside the weights: steps, scores...)."""
    with _open_safetensors(Path(path)) as f:
        return dict(f.metadata() or {})


def to_json_value(value: Any, where: str) -> Any:
    """``value`` as plain JSON types: tuples become lists, mapping keys strings (JSON has no int keys)."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v, where) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_json_value(v, where) for v in value]
    raise TypeError(f"{where}: a {type(value).__name__} cannot be stored in a config (JSON)")


def int_keys(mapping: Mapping[int | str, int] | None) -> dict[int, int]:
    """A {resolution: width} argument with int keys again; its config, read back from JSON, has strings."""
    return {int(k): int(v) for k, v in (mapping or {}).items()}


def register_config(init: Callable[..., None]) -> Callable[..., None]:
    """Decorate a network's ``__init__`` so that its arguments, defaults filled in, become its config.

    Constructors must therefore accept what JSON gives back: lists for tuples, string keys for int keys.
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self: ModelMixin, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        arguments = dict(list(bound.arguments.items())[1:])  # without self
        config = to_json_value(arguments, f"{type(self).__name__} config")
        init(self, *args, **kwargs)
        # after init: a subclass's decorated __init__ runs last and wins over its base class's
        object.__setattr__(self, "_config_json", json.dumps(config))

    wrapper.registers_config = True  # type: ignore[attr-defined]
    wrapper.takes_arguments = len(signature.parameters) > 1  # type: ignore[attr-defined]
    return wrapper


class ModelMixin:
    """Config capture, ``save`` and ``load`` for an ``nn.Module``: ``class Net(ModelMixin, nn.Module)``.

    ``FORMAT``, when a class sets it, is written into the config as "format" and required on load, so
    a file of another kind is refused by name rather than by a shape mismatch.
    """

    FORMAT: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__ and not getattr(cls.__init__, "registers_config", False):
            raise TypeError(f"{cls.__name__}.__init__ must be decorated with @register_config")

    @property
    def config(self) -> dict[str, Any]:
        """The constructor arguments (a fresh copy): ``type(self).from_config(self.config)`` rebuilds it."""
        return json.loads(self._config_json)

    @classmethod
    def from_config(cls: type[M], config: Mapping[str, Any], what: str = "config") -> M:
        """A new network (random weights) built from a config; ``CheckpointError`` if it does not fit."""
        config = dict(config)
        found = config.pop("format", None)
        if found != cls.FORMAT:
            raise CheckpointError(f"{what} is not a {cls.__name__} file: format {found!r}, expected {cls.FORMAT!r}")
        try:
            return cls(**config)
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{what}: its config does not build a {cls.__name__} ({exc})") from exc

    def save(self, path: str | Path, metadata: Mapping[str, str] | None = None,
             extra_tensors: Mapping[str, torch.Tensor] | None = None) -> Path:
        """One safetensors file: the weights, ``metadata`` and the config (JSON) under "config".

        ``extra_tensors`` go beside the weights for readers that know them (a generator's ``latent_avg``,
        read by ``checkpoint.load_generator``); ``load`` is strict and refuses a file that has any.
        """
        config, tensors = self.to_state()
        clash = sorted(set(tensors) & set(extra_tensors or {}))
        if clash:
            raise ValueError(f"extra tensors {clash} would overwrite weights of {type(self).__name__}")
        tensors.update({k: v.detach().cpu().contiguous() for k, v in (extra_tensors or {}).items()})
        meta = {**(metadata or {}), CONFIG_KEY: json.dumps(config)}
        return atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))

    def to_state(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        """(config with "format", CPU weights): what ``save`` writes and ``from_state`` rebuilds, as plain data."""
        module: nn.Module = self  # type: ignore[assignment]
        config = self.config if self.FORMAT is None else {"format": self.FORMAT, **self.config}
        return config, {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}

    @classmethod
    def from_state(cls: type[M], config: Mapping[str, Any], state: Mapping[str, torch.Tensor], what: str) -> M:
        """A network built from ``config`` holding ``state``.

        The shapes are checked on a skeleton on the meta device first, so a config that does not fit
        the tensors (a corrupt or hostile file asking for a huge network) is refused before any
        memory is spent on it.
        """
        with torch.device("meta"):
            check_state_dict(cls.from_config(config, what), state, what)
        model = cls.from_config(config, what)
        model.load_state_dict(state, strict=True)
        return model

    @classmethod
    def load(cls: type[M], path: str | Path, device: str | torch.device = "cpu") -> M:
        """Rebuild a network written by ``save``: checked, on ``device``, frozen, in eval mode."""
        path = Path(path)
        tensors, metadata = read_safetensors(path)
        model = cls.from_state(cls.config_in(metadata, path.name), tensors, f"{cls.__name__} file {path.name}")
        return model.to(device).eval().requires_grad_(False)

    @classmethod
    def config_in(cls, metadata: Mapping[str, str], what: str) -> dict[str, Any]:
        """The config a file's metadata holds; a network without constructor arguments needs none."""
        if CONFIG_KEY not in metadata:
            if not getattr(cls.__init__, "takes_arguments", True):
                return {} if cls.FORMAT is None else {"format": cls.FORMAT}
            raise CheckpointError(f"{what} has no '{CONFIG_KEY}' metadata; not a {cls.__name__} file saved by "
                                  f"{cls.__name__}.save")
        try:
            config = json.loads(metadata[CONFIG_KEY])
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{what}: its '{CONFIG_KEY}' metadata is not JSON ({exc})") from exc
        if not isinstance(config, dict):
            raise CheckpointError(f"{what}: its '{CONFIG_KEY}' metadata is a {type(config).__name__}, "
                                  "expected an object")
        return config
