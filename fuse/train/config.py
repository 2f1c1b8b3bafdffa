"""Run configuration: YAML files over typed defaults, with ``--set key=value`` overrides.

Every key a run can use is described once in ``SCHEMA`` (default, meaning, allowed values;
``python -m fuse adapt --help-config`` prints it); an unknown key, a value of the wrong type or
out of range is an error that names the key and what is allowed, before any work starts. The
checked dict becomes a ``TrainConfig`` once (``TrainConfig.from_dict``): frozen sections whose
fields mirror ``SCHEMA``, which the trainer and the stages read as attributes.
"""
from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from fuse.atomic import write_text_atomic
from fuse.data.constants import DATASETS, DEFAULT_MAX_DEPTH
from fuse.errors import ConfigError
from fuse.registry import list_models, load_methods

# The smallest network input: FreDFuse halves the token grid twice (fuse.methods.fuse.models).
MIN_INPUT_SIZE = 56
PATCH = 14


@dataclass(frozen=True)
class Key:
    """One config key: its default, what it means, and the values it allows.

    ``choices`` is a tuple or a function giving one (asked only when needed, e.g. the registered
    model kinds); ``low``/``high`` bound numbers (``open_low``/``open_high``: the bound itself is
    excluded); every number must also be finite. ``example`` gives the type of a key whose default
    is None.
    """

    default: Any
    help: str
    choices: tuple | Callable[[], tuple] | None = None
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    multiple_of: int | None = None
    example: Any = None

    def choice_values(self) -> tuple | None:
        return self.choices() if callable(self.choices) else self.choices

    def allowed(self) -> str:
        """The allowed values in words (for messages and ``--help-config``)."""
        if self.choices is not None:
            return "one of " + ", ".join("null" if c is None else str(c) for c in self.choice_values())
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.open_low else '>='} {_number(self.low)}")
        if self.high is not None:
            parts.append(f"{'<' if self.open_high else '<='} {_number(self.high)}")
        if self.multiple_of:
            parts.append(f"a multiple of {self.multiple_of}")
        if not parts:
            return ""
        kind = "an integer" if isinstance(self.default if self.default is not None else self.example, int) \
            else "a finite number"
        return f"{kind} " + " and ".join(parts)


def _stage_names() -> tuple[str, ...]:
    from fuse.train.stages import STAGES

    return tuple(STAGES.names())


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _positive(default: float, help: str) -> Key:
    return Key(default, help, low=0.0, open_low=True)


def _at_least(default: int | float | None, low: float, help: str, **kwargs: Any) -> Key:
    return Key(default, help, low=low, **kwargs)


_ENCODERS = ("vitt", "vits", "vitb", "vitl", "vitg")

SCHEMA: dict[str, dict[str, Key] | Key] = {
    "stage": Key("adapt", "training stage (set by the command: a registered stage, fuse.train.stages)",
                 choices=lambda: _stage_names()),
    "model": {
        "kind": Key(None, "student model, a registered kind (fuse.list_models()); null: the stage's own (adapt "
                    "also trains the depth_anything_v2 / event_student baselines)",
                    choices=lambda: (None, *list_models())),
        "encoder": Key("vits", "ViT encoder size", choices=_ENCODERS),
        "head_size": Key(None, "DPT head size; null: the head DA-V2 pairs with the encoder",
                         choices=(None, *_ENCODERS)),
        "event_bins": _at_least(3, 1, "voxel-grid bins the event encoder takes (3: faithful)"),
        "max_depth": _positive(DEFAULT_MAX_DEPTH, "metric head scale in metres (MVSEC 80, DENSE 1000; adapt stage)"),
        "lora_rank": _at_least(8, 1, "LoRA rank of the event encoder"),
    },
    "data": {
        "dataset": Key("eventscape", "dataset constants (depth range, log encoding)",
                       choices=tuple(DATASETS)),
        "train_split": Key(None, "split list to train on", example=""),
        "val_split": Key(None, "split list to validate on each epoch (null: no validation)", example=""),
        "input_size": _at_least(266, MIN_INPUT_SIZE, "network input lower bound in pixels",
                                multiple_of=PATCH),
        "workers": _at_least(4, 0, "DataLoader worker processes"),
        "degradation": Key("none", "input degradation: none or names of fuse.data.degradations joined by '+' "
                           "(fuse_stage2, low_light, motion_blur, night, ...)"),
    },
    "init": {
        "depth_anything": Key(None, "DA-V2 checkpoint (relative head): teacher and start of align/fuse/teacher",
                              example=""),
        "event_encoder": Key(None, "stage-1 (align) output: FUSE's event encoder in stage fuse", example=""),
        "foundation": Key(None, "checkpoint stage adapt starts from (stage-2 output for FUSE)", example=""),
        "head_from_foundation": Key(False, "deviation: start the metric head from the foundation head"),
    },
    "optim": {
        "lr": _positive(5e-6, "AdamW base learning rate"),
        "boosted_lr_mult": _positive(10.0, "learning-rate factor of the non-encoder parameters"),
        "weight_decay": _at_least(0.01, 0.0, "AdamW weight decay"),
        "betas": Key([0.9, 0.999], "AdamW betas (two numbers)", low=0.0, high=1.0, open_high=True),
        "schedule": Key("poly", "learning-rate schedule: poly ((1 - step / total) ** poly_power) or step (x step_gamma "
                        "every step_epochs epochs)", choices=("poly", "step")),
        "poly_power": _at_least(0.9, 0.0, "power of the polynomial learning-rate decay"),
        "step_epochs": _at_least(10, 1, "schedule step: epochs between two decays"),
        "step_gamma": Key(0.1, "schedule step: factor of each decay", low=0.0, high=1.0, open_low=True),
        "epochs": _at_least(10, 1, "training epochs"),
        "batch_size": _at_least(24, 1, "batch size per process"),
        "max_steps": _at_least(None, 1, "stop after this many steps (smoke tests); the schedule still spans "
                               "all epochs", example=0),
    },
    "loss": {
        "feature_cos": _at_least(1.0, 0.0, "weight of the FeatureCos loss (align, fuse)"),
        "l1": _at_least(1.0, 0.0, "weight of the L1 loss to the teacher (align, fuse)"),
        "silog": _at_least(1.0, 0.0, "weight of the SILog loss (adapt)"),
        "disparity_l1": _at_least(1.0, 0.0, "weight of the inverse-depth L1 loss (stand-in teacher)"),
        "cos_alpha": Key(0.85, "FeatureCos: tokens with cosine above this are left out", low=-1.0, high=1.0),
        "cos_beta": Key(0.2, "FeatureCos: tokens with cosine below this are left out", low=-1.0, high=1.0),
        "silog_lambda": Key(0.5, "SILog variance weight (above 1 the loss can be the root of a negative)",
                            low=0.0, high=1.0),
    },
    "run": {
        "output_dir": Key("runs/default", "folder of the run's checkpoints, logs and config.yaml"),
        "seed": Key(0, "seed of initialization, data order and augmentation", low=0, high=2**32 - 1),
        "device": Key("auto", "auto (cuda if available), cpu or cuda", choices=("auto", "cpu", "cuda")),
        "amp": Key("none", "mixed precision on CUDA", choices=("none", "bf16", "fp16")),
        "log_every": _at_least(10, 1, "log the training losses every N steps"),
        "checkpoint_every_steps": _at_least(500, 0, "latest.pth also every N steps (0: per epoch only)"),
        "image_every_steps": _at_least(200, 0, "TensorBoard image panel every N steps (0: never)"),
        "merge_frozen_lora": Key(True, "frozen event encoder runs with LoRA folded into its weights"),
    },
}


_SectionT = TypeVar("_SectionT", bound="_Section")


@dataclass(frozen=True)
class _Section:
    """A config section as a frozen dataclass; its fields are the section's ``SCHEMA`` keys, in order.

    YAML lists are tuples here so a section stays immutable; ``to_dict`` turns them back into lists,
    so the dict (config.yaml, a checkpoint's ``run_config``) is the one ``load_config`` gave.
    """

    @classmethod
    def from_dict(cls: type[_SectionT], values: dict[str, Any]) -> _SectionT:
        return cls(**{name: tuple(value) if isinstance(value, list) else value for name, value in values.items()})

    def to_dict(self) -> dict[str, Any]:
        values = {field.name: getattr(self, field.name) for field in fields(self)}
        return {name: list(value) if isinstance(value, tuple) else value for name, value in values.items()}


@dataclass(frozen=True)
class ModelSection(_Section):
    """``model.*``: which student the stage builds and its size."""

    kind: str | None
    encoder: str
    head_size: str | None
    event_bins: int
    max_depth: float
    lora_rank: int


@dataclass(frozen=True)
class DataSection(_Section):
    """``data.*``: the splits, dataset constants, input size and degradation."""

    dataset: str
    train_split: str | None
    val_split: str | None
    input_size: int
    workers: int
    degradation: str


@dataclass(frozen=True)
class InitSection(_Section):
    """``init.*``: the checkpoints a stage starts from (stages name them by key, ``Stage.init_files``)."""

    depth_anything: str | None
    event_encoder: str | None
    foundation: str | None
    head_from_foundation: bool


@dataclass(frozen=True)
class OptimSection(_Section):
    """``optim.*``: AdamW, the learning-rate schedule and how long to train."""

    lr: float
    boosted_lr_mult: float
    weight_decay: float
    betas: tuple[float, float]
    schedule: str
    poly_power: float
    step_epochs: int
    step_gamma: float
    epochs: int
    batch_size: int
    max_steps: int | None


@dataclass(frozen=True)
class LossSection(_Section):
    """``loss.*``: the loss weights and the FeatureCos / SILog parameters."""

    feature_cos: float
    l1: float
    silog: float
    disparity_l1: float
    cos_alpha: float
    cos_beta: float
    silog_lambda: float

    def weights(self) -> dict[str, float]:
        """The weight of each loss, by the name a stage lists it under (``Stage.losses``)."""
        return {"feature_cos": self.feature_cos, "l1": self.l1, "silog": self.silog,
                "disparity_l1": self.disparity_l1}


@dataclass(frozen=True)
class RunSection(_Section):
    """``run.*``: output folder, seed, device, precision and how often to log and save."""

    output_dir: str
    seed: int
    device: str
    amp: str
    log_every: int
    checkpoint_every_steps: int
    image_every_steps: int
    merge_frozen_lora: bool


@dataclass(frozen=True)
class TrainConfig:
    """A checked run config, typed: built once from ``load_config``'s dict, read by the trainer and stages."""

    stage: str
    model: ModelSection
    data: DataSection
    init: InitSection
    optim: OptimSection
    loss: LossSection
    run: RunSection
    methods: Mapping[str, _Section] = field(default_factory=dict)  # sections methods register

    @classmethod
    def from_dict(cls, config: dict[str, Any]) -> TrainConfig:
        """The sections of a dict that ``load_config`` resolved and checked (it is not checked again)."""
        return cls(stage=config["stage"], model=ModelSection.from_dict(config["model"]),
                   data=DataSection.from_dict(config["data"]), init=InitSection.from_dict(config["init"]),
                   optim=OptimSection.from_dict(config["optim"]), loss=LossSection.from_dict(config["loss"]),
                   run=RunSection.from_dict(config["run"]),
                   methods={name: section.from_dict(config[name]) for name, section in METHOD_SECTIONS.items()
                            if name in config})

    def section(self, name: str) -> _Section:
        """A method's section (``register_section``), e.g. ``config.section("derdnet").fold``."""
        if name not in self.methods:
            raise ConfigError(f"config has no section {name!r}; registered method sections: {sorted(self.methods)}")
        return self.methods[name]

    def to_dict(self) -> dict[str, Any]:
        """The nested dict ``load_config`` gave (config.yaml and a checkpoint's ``run_config`` hold it)."""
        return {"stage": self.stage, "model": self.model.to_dict(), "data": self.data.to_dict(),
                "init": self.init.to_dict(), "optim": self.optim.to_dict(), "loss": self.loss.to_dict(),
                "run": self.run.to_dict(), **{name: section.to_dict() for name, section in self.methods.items()}}


METHOD_SCHEMA: dict[str, dict[str, Key]] = {}
METHOD_SECTIONS: dict[str, type[_Section]] = {}


def register_section(name: str, keys: dict[str, Key], description: str) -> type[_Section]:
    """Add a method's own config section (``<name>.<key>`` in YAML and ``--set``), checked like the
    core keys and read as ``config.section(name).<key>``."""
    if name in SCHEMA or (name in METHOD_SCHEMA and METHOD_SCHEMA[name] != keys):
        raise ValueError(f"config section {name!r} is registered already")
    METHOD_SCHEMA[name] = keys
    METHOD_SECTIONS[name] = make_dataclass(f"{name.title().replace('_', '')}Section", list(keys), bases=(_Section,),
                                           frozen=True, namespace={"__doc__": description})
    return METHOD_SECTIONS[name]


def full_schema() -> dict[str, dict[str, Key] | Key]:
    """The core keys and every registered method's section."""
    load_methods()
    return SCHEMA | METHOD_SCHEMA


def _defaults(schema: dict) -> dict:
    return {name: _defaults(entry) if isinstance(entry, dict) else copy.deepcopy(entry.default)
            for name, entry in schema.items()}


def _flat(schema: dict, prefix: str = "") -> dict[str, Key]:
    out: dict[str, Key] = {}
    for name, entry in schema.items():
        if isinstance(entry, dict):
            out |= _flat(entry, f"{prefix}{name}.")
        else:
            out[prefix + name] = entry
    return out


def defaults() -> dict[str, Any]:
    """The default config (a fresh copy), method sections included."""
    return _defaults(full_schema())


def keys() -> dict[str, Key]:
    """Every config key by its dotted name."""
    return _flat(full_schema())


def _check(key: str, value: Any, spec: Key) -> Any:
    """``value`` converted to the key's type, or a ConfigError naming the key and what it allows."""
    if spec.choices is not None and value not in spec.choice_values():
        raise ConfigError(f"config key {key!r} must be {spec.allowed()}, got {value!r}")
    value = _check_type(key, value, spec.default if spec.default is not None else spec.example, spec)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_range(key, value, spec)
    if key == "data.degradation":
        _check_degradation(value)
    return value


def _check_range(key: str, value: float, spec: Key) -> None:
    inside = math.isfinite(value)
    if spec.low is not None:
        inside = inside and (value > spec.low if spec.open_low else value >= spec.low)
    if spec.high is not None:
        inside = inside and (value < spec.high if spec.open_high else value <= spec.high)
    if spec.multiple_of:
        inside = inside and value % spec.multiple_of == 0
    if not inside:
        raise ConfigError(f"config key {key!r} must be {spec.allowed()}, got {value!r}")


def _check_degradation(name: str) -> None:
    """A registered degradation name, or several joined by '+' (``fuse.data.degradations``)."""
    from fuse.data.degradations import DEGRADATIONS

    unknown = [part for part in name.split("+") if part not in DEGRADATIONS]
    if unknown:
        raise ConfigError(f"config key 'data.degradation' must be one of {list(DEGRADATIONS)} or several joined "
                          f"by '+', got {name!r}")


def _check_type(key: str, value: Any, default: Any, spec: Key) -> Any:
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
        if len(value) != len(default):
            raise ConfigError(f"config key {key!r} must be a list of {len(default)} numbers, got {value!r}")
        item = Key(default[0], spec.help, low=spec.low, high=spec.high, open_low=spec.open_low,
                   open_high=spec.open_high)
        return [_check(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if isinstance(default, str) and isinstance(value, str):
        return value
    kind = {int: "an integer", float: "a number", str: "a string", list: "a list"}[type(default)]
    raise ConfigError(f"config key {key!r} must be {kind}, got {value!r} ({type(value).__name__})")


def describe_keys() -> str:
    """Every config key with its default, allowed values and meaning (``--help-config``)."""
    lines = ["config keys (set in a YAML file or with --set key=value):"]
    for key, spec in keys().items():
        default = "null" if spec.default is None else yaml.safe_dump(spec.default, default_flow_style=True).strip()
        default = default.removesuffix("\n...").strip()
        allowed = spec.allowed()
        lines.append(f"  {key} = {default}" + (f"  ({allowed})" if allowed else ""))
        lines.append(f"      {spec.help}")
    return "\n".join(lines) + "\n"


def merge(base: dict, update: dict, prefix: str = "", spec: dict[str, Key] | None = None) -> dict:
    """Recursively merge ``update`` into a copy of ``base``, validating every key and type."""
    spec = keys() if spec is None else spec
    out = copy.deepcopy(base)
    for key, value in update.items():
        full = prefix + key
        if key not in base:
            raise ConfigError(f"unknown config key {full!r}; allowed here: {sorted(base)}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {full!r} must be a mapping of {sorted(base[key])}")
            out[key] = merge(base[key], value, full + ".", spec)
        else:
            out[key] = _check(full, value, spec[full])
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
    config = defaults()
    if path is not None:
        config = merge(config, _read_yaml(Path(path)))
    if stage is not None:
        config = merge(config, {"stage": stage})
    for text in overrides or []:
        config = merge(config, parse_override(text))
    _check_relations(config)
    return config


def _check_relations(config: dict) -> None:
    """Ranges that involve two keys."""
    loss = config["loss"]
    if loss["cos_beta"] > loss["cos_alpha"]:
        raise ConfigError(f"config key 'loss.cos_beta' ({loss['cos_beta']}) must not exceed 'loss.cos_alpha' "
                          f"({loss['cos_alpha']}): FeatureCos would keep no token")


def _read_yaml(path: Path, seen: tuple[Path, ...] = (), referrer: Path | None = None) -> dict:
    if not path.is_file():
        where = f" (named as base: in {referrer})" if referrer is not None else ""
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise ConfigError(f"config file {path}{where} {what}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not a text (YAML) file") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"config file {path} is not valid YAML: {error}") from error
    if data is None:
        raise ConfigError(f"config file {path} holds no settings (empty, or cut short?); give a YAML mapping of "
                          "config keys, or leave --config out to use the defaults")
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys")
    bases = data.pop("base", None) or []
    bases = [bases] if isinstance(bases, str) else bases
    if not (isinstance(bases, list) and all(isinstance(base, str) for base in bases)):
        raise ConfigError(f"config file {path}: base: must be a file name or a list of them, got {bases!r}")
    merged: dict = defaults()
    for base in bases:
        base_path = (path.parent / base).resolve()
        if base_path in seen:
            raise ConfigError(f"config file {path} includes itself through {base_path}")
        merged = merge(merged, _read_yaml(base_path, seen + (path.resolve(),), referrer=path))
    try:
        return _diff(merge(merged, data))
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def _diff(config: dict, base: dict | None = None) -> dict:
    """The part of ``config`` that differs from the defaults (so later files can layer on it)."""
    base = defaults() if base is None else base
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            sub = _diff(value, base[key])
            if sub:
                out[key] = sub
        elif value != base[key]:
            out[key] = value
    return out


def dump_config(config: TrainConfig, path: str | os.PathLike) -> None:
    """Write the resolved config next to a run's outputs (atomically)."""
    write_text_atomic(path, yaml.safe_dump(config.to_dict(), sort_keys=False))
