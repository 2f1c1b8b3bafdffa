"""Run configuration: YAML files over typed defaults, with ``--set key=value`` overrides.

Every key a run can use is listed in ``DEFAULTS``; an unknown key or a value of the wrong type
is an error that names the key and what is allowed, before any work starts.
"""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from fuse.atomic import write_text_atomic

STAGES = ("align", "fuse", "adapt", "teacher")

DEFAULTS: dict[str, Any] = {
    "stage": "adapt",
    "model": {
        "kind": None,  # None: the stage's model; adapt also takes depth_anything_v2 / event_student baselines
        "encoder": "vits",  # vitt | vits | vitb | vitl | vitg
        "head_size": None,  # None: the head DA-V2 pairs with the encoder
        "event_bins": 3,
        "max_depth": 80.0,  # metric head scale (adapt stage)
        "lora_rank": 8,
    },
    "data": {
        "dataset": "eventscape",  # mvsec | dense | eventscape
        "train_split": None,
        "val_split": None,
        "input_size": 266,
        "workers": 4,
        "degradation": "none",  # none | fuse_stage2 | low_light | motion_blur | night | fuse_stage2+night
    },
    "init": {
        "depth_anything": None,  # DA-V2 release (teacher, image encoder, stage-1/2 start)
        "event_encoder": None,  # stage-1 output (stage 2)
        "foundation": None,  # stage-2 output (stage 3)
        "head_from_foundation": False,  # deviation: start the metric head from the foundation head
    },
    "optim": {
        "lr": 5e-6,
        "boosted_lr_mult": 10.0,
        "weight_decay": 0.01,
        "betas": [0.9, 0.999],
        "poly_power": 0.9,
        "epochs": 10,
        "batch_size": 24,  # per process
        "max_steps": None,  # stop early (smoke tests); the schedule still spans all epochs
    },
    "loss": {
        "feature_cos": 1.0,
        "l1": 1.0,
        "silog": 1.0,
        "disparity_l1": 1.0,  # stand-in teacher only
        "cos_alpha": 0.85,
        "cos_beta": 0.2,
        "silog_lambda": 0.5,
    },
    "run": {
        "output_dir": "runs/default",
        "seed": 0,
        "device": "auto",  # auto | cpu | cuda
        "amp": "none",  # none | bf16 | fp16 (CUDA only)
        "log_every": 10,
        "checkpoint_every_steps": 500,  # latest.pth also every N steps (besides every epoch); 0: per epoch only
        "image_every_steps": 200,
        "merge_frozen_lora": True,  # frozen event encoder runs with LoRA folded into its weights
    },
}

CHOICES = {
    "stage": STAGES,
    "model.kind": (None, "fuse", "depth_anything_v2", "event_student"),
    "model.encoder": ("vitt", "vits", "vitb", "vitl", "vitg"),
    "model.head_size": (None, "vitt", "vits", "vitb", "vitl", "vitg"),
    "data.dataset": ("mvsec", "dense", "eventscape"),
    "run.device": ("auto", "cpu", "cuda"),
    "run.amp": ("none", "bf16", "fp16"),
}

# Keys whose default is None: a value must have the type of this example.
NULLABLE = {"data.train_split": "", "data.val_split": "", "init.depth_anything": "", "init.event_encoder": "",
            "init.foundation": "", "optim.max_steps": 0}

# Lower bounds of numbers: a zero batch or a negative epoch count would otherwise fail (or do
# nothing) only once training has started.
MINIMUM = {
    "model.event_bins": 1, "model.max_depth": 0.0, "model.lora_rank": 0,
    "data.input_size": 14, "data.workers": 0,
    "optim.lr": 0.0, "optim.boosted_lr_mult": 0.0, "optim.weight_decay": 0.0, "optim.poly_power": 0.0,
    "optim.epochs": 1, "optim.batch_size": 1, "optim.max_steps": 1,
    "run.log_every": 1, "run.checkpoint_every_steps": 0, "run.image_every_steps": 0,
}


class ConfigError(ValueError):
    """A configuration key or value that is not allowed."""


def _check(key: str, value: Any, default: Any) -> Any:
    """``value`` converted to the type of ``default``, or a ConfigError naming the key and what it allows."""
    if key in CHOICES and value not in CHOICES[key]:
        raise ConfigError(f"config key {key!r} must be one of {list(CHOICES[key])}, got {value!r}")
    value = _check_type(key, value, NULLABLE.get(key, default))
    if key in MINIMUM and value is not None and not value >= MINIMUM[key]:
        raise ConfigError(f"config key {key!r} must be at least {MINIMUM[key]}, got {value!r}")
    if key == "data.input_size" and value % 14:
        raise ConfigError(f"config key 'data.input_size' must be a multiple of 14 (the ViT patch), got {value}")
    if key == "data.degradation":
        _check_degradation(value)
    return value


def _check_degradation(name: str) -> None:
    """A registered degradation name, or several joined by '+' (``fuse.data.degradations``)."""
    from fuse.data.degradations import DEGRADATIONS

    unknown = [part for part in name.split("+") if part not in DEGRADATIONS]
    if unknown:
        raise ConfigError(f"config key 'data.degradation' must be one of {list(DEGRADATIONS)} or several joined "
                          f"by '+', got {name!r}")


def _check_type(key: str, value: Any, default: Any) -> Any:
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"config key {key!r} must be true or false, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads "1e-3" (no dot) as a string
        except ValueError:
            pass
    if isinstance(default, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(default, int) and isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(default, list) and isinstance(value, (list, tuple)):
        return [_check(f"{key}[{i}]", v, default[0]) for i, v in enumerate(value)]
    if isinstance(default, str) and isinstance(value, str):
        return value
    kind = {int: "an integer", float: "a number", str: "a string", list: "a list"}[type(default)]
    raise ConfigError(f"config key {key!r} must be {kind}, got {value!r} ({type(value).__name__})")


def merge(base: dict, update: dict, prefix: str = "") -> dict:
    """Recursively merge ``update`` into a copy of ``base``, validating every key and type."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        full = prefix + key
        if key not in base:
            raise ConfigError(f"unknown config key {full!r}; allowed here: {sorted(base)}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {full!r} must be a mapping of {sorted(base[key])}")
            out[key] = merge(base[key], value, full + ".")
        else:
            out[key] = _check(full, value, base[key])
    return out


def parse_override(text: str) -> dict:
    """``a.b=value`` (value parsed as YAML) -> ``{"a": {"b": value}}``."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value, e.g. optim.lr=1e-5")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        raise ConfigError(f"override {text!r}: the value of {key.strip()!r} is not valid YAML "
                          "(quote strings with special characters, e.g. --set 'key=\"a: b\"')") from None
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None,
                stage: str | None = None) -> dict:
    """Defaults <- YAML file (its ``base:`` files first) <- ``stage`` <- ``--set`` overrides."""
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        config = merge(config, _read_yaml(Path(path)))
    if stage is not None:
        config = merge(config, {"stage": stage})
    for text in overrides or []:
        config = merge(config, parse_override(text))
    return config


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys")
    bases = data.pop("base", None) or []
    merged: dict = copy.deepcopy(DEFAULTS)
    for base in [bases] if isinstance(bases, str) else bases:
        base_path = (path.parent / base).resolve()
        if base_path in seen:
            raise ConfigError(f"config file {path} includes itself through {base_path}")
        merged = merge(merged, _read_yaml(base_path, seen + (path.resolve(),)))
    try:
        return _diff(merge(merged, data))
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def _diff(config: dict, defaults: dict = DEFAULTS) -> dict:
    """The part of ``config`` that differs from the defaults (so later files can layer on it)."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            sub = _diff(value, defaults[key])
            if sub:
                out[key] = sub
        elif value != defaults[key]:
            out[key] = value
    return out


def dump_config(config: dict, path: str | os.PathLike) -> None:
    """Write the resolved config next to a run's outputs (atomically)."""
    write_text_atomic(path, yaml.safe_dump(config, sort_keys=False))
