"""Evaluation protocols as a registry: how a method's predictions are scored and tabulated.

A protocol pairs the metric computation with the columns its papers print, per dataset. The
E2Depth per-frame protocol (``fuse.evaluate.metrics``, used by the FUSE tables) is built in;
methods register theirs (pooled point metrics, the KITTI depth-completion protocol) in their
own package.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from fuse.errors import UsageError
from fuse.evaluate import metrics
from fuse.evaluate.published import PublishedRow
from fuse.registry import OUTPUTS, Registry

Columns = tuple[tuple[str, str], ...]  # (column header, metric key) in the order a paper prints them
Metrics = dict[str, float | int | None]


@dataclass(frozen=True)
class Protocol:
    """One evaluation protocol.

    ``evaluate(pairs, dataset, **options)`` scores (prediction file, target file) pairs and
    takes the keyword ``options`` named in ``options``; ``scores`` are the model outputs
    (``fuse.registry.OUTPUTS``) it accepts; ``columns`` maps a dataset to the columns its
    published table shows; ``settings(dataset, **options)`` says what a report records about
    how it scored; ``target_suffixes`` are the ground-truth files it reads from a target folder.
    """

    name: str
    description: str
    scores: tuple[str, ...]
    columns: Mapping[str, Columns]
    evaluate: Callable[..., Metrics]
    options: tuple[str, ...] = ("progress",)
    settings: Callable[..., dict] = lambda dataset, **options: {}
    target_suffixes: tuple[str, ...] = (".npy",)

    def __post_init__(self) -> None:
        unknown = [output for output in self.scores if output not in OUTPUTS]
        if unknown:
            raise ValueError(f"protocol {self.name!r} scores {unknown}; outputs are {OUTPUTS}")

    def columns_for(self, dataset: str) -> Columns:
        if dataset.lower() not in self.columns:
            raise UsageError(f"the {self.name} protocol has no table for {dataset}; it has {sorted(self.columns)}")
        return self.columns[dataset.lower()]

    def table(self, metrics: Mapping[str, float | int | None], dataset: str,
              published: Sequence[PublishedRow] = (), label: str = "this run") -> str:
        """Markdown table with the paper's columns for ``dataset``, published rows below ours."""
        columns = self.columns_for(dataset)
        lines = [
            "| Method | " + " | ".join(header for header, _ in columns) + " |",
            "|---|" + "---:|" * len(columns),
            f"| {label} | " + " | ".join(_cell(metrics.get(key)) for _, key in columns) + " |",
        ]
        for row in published:
            lines.append(f"| {row.label} | " + " | ".join(_cell(row.metrics.get(key)) for _, key in columns) + " |")
        if "frames" in metrics:
            lines.append("")
            lines.append(f"{metrics['frames']} frames evaluated, {metrics.get('skipped', 0)} without valid pixels skipped.")
        return "\n".join(lines) + "\n"


def _cell(value: float | int | None) -> str:
    return "—" if value is None else f"{value:.3f}"


PROTOCOLS: Registry[Protocol] = Registry("evaluation protocol")


def register_protocol(protocol: Protocol) -> Protocol:
    """Add a protocol (``python -m fuse eval --protocol <name>``)."""
    return PROTOCOLS.register(protocol.name, protocol)


def protocol_named(name: str) -> Protocol:
    return PROTOCOLS.get(name)


def given_options(protocol: Protocol, **options: object) -> dict:
    """The options that were given (not None), refusing those the protocol does not take."""
    given = {key: value for key, value in options.items() if value is not None}
    refused = sorted(key for key in given if key not in protocol.options)
    if refused:
        flags = ", ".join("--" + key.replace("_", "-") for key in refused)
        raise UsageError(f"the {protocol.name} protocol takes no {flags}; it takes "
                         f"{', '.join('--' + key.replace('_', '-') for key in protocol.options)}")
    return given


def evaluate_pairs(pairs: Sequence[tuple[Path, Path]], dataset: str, protocol: str = "e2depth",
                   **options: object) -> Metrics:
    """Score file pairs with a registered protocol; options left None take the protocol's defaults."""
    chosen = protocol_named(protocol)
    return chosen.evaluate(pairs, dataset, **given_options(chosen, **options))


def known_datasets() -> list[str]:
    """Every dataset some protocol has a table for (``eval --dataset`` choices)."""
    return sorted({dataset for name in PROTOCOLS.names() for dataset in protocol_named(name).columns})


_MVSEC_COLUMNS: Columns = (
    ("δ1 ↑", "a1"), ("δ2 ↑", "a2"), ("δ3 ↑", "a3"), ("Abs.Rel ↓", "abs_rel"), ("RMSE ↓", "rmse"),
    ("RMSElog ↓", "rmse_log"),
)
# DENSE's "10m/20m/30m" columns are the mean absolute errors at those cut-offs (spec §8).
_DENSE_COLUMNS: Columns = (
    ("Abs.Rel ↓", "abs_rel"), ("RMSElog ↓", "rmse_log"), ("10m ↓", "mae@10"), ("20m ↓", "mae@20"),
    ("30m ↓", "mae@30"),
)

def _e2depth_settings(dataset: str, pred_format: str = "metric", max_depth: float | None = None,
                      reg_factor: float | None = None, rescale_target: bool = False, **_: object) -> dict:
    return {"pred_format": pred_format, "rescale_target": rescale_target,
            **metrics.depth_settings(dataset, max_depth, reg_factor)}


E2DEPTH = register_protocol(Protocol(
    "e2depth",
    "E2Depth's evaluation.py as FUSE runs it (--metric): per-frame metrics in the dataset's depth range, "
    "averaged over frames (spec fuse-method.md §8)",
    ("metric_depth", "normalized_log_depth", "relative_inverse_depth"),
    # EventScape has no table in the FUSE paper; it is shown with the DENSE columns, DSEC with the MVSEC ones.
    MappingProxyType({"mvsec": _MVSEC_COLUMNS, "dense": _DENSE_COLUMNS, "eventscape": _DENSE_COLUMNS,
                      "dsec": _MVSEC_COLUMNS}),
    metrics.evaluate_pairs,
    ("pred_format", "max_depth", "reg_factor", "rescale_target", "progress"),
    _e2depth_settings,
))
