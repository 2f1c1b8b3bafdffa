"""Published numbers (spec §10) as data, and the columns each paper table shows.

Keeping them here lets ``python -m fuse eval --compare-published`` and the training engine put
a run beside the paper without anyone retyping numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from fuse.errors import UsageError

SIZES: tuple[str, ...] = ("small", "base", "large")

_MVSEC_COLUMNS = (
    ("δ1 ↑", "a1"),
    ("δ2 ↑", "a2"),
    ("δ3 ↑", "a3"),
    ("Abs.Rel ↓", "abs_rel"),
    ("RMSE ↓", "rmse"),
    ("RMSElog ↓", "rmse_log"),
)
# DENSE's "10m/20m/30m" columns are the mean absolute errors at those cut-offs (spec §8).
_DENSE_COLUMNS = (
    ("Abs.Rel ↓", "abs_rel"),
    ("RMSElog ↓", "rmse_log"),
    ("10m ↓", "mae@10"),
    ("20m ↓", "mae@20"),
    ("30m ↓", "mae@30"),
)

# (column header, metric key) in the order the paper prints them. EventScape has no table in
# the paper; it is shown with the DENSE columns.
PAPER_COLUMNS: Mapping[str, tuple[tuple[str, str], ...]] = MappingProxyType(
    {"mvsec": _MVSEC_COLUMNS, "dense": _DENSE_COLUMNS, "eventscape": _DENSE_COLUMNS}
)

# The test sequences the published tables report, per dataset.
SEQUENCES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"mvsec": ("outdoor_day1", "outdoor_night1"), "dense": ("test",), "eventscape": ()}
)


@dataclass(frozen=True)
class PublishedRow:
    """One row of a published table.

    ``size`` is None where the paper's row does not say which encoder size it used.
    """

    method: str
    dataset: str
    sequence: str
    size: str | None
    metrics: Mapping[str, float]

    @property
    def label(self) -> str:
        """Row label for tables, naming the size only when the source states it."""
        if self.method == "FUSE" and self.size is None:
            return "FUSE (published, size not stated)"
        name = f"{self.method}-{self.size.capitalize()}" if self.size else self.method
        return f"{name} (published)"


def _mvsec(values: str) -> dict[str, float]:
    keys = ("a1", "a2", "a3", "abs_rel", "rmse", "rmse_log")
    return dict(zip(keys, (float(v) for v in values.split("/")), strict=True))


def _dense(values: str) -> dict[str, float]:
    keys = ("abs_rel", "rmse_log", "mae@10", "mae@20", "mae@30")
    return dict(zip(keys, (float(v) for v in values.split("/")), strict=True))


PUBLISHED: tuple[PublishedRow, ...] = (
    PublishedRow("FUSE", "mvsec", "outdoor_day1", None, _mvsec("0.745/0.892/0.957/0.196/6.004/0.270")),
    PublishedRow("FUSE", "mvsec", "outdoor_night1", "small", _mvsec("0.613/0.814/0.922/0.267/6.785/0.352")),
    PublishedRow("FUSE", "mvsec", "outdoor_night1", "base", _mvsec("0.632/0.827/0.925/0.270/6.445/0.348")),
    PublishedRow("FUSE", "mvsec", "outdoor_night1", "large", _mvsec("0.629/0.824/0.923/0.261/6.587/0.351")),
    PublishedRow("FUSE", "dense", "test", "small", _dense("0.401/0.491/1.231/4.262/7.052")),
    PublishedRow("FUSE", "dense", "test", "base", _dense("0.348/0.467/1.199/3.732/5.976")),
    PublishedRow("FUSE", "dense", "test", "large", _dense("0.385/0.457/1.286/3.998/6.639")),
    PublishedRow("E2Depth", "mvsec", "outdoor_day1", None, _mvsec("0.567/0.772/0.876/0.346/8.564/0.421")),
    PublishedRow("HMNet(I+E)", "mvsec", "outdoor_day1", None, _mvsec("0.717/0.868/0.940/0.230/6.922/0.310")),
    PublishedRow("PCDepth", "mvsec", "outdoor_day1", None, _mvsec("0.712/0.867/0.941/0.228/6.526/0.301")),
    PublishedRow("RAMNet", "mvsec", "outdoor_day1", None, _mvsec("0.541/0.778/0.877/0.303/8.526/0.424")),
    PublishedRow("SRFNet", "mvsec", "outdoor_day1", None, _mvsec("0.637/0.810/0.900/0.268/8.453/0.375")),
)


def default_sequence(dataset: str) -> str | None:
    """The sequence a dataset's published rows refer to when it has only one."""
    sequences = SEQUENCES[dataset]
    return sequences[0] if len(sequences) == 1 else None


def fuse_row(dataset: str, size: str, sequence: str | None = None) -> PublishedRow:
    """The published FUSE row for a dataset, sequence and encoder size.

    Falls back to the row whose size the source does not state (MVSEC outdoor_day1), whose
    label says so. Raises ``UsageError`` naming what exists when nothing matches.
    """
    if size not in SIZES:
        raise UsageError(f"unknown size {size!r}; expected one of {list(SIZES)}")
    sequence = sequence or default_sequence(dataset)
    if sequence is None:
        choices = SEQUENCES.get(dataset, ())
        if not choices:
            raise UsageError(f"no published numbers for {dataset!r} (spec §10 has none)")
        raise UsageError(f"{dataset} has published rows for several sequences; choose one of {list(choices)}")
    rows = [r for r in PUBLISHED if r.method == "FUSE" and r.dataset == dataset and r.sequence == sequence]
    for wanted in (size, None):
        for row in rows:
            if row.size == wanted:
                return row
    known = sorted({(r.dataset, r.sequence) for r in PUBLISHED if r.method == "FUSE"})
    raise UsageError(f"no published FUSE row for {dataset}/{sequence}; known: {known}")


def peer_rows(dataset: str, sequence: str | None = None) -> list[PublishedRow]:
    """Published rows of other methods on the same dataset and sequence."""
    sequence = sequence or default_sequence(dataset)
    return [r for r in PUBLISHED if r.method != "FUSE" and r.dataset == dataset and r.sequence == sequence]
