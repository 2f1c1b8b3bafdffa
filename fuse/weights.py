"""Checkpoint files of every registered model kind: read, classify, load, rebuild (spec §9).

A method that reads files in other layouts (a DA-V2 release, an upstream code base's output)
registers a ``CheckpointFamily`` that recognizes them and loads them tensor by tensor; this
project's own files of every other kind load here generically, from the builder options they
record. Either way every tensor is loaded or reported with a reason.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from fuse.checkpoint import FORMAT, CheckpointError, read_checkpoint
from fuse.errors import UsageError
from fuse.registry import Registry, load_methods, model_kind


@dataclass
class FileLayout:
    """What a checkpoint holds, read from its key names and tensor shapes (or its recorded config)."""

    kind: str  # the registered model kind the file holds
    ours: bool  # written by this project (LoRA stored unmerged, config recorded)
    encoder: str
    head_size: str | None
    event_bins: int | None
    has_lora: bool
    config: Any = None  # the model's options (a method's config object) where recorded or detected
    run_config: dict | None = None  # the training config of this project's files (input size, dataset, stage)

    def describe(self) -> str:
        parts = [f"a {self.kind} checkpoint with encoder {self.encoder}"]
        if self.head_size:
            parts.append(f"head {self.head_size}")
        head = getattr(self.config, "head", None)
        if head is not None:
            parts.append(f"{head} head" + (f" (max depth {self.config.max_depth:g} m)" if head == "metric" else ""))
        if self.event_bins is not None and self.kind != "depth_anything_v2":
            parts.append(f"{self.event_bins} event bins")
        stage = (self.run_config or {}).get("stage")
        if stage:
            parts.append(f"written by stage {stage}")
        return ", ".join(parts)


@dataclass
class LoadReport:
    """What ``load_weights`` did with every tensor."""

    path: str
    layout: FileLayout
    loaded: list[str] = field(default_factory=list)  # model keys filled from the file
    ignored: dict[str, str] = field(default_factory=dict)  # file key -> why it was not used
    initialized: dict[str, str] = field(default_factory=dict)  # model key -> why it kept its init
    adapted: dict[str, str] = field(default_factory=dict)  # model key -> how the file tensor was converted

    def summary(self) -> str:
        lines = [f"{self.path}: {self.layout.describe()}; loaded {len(self.loaded)} tensors"]
        for title, entries in (("adapted", self.adapted), ("ignored", self.ignored), ("kept initialization", self.initialized)):
            reasons: dict[str, int] = {}
            for reason in entries.values():
                reasons[reason] = reasons.get(reason, 0) + 1
            lines += [f"  {title}: {count} ({reason})" for reason, count in reasons.items()]
        return "\n".join(lines)


@dataclass(frozen=True)
class CheckpointFamily:
    """The checkpoint layouts one method reads, for the model kinds in ``kinds``.

    ``inspect(raw, state, path)`` returns the ``FileLayout`` of a file it recognizes, else None;
    ``load(model, state, layout, path, strict=, into=, lora=)`` fills a model and reports every
    tensor; ``build(layout, overrides)`` returns the model the file describes, ready to load.
    Files that are not torch checkpoints (another framework's format) name their ``suffixes``
    and a ``read(path)`` returning the file's dict, which must never run code from the file.
    """

    name: str
    kinds: tuple[str, ...]
    inspect: Callable[[dict, dict, str], FileLayout | None]
    load: Callable[..., LoadReport]
    build: Callable[[FileLayout, dict], nn.Module]
    describes: str  # what the family's files are, for the message on an unrecognized file
    suffixes: tuple[str, ...] = ()  # file endings read with ``read`` instead of ``read_checkpoint``
    read: Callable[[str], dict] | None = None


FAMILIES: Registry[CheckpointFamily] = Registry("checkpoint family")


def register_family(family: CheckpointFamily) -> CheckpointFamily:
    return FAMILIES.register(family.name, family)


def _family_of_kind(kind: str) -> CheckpointFamily | None:
    load_methods()
    return next((family for family in FAMILIES.entries.values() if kind in family.kinds), None)


def strip_state(state: dict) -> dict[str, torch.Tensor]:
    """Unwrap ``{"model": ...}``, drop DDP's ``module.`` prefix, rename loralib's conv wrapper."""
    for key in ("model", "state_dict"):
        if key in state and isinstance(state[key], dict):
            state = state[key]
    out = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        key = key[len("module."):] if key.startswith("module.") else key
        out[key.replace("patch_embed.proj.conv.", "patch_embed.proj.")] = value
    return out


def _recorded_layout(raw: dict, path: str) -> FileLayout | None:
    """This project's checkpoint of a kind no family reads: ``model_config`` holds the kind's
    builder options, ``model`` the state dict."""
    config = raw.get("model_config") if raw.get("format") == FORMAT else None
    if not isinstance(config, dict) or _family_of_kind(str(config.get("kind"))) is not None:
        return None
    try:
        kind = model_kind(str(config.get("kind")))
    except UsageError as error:
        raise CheckpointError(f"checkpoint {path} holds a model of an unregistered kind: {error}") from None
    run_config = raw.get("run_config")
    return FileLayout(kind.name, True, str(config.get("encoder", "-")), None, None, False,
                      config=SimpleNamespace(**config), run_config=run_config if isinstance(run_config, dict) else None)


def _read_raw(path: str | os.PathLike) -> dict:
    """The file's dict: through the family that names its suffix, else ``read_checkpoint``."""
    load_methods()
    suffix = os.path.splitext(str(path))[1].lower()
    for family in FAMILIES.entries.values():
        if family.read is not None and suffix in family.suffixes:
            return family.read(str(path))
    return read_checkpoint(path)


def read_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], FileLayout]:
    """Read a checkpoint file (a torch checkpoint, or another format a family reads) and classify it."""
    raw = _read_raw(path)
    state = strip_state(raw)
    layout = _recorded_layout(raw, str(path))
    if layout is not None:
        return state, layout
    load_methods()
    for family in FAMILIES.entries.values():
        layout = family.inspect(raw, state, str(path))
        if layout is not None:
            return state, layout
    known = "; ".join(family.describes for family in FAMILIES.entries.values())
    sample = ", ".join(list(state)[:5])
    raise CheckpointError(f"checkpoint {path} is not a checkpoint of any known layout ({known}; "
                          f"or this project's file of a registered kind); first keys: {sample}")


def load_weights(model: nn.Module, path: str | os.PathLike, strict: bool = True,
                 into: str | Sequence[str] | None = None, lora: str = "auto",
                 contents: tuple[dict[str, torch.Tensor], FileLayout] | None = None) -> LoadReport:
    """Load ``path`` into ``model`` and return a ``LoadReport``.

    Files of a family's kinds go through the family's loader (``into`` restricts loading to
    parts of the model, ``lora`` says how LoRA tensors are read: see the family); every other
    file must be this project's file of the model's own kind and fill every tensor.
    ``contents`` is what ``read_weights(path)`` returned, for a caller that read the file already.
    """
    path = str(path)
    state, layout = contents if contents is not None else read_weights(path)
    kind = model.config.kind
    family = _family_of_kind(kind)
    if family is not None:
        return family.load(model, state, layout, path, strict=strict, into=into, lora=lora)
    if layout.kind != kind:
        raise CheckpointError(f"checkpoint {path} holds {layout.describe()}, but a {kind} model was asked for; "
                              f"build_model('{layout.kind}', ...) to load it")
    return _load_state(model, state, layout, path)


def _load_state(model: nn.Module, state: dict, layout: FileLayout, path: str) -> LoadReport:
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path} does not fit the {layout.kind} model it describes "
                              f"({str(error).splitlines()[0]})") from None
    return LoadReport(path, layout, loaded=sorted(state))


def load_model(path: str | os.PathLike, **overrides) -> tuple[nn.Module, LoadReport]:
    """Build the model a checkpoint describes and load it.

    ``overrides`` are builder options, e.g. ``head="metric", max_depth=80`` for an upstream FUSE
    file, whose head ending cannot be read from the tensors.
    """
    state, layout = read_weights(path)
    family = _family_of_kind(layout.kind)
    if family is not None:
        model = family.build(layout, overrides)
        return model, family.load(model, state, layout, str(path), strict=True, into=None, lora="auto")
    options = {key: value for key, value in vars(layout.config).items() if key != "kind"} | overrides
    model = model_kind(layout.kind).build(**options)
    return model, _load_state(model, state, layout, str(path))
