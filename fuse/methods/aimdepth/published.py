"""AIMDepth's published results (spec aimdepth.md §7) and the peer rows of its tables.

All follow the E2Depth per-frame protocol (``e2depth``): A = Abs.Rel, R = RMSE-log (inferred, §7),
δ1-δ3. The MVSEC numbers are the mean of outdoor_day1 and outdoor_night1 (per-sequence numbers
are not published), so their sequence is named ``outdoor_day1+outdoor_night1``.
"""
from __future__ import annotations

from fuse.evaluate.published import PublishedRow, register_rows

_KEYS = ("abs_rel", "rmse_log", "a1", "a2", "a3")
_MVSEC_MEAN = "outdoor_day1+outdoor_night1"
_SOURCE = "AIMDepth paper (CVPR 2026), {} table; spec aimdepth.md §7"


def _row(method: str, dataset: str, sequence: str, values: str) -> PublishedRow:
    metrics = dict(zip(_KEYS, (float(v) for v in values.split("/")), strict=True))
    return PublishedRow(method, dataset, sequence, None, metrics, "e2depth",
                        _SOURCE.format("MVSEC" if dataset == "mvsec" else "DENSE Town10"))


ROWS: tuple[PublishedRow, ...] = (
    _row("AIMDepth", "mvsec", _MVSEC_MEAN, "0.306/0.371/0.622/0.804/0.905"),
    _row("HMNet-B3", "mvsec", _MVSEC_MEAN, "0.284/0.397/0.610/0.786/0.887"),
    _row("UniCT", "mvsec", _MVSEC_MEAN, "0.266/0.392/0.603/0.788/0.886"),
    _row("SRFNet", "mvsec", _MVSEC_MEAN, "0.285/0.454/0.550/0.741/0.855"),
    _row("AIMDepth", "dense", "test", "0.178/0.269/0.821/0.895/0.947"),
    _row("EReFormer", "dense", "test", "0.172/0.335/0.747/0.839/0.908"),
    _row("ER-F2D", "dense", "test", "0.229/0.333/0.725/0.891/0.949"),
    _row("UniCT", "dense", "test", "0.180/0.360/0.703/0.844/0.905"),
)

register_rows(ROWS)
