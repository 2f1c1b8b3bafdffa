"""DERD-Net checkpoints: the authors' 24 released files and this project's own, one ``CheckpointFamily``.

A released file (spec §7) is ``{"model_state_dict", "optimizer_state_dict"}`` as the authors'
``save_model`` writes it (tub-rip/DERD-Net ``notebooks/Classes_and_Functions.ipynb``); the
variant and sizes are read from tensor shapes. It holds only tensors and containers, so the
core reader (``weights_only``) takes it; the core's ``strip_state`` does not unwrap
``model_state_dict``, so the tensors travel in the layout from ``inspect`` to ``load``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import torch

from fuse.checkpoint import FORMAT, CheckpointError
from fuse.errors import UsageError
from fuse.methods.derdnet.model import KIND, DerdNet, DerdNetConfig
from fuse.weights import CheckpointFamily, FileLayout, LoadReport, register_family, strip_state

RELEASED_KEYS = ("conv3d.0.weight", "gru.weight_ih_l0", "gru.weight_hh_l0", "dense_output.3.weight")
UNMATCHED = "matches no parameter of the model"
MISSING = "missing from the file"


@dataclass
class DerdNetLayout(FileLayout):
    """A DERD-Net file: its config (recorded, or read from shapes) and its tensors."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        variant = "multi-pixel (9 outputs per Sub-DSI)" if self.config.multi_pixel else "single-pixel (1 output)"
        origin = "this project's" if self.ours else "a released"
        return f"{origin} DERD-Net {variant} network ({_options(self.config)})"


def _options(config: DerdNetConfig, *others: DerdNetConfig) -> str:
    """``name=value, ...`` of every option, or of those that differ from any of ``others``."""
    names = [item.name for item in fields(config)]
    if others:
        names = [name for name in names if any(getattr(config, name) != getattr(other, name) for other in others)]
    return ", ".join(f"{name}={getattr(config, name)!r}" for name in names)


def _config_from_shapes(tensors: dict[str, torch.Tensor], path: str) -> DerdNetConfig:
    """Sizes from the conv, GRU and output tensors; a shape no DERD-Net has is a ``CheckpointError``."""
    channels = tensors["conv3d.0.weight"].shape[0]
    features, hidden = tensors["gru.weight_ih_l0"].shape[1], tensors["gru.weight_hh_l0"].shape[1]
    outputs = tensors["dense_output.3.weight"].shape[0]
    inner = math.isqrt(features // channels)  # side - 2 = 2 * radius - 1
    if inner * inner * channels != features or inner % 2 == 0 or hidden % features or outputs not in (1, 9):
        raise CheckpointError(f"checkpoint {path} has DERD-Net's keys but shapes no DERD-Net has (conv {channels} "
                              f"channels, GRU {features} -> {hidden}, {outputs} outputs)")
    return DerdNetConfig(multi_pixel=outputs == 9, radius=(inner + 1) // 2, out_channels=channels,
                         hidden_scale=hidden // features)


def inspect_file(raw: dict, state: dict, path: str) -> DerdNetLayout | None:
    """The layout of a released DERD-Net file, a bare DERD-Net state dict or this project's DERD-Net
    checkpoint; None for any other file."""
    recorded = raw.get("model_config") if raw.get("format") == FORMAT else None
    if isinstance(recorded, dict):
        if recorded.get("kind") != KIND:
            return None
        try:
            config = DerdNetConfig.from_dict(recorded)
        except (UsageError, TypeError) as error:
            raise CheckpointError(f"checkpoint {path} has a damaged DERD-Net model_config ({error})") from None
        run_config = raw.get("run_config")
        return DerdNetLayout(KIND, True, "-", None, None, False, config=config,
                             run_config=run_config if isinstance(run_config, dict) else None, tensors=state)
    wrapped = raw.get("model_state_dict")
    tensors = strip_state(wrapped) if isinstance(wrapped, dict) else state
    if not all(key in tensors for key in RELEASED_KEYS):
        return None
    return DerdNetLayout(KIND, False, "-", None, None, False, config=_config_from_shapes(tensors, path),
                         tensors=tensors)


def load_state(model: DerdNet, state: dict, layout: DerdNetLayout, path: str, strict: bool = True,
               into: str | Sequence[str] | None = None, lora: str = "auto") -> LoadReport:
    """Fill ``model`` from a DERD-Net file and report every tensor.

    The file's variant and sizes must be the model's; with ``strict`` every tensor on both sides
    must be used. ``state`` is the core's view of the file; the tensors are ``layout.tensors``.
    DERD-Net has no parts and no LoRA: ``into`` must be None, ``lora`` is ignored.
    """
    if into is not None:
        raise UsageError(f"a DERD-Net model loads whole; into={into!r} names no part of it")
    if layout.config != model.config:
        built = _options(model.config, layout.config)
        wanted = _options(layout.config, model.config, DerdNetConfig())
        raise CheckpointError(
            f"checkpoint {path} holds {layout.describe()}, but the model was built with {built}; build it with "
            f"fuse.build_model('{KIND}', {wanted}), or let fuse.weights.load_model('{path}') "
            "build the right one")
    expected = model.state_dict()
    report = LoadReport(path, layout)
    report.ignored = {key: UNMATCHED for key in sorted(layout.tensors.keys() - expected.keys())}
    report.initialized = {key: MISSING for key in sorted(expected.keys() - layout.tensors.keys())}
    if strict and (report.ignored or report.initialized):
        raise CheckpointError(
            f"checkpoint {path} ({layout.describe()}) does not fit the model: file tensors matching nothing "
            f"{list(report.ignored)[:3]}, model tensors without a value {list(report.initialized)[:3]}. "
            "Pass strict=False to load what fits.")
    used = {key: tensor for key, tensor in layout.tensors.items() if key in expected}
    try:
        model.load_state_dict(used, strict=False)
    except RuntimeError as error:
        raise CheckpointError(f"checkpoint {path} does not fit the DERD-Net model it describes "
                              f"({str(error).splitlines()[-1].strip()})") from None
    report.loaded = sorted(used)
    return report


def build_for(layout: DerdNetLayout, overrides: dict) -> DerdNet:
    """The network a file describes; ``overrides`` are builder options (none is needed)."""
    return DerdNet(DerdNetConfig.from_dict({**layout.config.to_dict(), **overrides}))


register_family(CheckpointFamily(
    "derdnet", (KIND,), inspect_file, load_state, build_for,
    "a DERD-Net release (model_state_dict with conv3d / gru / dense_output) or this project's DERD-Net file"))
