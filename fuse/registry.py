"""The model registry: every model kind says how it is built, what it takes and what it gives.

A method registers its kinds when its package is imported (``register_model``); everything
else (``fuse.build_model``, config choices, training inputs, prediction) looks them up here
instead of naming kinds. Inputs and outputs come from small fixed vocabularies so that data
loading, evaluation and visualization can serve any kind that uses them.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fuse.errors import UsageError

if TYPE_CHECKING:
    from torch import nn

INPUTS = ("image", "events", "sparse_depth", "dsi_patch")
OUTPUTS = ("metric_depth", "relative_inverse_depth", "normalized_log_depth", "point_depth")
# Packages whose import registers the built-in kinds.
BUILTIN_METHODS = ("fuse.models", "fuse.engine.stages")


@dataclass(frozen=True)
class ModelKind:
    """One registered model kind.

    ``build(**options)`` returns a randomly initialized model; ``inputs`` are the forward
    arguments in order; ``outputs`` maps a head ending (``options["head"]``) to what the model
    predicts; ``layouts`` are the checkpoint layouts (``fuse.engine.weights`` file kinds) it loads.
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


_KINDS: dict[str, ModelKind] = {}


def register_model(kind: ModelKind) -> ModelKind:
    """Add a kind; registering another kind under a taken name is an error."""
    if kind.name in _KINDS and _KINDS[kind.name] is not kind:
        raise ValueError(f"model kind {kind.name!r} is registered already")
    _KINDS[kind.name] = kind
    return kind


def load_methods() -> None:
    """Import the built-in methods, which register their model kinds and stages."""
    for package in BUILTIN_METHODS:
        importlib.import_module(package)


def list_models() -> list[str]:
    """The names of every registered model kind."""
    load_methods()
    return sorted(_KINDS)


def model_kind(name: str) -> ModelKind:
    """The registered kind ``name``, or a ``UsageError`` listing the known ones."""
    load_methods()
    if name not in _KINDS:
        raise UsageError(f"unknown model {name!r}; expected one of {sorted(_KINDS)}")
    return _KINDS[name]
