"""The FUSE family's checkpoint layouts: DA-V2 releases, upstream FUSE / stage-1 files and this
project's FUSE-family files (spec §9), registered as one ``CheckpointFamily``.

Sizes are detected from tensor shapes, so a file of another size or model fails with one
message saying what the file holds and what was asked for.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import nn

from fuse.checkpoint import FORMAT, CheckpointError
from fuse.data.constants import DEFAULT_MAX_DEPTH
from fuse.layers.lora import LoRALinear
from fuse.layers.sizes import ENCODER_SIZES, HEAD_SIZES
from fuse.methods.fuse.models import MODEL_CLASSES, ModelConfig, build_from_config, event_patch_weight_from_rgb
from fuse.registry import model_kind
from fuse.weights import CheckpointFamily, FileLayout, LoadReport, register_family

ENCODER_PARTS = ("image_encoder", "prompt_encoder")
# Parameters the upstream code defines but never uses in a forward pass.
UPSTREAM_UNUSED = re.compile(r"(low|high)_cross_att\.(temperature|norm2\.(weight|bias))$")
LORA_KEY = re.compile(r"\.lora_[AB]$")
LORA_RESET = "LoRA update reset to zero (merged into weight, or absent from the file)"
MISSING = "missing from the file"
UNMATCHED = "matches no parameter of the model"


def _block_count(state: dict, prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"blocks\.(\d+)\.")
    indices = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    return max(indices) + 1 if indices else 0


def _detect_encoder(state: dict, prefix: str) -> str:
    pos = state.get(prefix + "pos_embed")
    if pos is None:
        raise KeyError(prefix + "pos_embed")
    embed, depth = pos.shape[-1], _block_count(state, prefix)
    for name, size in ENCODER_SIZES.items():
        if size.embed_dim == embed and size.depth == depth:
            return name
    return f"custom (embed {embed}, {depth} blocks)"


def _detect_head(state: dict) -> str | None:
    layer1 = state.get("depth_head.scratch.layer1_rn.weight")
    if layer1 is None:
        return None
    features = layer1.shape[0]
    out_channels = tuple(state[f"depth_head.projects.{i}.weight"].shape[0] for i in range(4)
                         if f"depth_head.projects.{i}.weight" in state)
    for name, size in HEAD_SIZES.items():
        if size.features == features and size.out_channels == out_channels:
            return name
    return f"custom (features {features}, out_channels {out_channels})"


def inspect_state(state: dict, path: str = "<memory>") -> FileLayout | None:
    """Classify a (stripped) state dict and detect its sizes from tensor shapes; None when it
    holds no DA-V2 / FUSE-family tensors."""
    has_lora = any(LORA_KEY.search(k) for k in state)
    try:
        if any(k.startswith(("image_encoder.", "prompt_encoder.", "prompt_fuse.")) for k in state):
            return FileLayout("fuse", False, _detect_encoder(state, "image_encoder."), _detect_head(state),
                              state["prompt_encoder.patch_embed.proj.weight"].shape[1], has_lora)
        if any(k.startswith("pretrained.") for k in state):
            kind = "event_student" if has_lora else "depth_anything_v2"
            bins = state["pretrained.patch_embed.proj.weight"].shape[1]
            return FileLayout(kind, False, _detect_encoder(state, "pretrained."), _detect_head(state), bins, has_lora)
    except KeyError as missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing.args[0]!r}; it is incomplete or not a DA-V2/FUSE file")
    return None


def inspect_file(raw: dict, state: dict, path: str) -> FileLayout | None:
    """The layout of a DA-V2 / upstream / this project's FUSE-family file, None for other files."""
    layout = inspect_state(state, path)
    if layout is None or raw.get("format") != FORMAT:
        return layout
    layout.ours = True
    try:
        layout.config = ModelConfig.from_dict(raw["model_config"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"checkpoint {path} has a damaged model_config ({error})") from None
    run_config = raw.get("run_config")
    layout.run_config = run_config if isinstance(run_config, dict) else None
    return layout


# (model layout, model part) -> {file kind: file prefix that fills it}
PART_SOURCES: dict[tuple[str, str], dict[str, str]] = {
    ("fuse", "image_encoder"): {"fuse": "image_encoder.", "depth_anything_v2": "pretrained."},
    ("fuse", "prompt_encoder"): {"fuse": "prompt_encoder.", "depth_anything_v2": "pretrained.",
                                 "event_student": "pretrained."},
    ("fuse", "prompt_fuse"): {"fuse": "prompt_fuse."},
    ("fuse", "depth_head"): {"fuse": "depth_head.", "depth_anything_v2": "depth_head."},
    ("dav2", "pretrained"): {"depth_anything_v2": "pretrained.", "event_student": "pretrained."},
    ("dav2", "depth_head"): {"depth_anything_v2": "depth_head.", "event_student": "depth_head.",
                             "fuse": "depth_head."},
}


def _layout_of(model: nn.Module) -> str:
    return "fuse" if model.config.kind == "fuse" else "dav2"


def _parts(model: nn.Module) -> list[str]:
    layout = _layout_of(model)
    return [part for (owner, part) in PART_SOURCES if owner == layout]


def _check_sizes(model: nn.Module, layout: FileLayout, path: str, parts: list[str]) -> None:
    config = model.config
    wants_head = "depth_head" in parts and layout.head_size is not None
    wrong_encoder = layout.encoder != config.encoder
    wrong_head = wants_head and layout.head_size != config.head_size
    if not (wrong_encoder or wrong_head):
        return
    head_hint = f", head_size='{layout.head_size}'" if layout.head_size else ""
    raise CheckpointError(
        f"checkpoint {path} holds {layout.describe()}, but the model asked for is a {config.kind} with encoder "
        f"{config.encoder}, head {config.head_size}. Build the model with encoder='{layout.encoder}'{head_hint} "
        f"(or ENCODER={layout.encoder}) to load this file."
    )


def _check_kind(model: nn.Module, layout: FileLayout, path: str, into: str | None) -> None:
    kind = model.config.kind
    if layout.kind not in model_kind(kind).layouts and into != "depth_head":
        raise CheckpointError(
            f"checkpoint {path} holds {layout.describe()}, but a {kind} model was asked for; "
            f"build_model('{layout.kind}', ...) to load it"
        )


def load_state(model: nn.Module, state: dict, layout: FileLayout, path: str, strict: bool = True,
               into: str | Sequence[str] | None = None, lora: str = "auto") -> LoadReport:
    """Load a classified file's tensors into a FUSE-family ``model`` and return a ``LoadReport``.

    ``into`` restricts loading to some parts of the model (e.g. ``"prompt_encoder"`` to put a
    stage-1 file into FUSE's event encoder). ``lora``: "auto" treats LoRA tensors of upstream
    files as already merged into ``weight`` (upstream saved in eval mode, where loralib had added
    them; spec §9) and those of this project's files as separate; "merged" / "separate" force it.
    With ``strict`` a tensor left unexplained on either side raises ``CheckpointError``.
    """
    _check_kind(model, layout, path, into)
    parts = _parts(model)
    if into is not None:
        wanted = [into] if isinstance(into, str) else list(into)
        unknown = [part for part in wanted if part not in parts]
        if unknown:
            raise ValueError(f"into={unknown} names no part of a {model.config.kind} model; expected some of {parts}")
        parts = wanted
    _check_sizes(model, layout, path, parts)
    lora_merged = {"auto": not layout.ours, "merged": True, "separate": False}[lora]
    report = LoadReport(path, layout)
    model_state = model.state_dict()
    used: set[str] = set()
    mapped: dict[str, torch.Tensor] = {}
    for part in parts:
        source = PART_SOURCES[(_layout_of(model), part)].get(layout.kind)
        for key in (k for k in model_state if k.startswith(part + ".")):
            file_key = None if source is None else source + key[len(part) + 1:]
            if LORA_KEY.search(key) and (lora_merged or file_key not in state):
                report.initialized[key] = LORA_RESET
            elif file_key not in state:
                report.initialized[key] = f"{part} is not in a {layout.kind} file" if source is None else MISSING
            else:
                used.add(file_key)
                tensor = state[file_key]
                if tensor.shape != model_state[key].shape:
                    tensor = _adapt(key, tensor, model_state[key], path, report)
                mapped[key] = tensor
    for key in state.keys() - used:
        if LORA_KEY.search(key) and lora_merged:
            report.ignored[key] = "LoRA already merged into weight (upstream files are saved in eval mode)"
        elif UPSTREAM_UNUSED.search(key):
            report.ignored[key] = "defined but never used by the upstream model"
        elif into is not None or layout.kind != model.config.kind:
            report.ignored[key] = "outside the part being loaded"
        else:
            report.ignored[key] = UNMATCHED
    if strict:
        _enforce(report, layout, model, into)
    model.load_state_dict(mapped, strict=False)
    for name, module in model.named_modules():
        if isinstance(module, LoRALinear):
            if report.initialized.get(f"{name}.lora_B") == LORA_RESET:
                module.reset_lora()
            module.unmerge()
    report.loaded = sorted(mapped)
    return report


def _adapt(key: str, tensor: torch.Tensor, target: torch.Tensor, path: str, report: LoadReport) -> torch.Tensor:
    """The one allowed shape change: an event patch embedding with another bin count."""
    if key.endswith("patch_embed.proj.weight") and tensor.shape[0] == target.shape[0]:
        if report.layout.kind != "depth_anything_v2":
            raise CheckpointError(
                f"checkpoint {path} holds an event encoder for {tensor.shape[1]} event bins, the model was built "
                f"with event_bins={target.shape[1]}; rebuild it with event_bins={tensor.shape[1]}"
            )
        report.adapted[key] = f"patch embedding {tensor.shape[1]} -> {target.shape[1]} input channels (channel mean x {tensor.shape[1]}/{target.shape[1]})"
        return event_patch_weight_from_rgb(tensor, target.shape[1])
    raise CheckpointError(
        f"checkpoint {path}: tensor for {key} has shape {tuple(tensor.shape)}, the model expects {tuple(target.shape)}"
    )


def _enforce(report: LoadReport, layout: FileLayout, model: nn.Module, into: str | None) -> None:
    """Strict mode: fail on file tensors that fit nothing and model tensors left without a value.

    Allowed gaps: LoRA adapters (reset to a zero update) and FUSE's fusion blocks when the file
    is a DA-V2 / stage-1 layout, which never has them (the stage-2 starting point).
    """
    unmatched = [k for k, why in report.ignored.items() if why == UNMATCHED]
    allowed_gaps = (LORA_RESET,)
    unfilled = [k for k, why in report.initialized.items()
                if why not in allowed_gaps and not (k.startswith("prompt_fuse.") and layout.kind != "fuse")]
    if not unmatched and not unfilled:
        return
    details = []
    if unmatched:
        details.append(f"{len(unmatched)} file tensors match nothing in the model (e.g. {unmatched[:3]})")
    if unfilled:
        details.append(f"{len(unfilled)} model tensors get no value from the file (e.g. {unfilled[:3]})")
    hint = " Pass into='prompt_encoder' to load a stage-1 file into FUSE's event encoder." \
        if layout.kind == "event_student" and model.config.kind == "fuse" and into is None else ""
    raise CheckpointError(
        f"checkpoint {report.path} ({layout.describe()}) does not fit the {model.config.kind} model: "
        + "; ".join(details) + "." + hint + " Pass strict=False to load what fits."
    )


def build_for(layout: FileLayout, overrides: dict) -> nn.Module:
    """The model a file describes: its recorded config, or sizes detected from its shapes.

    ``overrides`` are ``ModelConfig`` fields, e.g. ``head="metric", max_depth=80`` for an upstream
    FUSE file, whose head ending cannot be read from the tensors.
    """
    if layout.config is not None:
        return build_from_config(layout.config.with_changes(**overrides))
    defaults = {"head": "metric" if layout.kind == "fuse" else "relative"}
    if layout.head_size and not layout.head_size.startswith("custom"):
        defaults["head_size"] = layout.head_size
    if layout.event_bins and layout.kind != "depth_anything_v2":
        defaults["event_bins"] = layout.event_bins
    if defaults["head"] == "metric":
        defaults["max_depth"] = DEFAULT_MAX_DEPTH
    defaults.update(overrides)
    return build_from_config(ModelConfig(kind=layout.kind, encoder=layout.encoder, **defaults))


register_family(CheckpointFamily(
    "fuse", tuple(MODEL_CLASSES), inspect_file, load_state, build_for,
    "a DA-V2 release, an upstream FUSE / stage-1 file or this project's FUSE-family file"))
