"""STD and FCFRNet checkpoints: the Paddle port's weights and this project's files, one ``CheckpointFamily``.

A Paddle state dict (spec fcfrnet.md §4, §7) is recognized by its keys in any container the core
reads; ``.pdparams`` files are read through ``paddle.PaddleUnpickler`` (the family's reader, so
``fuse.load_weights`` and ``fuse.weights.load_model`` take them too). The kind and input mode come from the stem keys and shapes; the
options no tensor shows (wiring, energy window, depth range) take the released defaults.
Loading is strict: every tensor on both sides is used, except PyTorch's BatchNorm batch counters,
which a Paddle file cannot hold.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from fuse.checkpoint import FORMAT
from fuse.errors import CheckpointError, UsageError
from fuse.methods.fcfrnet.model import FCFRNET_KIND, STD_KIND, FcfrNet, FcfrNetConfig, Std, StdConfig
from fuse.methods.fcfrnet.paddle import DATA_PARALLEL_PREFIX, is_batch_counter, paddle_name, read_pdparams, torch_state
from fuse.weights import CheckpointFamily, FileLayout, LoadReport, register_family

CONFIGS = {STD_KIND: StdConfig, FCFRNET_KIND: FcfrNetConfig}
NETWORKS = {STD_KIND: Std, FCFRNET_KIND: FcfrNet}
DEPTH_STEMS = {FCFRNET_KIND: "conv1_d_2.0.weight", STD_KIND: "conv1_d.0.weight"}  # spec §2, §3
HEAD_KEY = "convtf.0.weight"
IMAGE_STEM = "conv1_img.0.weight"
MODES_BY_IMAGE_CHANNELS = {3: "rgbd", 1: "gd"}
ENCODER = "resnet34"
UNMATCHED = "matches no parameter of the model"
MISSING = "missing from the file"
NO_COUNTER = "Paddle's BatchNorm keeps no batch counter (PyTorch uses it only with momentum=None)"
SHOWN = 5  # keys named per list in an error


@dataclass
class FcfrLayout(FileLayout):
    """An STD or FCFRNet file: its config, its tensors in model names and how the file named them."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)
    file_names: dict[str, str] = field(default_factory=dict, repr=False)
    ignored: dict[str, str] = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        origin = "this project's" if self.ours else "a Paddle-port"
        return f"{origin} {self.kind} network ({self.config.input_mode} input)"

    def file_name(self, name: str) -> str:
        """How the file names (or would name) the model tensor ``name``."""
        return self.file_names.get(name, name if self.ours else paddle_name(name))


def _detect_config(kind: str, tensors: dict[str, torch.Tensor], path: str) -> StdConfig | FcfrNetConfig:
    """The input mode from the image stem (absent in ``d`` mode); the rest are the release's options."""
    if IMAGE_STEM not in tensors:
        return CONFIGS[kind](input_mode="d")
    channels = tensors[IMAGE_STEM].shape[1] if tensors[IMAGE_STEM].ndim == 4 else None
    if channels not in MODES_BY_IMAGE_CHANNELS:
        raise CheckpointError(f"{path} has {kind}'s keys, but its image stem {IMAGE_STEM} has shape "
                              f"{tuple(tensors[IMAGE_STEM].shape)}: no input mode takes that")
    return CONFIGS[kind](input_mode=MODES_BY_IMAGE_CHANNELS[channels])


def _paddle_layout(raw: dict, path: str) -> FcfrLayout | None:
    names = {key.removeprefix(DATA_PARALLEL_PREFIX) for key in raw if isinstance(key, str)}
    kind = next((kind for kind, stem in DEPTH_STEMS.items() if stem in names), None)
    if kind is None or HEAD_KEY not in names:
        return None
    tensors, file_names, ignored = torch_state(raw, path)
    return FcfrLayout(kind, False, ENCODER, None, None, False, config=_detect_config(kind, tensors, path),
                      tensors=tensors, file_names=file_names, ignored=ignored)


def inspect_file(raw: dict, state: dict, path: str) -> FcfrLayout | None:
    """The layout of this project's STD / FCFRNet checkpoint or of a Paddle state dict of either
    network (numpy arrays or tensors); None for any other file."""
    recorded = raw.get("model_config") if raw.get("format") == FORMAT else None
    if not isinstance(recorded, dict):
        return _paddle_layout(raw, path)
    kind = recorded.get("kind")
    if kind not in CONFIGS:
        return None
    try:
        config = CONFIGS[kind].from_dict(recorded)
    except (UsageError, TypeError) as error:
        raise CheckpointError(f"checkpoint {path} has a damaged {kind} model_config ({error})") from None
    run_config = raw.get("run_config")
    return FcfrLayout(kind, True, ENCODER, None, None, False, config=config,
                      run_config=run_config if isinstance(run_config, dict) else None, tensors=state)


def _listed(names: Sequence[str]) -> str:
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return f"{list(names[:SHOWN])}{more}"


def load_state(model: nn.Module, state: dict, layout: FcfrLayout, path: str, strict: bool = True,
               into: str | Sequence[str] | None = None, lora: str = "auto") -> LoadReport:
    """Fill ``model`` from an STD / FCFRNet file and report every tensor.

    The file's kind and input mode must be the model's. With ``strict`` every tensor on both
    sides must be used with its shape (batch counters aside); errors name the keys as the file
    does. ``state`` is the core's view of the file; the tensors are ``layout.tensors``. The models
    have no parts and no LoRA: ``into`` must be None, ``lora`` is ignored.
    """
    if into is not None:
        raise UsageError(f"an {layout.kind} model loads whole; into={into!r} names no part of it")
    config = model.config
    if config.kind != layout.kind or config.input_mode != layout.config.input_mode:
        raise CheckpointError(
            f"checkpoint {path} holds {layout.describe()}, but the model is {config.kind} with "
            f"{config.input_mode} input; build it with fuse.build_model('{layout.kind}', "
            f"input_mode='{layout.config.input_mode}'), or let fuse.weights.load_model build it")
    expected = model.state_dict()
    report = LoadReport(path, layout, ignored=dict(layout.ignored))
    mismatched = sorted(name for name in expected.keys() & layout.tensors.keys()
                        if layout.tensors[name].shape != expected[name].shape)
    unmatched = sorted(layout.tensors.keys() - expected.keys())
    missing = sorted(name for name in expected.keys() - layout.tensors.keys() if not is_batch_counter(name))
    report.ignored |= {layout.file_name(name): UNMATCHED for name in unmatched}
    report.ignored |= {layout.file_name(name): f"shape {tuple(layout.tensors[name].shape)} is not the model's "
                       f"{tuple(expected[name].shape)}" for name in mismatched}
    report.initialized = {name: MISSING for name in missing}
    report.initialized |= {name: NO_COUNTER for name in expected.keys() - layout.tensors.keys()
                           if is_batch_counter(name)}
    if strict and (unmatched or missing or mismatched):
        shapes = [f"{layout.file_name(name)} {tuple(layout.tensors[name].shape)} vs {tuple(expected[name].shape)}"
                  for name in mismatched]
        raise CheckpointError(
            f"checkpoint {path} ({layout.describe()}) does not fit the model: unexpected keys in the file "
            f"{_listed([layout.file_name(name) for name in unmatched])}, keys missing from the file "
            f"{_listed([layout.file_name(name) for name in missing])}, shapes that differ {_listed(shapes)}. "
            "Pass strict=False to load what fits.")
    used = {name: tensor for name, tensor in layout.tensors.items() if name in expected and name not in mismatched}
    model.load_state_dict(used, strict=False)
    report.loaded = sorted(used)
    return report


def build_for(layout: FcfrLayout, overrides: dict) -> nn.Module:
    """The network a file describes; ``overrides`` are builder options (e.g. ``wiring="clean"``)."""
    return NETWORKS[layout.kind](CONFIGS[layout.kind].from_dict({**layout.config.to_dict(), **overrides}))


def read_paddle_layout(path: str | os.PathLike) -> FcfrLayout:
    """The layout of a ``.pdparams`` file of STD or FCFRNet."""
    raw = read_pdparams(path)
    layout = _paddle_layout(raw, str(path))
    if layout is None:
        raise CheckpointError(f"{path} is a Paddle state dict, but not of STD or FCFRNet (no {HEAD_KEY} with "
                              f"{' or '.join(DEPTH_STEMS.values())}); first keys: {', '.join(list(raw)[:5])}")
    return layout


def load_pdparams(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> LoadReport:
    """Load a Paddle-port ``.pdparams`` file into an STD or FCFRNet ``model``."""
    return load_state(model, {}, read_paddle_layout(path), str(path), strict=strict)


def load_paddle_model(path: str | os.PathLike, **overrides) -> tuple[nn.Module, LoadReport]:
    """Build the network a ``.pdparams`` file holds (``overrides``: builder options) and load it."""
    layout = read_paddle_layout(path)
    model = build_for(layout, overrides)
    return model, load_state(model, {}, layout, str(path))


register_family(CheckpointFamily(
    "fcfrnet", (STD_KIND, FCFRNET_KIND), inspect_file, load_state, build_for,
    "an STD / FCFRNet state dict in the Paddle port's names (conv1_d or conv1_d_2 ... convtf) or this "
    "project's STD / FCFRNet file", suffixes=(".pdparams",), read=read_pdparams))
