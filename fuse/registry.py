"""The model registry: every model kind says how it is built, what it takes and what it gives.

A method registers its kinds when its package is imported (``register_model``); everything
else (``fuse.build_model``, config choices, training inputs, prediction) looks them up here
instead of naming kinds. Inputs and outputs come from small fixed vocabularies so that data
loading, evaluation and visualization can serve any kind that uses them.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from fuse.errors import FuseError, UsageError

if TYPE_CHECKING:
    from torch import nn

INPUTS = ("image", "events", "sparse_depth", "dsi_patch")
OUTPUTS = ("metric_depth", "relative_inverse_depth", "normalized_log_depth", "point_depth")
METHODS_PACKAGE = "fuse.methods"
ENTRY_POINT_GROUP = "fuse.methods"  # methods shipped by other distributions


class ModelSettings(Protocol):
    """What every model's ``config`` offers: checkpoints record ``to_dict()`` (the builder's
    options) and prediction reads the kind and the head ending."""

    kind: str
    head: str

    def to_dict(self) -> dict: ...


@dataclass(frozen=True)
class ModelKind:
    """One registered model kind.

    ``build(**options)`` returns a randomly initialized model; ``inputs`` are the forward
    arguments in order; ``outputs`` maps a head ending (``options["head"]``) to what the model
    predicts; ``layouts`` are the checkpoint layouts (``fuse.weights`` file kinds) it loads.
    """

    name: str
    build: Callable[..., "nn.Module"]
    inputs: tuple[str, ...]
    outputs: Mapping[str, str]
    layouts: tuple[str, ...]
    description: str
    default_head: str = field(default="")

    def __post_init__(self) -> None:
        unknown = [i for i in self.inputs if i not in INPUTS] + [o for o in self.outputs.values() if o not in OUTPUTS]
        if unknown:
            raise ValueError(f"model kind {self.name!r} names {unknown}; inputs are {INPUTS}, outputs {OUTPUTS}")

    def output(self, head: str) -> str:
        """What a model of this kind with this head ending predicts."""
        return self.outputs[head]


Entry = TypeVar("Entry")


class Registry(Generic[Entry]):
    """Named entries (model kinds, training stages) that methods add when they are imported."""

    def __init__(self, what: str, error: type[FuseError] = UsageError) -> None:
        self.what, self.error = what, error
        self.entries: dict[str, Entry] = {}

    def register(self, name: str, entry: Entry) -> Entry:
        """Add an entry; another entry under a taken name is an error."""
        if name in self.entries and self.entries[name] is not entry:
            raise ValueError(f"{self.what} {name!r} is registered already")
        self.entries[name] = entry
        return entry

    def names(self) -> list[str]:
        load_methods()
        return list(self.entries)

    def get(self, name: str) -> Entry:
        """The entry ``name``, or the registry's error listing the known names."""
        load_methods()
        if name not in self.entries:
            raise self.error(f"unknown {self.what} {name!r}; expected one of {sorted(self.entries)}")
        return self.entries[name]


MODELS: Registry[ModelKind] = Registry("model")


def register_model(kind: ModelKind) -> ModelKind:
    """Add a model kind (``fuse.build_model(kind.name)``, ``model.kind`` in configs)."""
    return MODELS.register(kind.name, kind)


def method_packages() -> list[str]:
    """Every method package: the subpackages of ``fuse.methods`` and the ``fuse.methods`` entry points."""
    from importlib.metadata import entry_points

    import fuse.methods

    found = [f"{METHODS_PACKAGE}.{info.name}" for info in pkgutil.iter_modules(fuse.methods.__path__) if info.ispkg]
    return sorted(found) + sorted(point.value for point in entry_points(group=ENTRY_POINT_GROUP))


_loaded = False


def load_methods() -> None:
    """Import every method package once; importing one registers its kinds, stages and protocols."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for package in method_packages():
        importlib.import_module(package)


def list_models() -> list[str]:
    """The names of every registered model kind."""
    return sorted(MODELS.names())


def model_kind(name: str) -> ModelKind:
    """The registered kind ``name``, or a ``UsageError`` listing the known ones."""
    return MODELS.get(name)
