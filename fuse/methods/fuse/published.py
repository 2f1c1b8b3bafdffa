"""FUSE's published results (spec §10): its rows and the peer rows of its MVSEC table.

All are computed with the E2Depth per-frame protocol (``fuse.evaluate.protocols``).
"""
from __future__ import annotations

from fuse.evaluate.published import PublishedRow, register_rows

_MVSEC_KEYS = ("a1", "a2", "a3", "abs_rel", "rmse", "rmse_log")
_DENSE_KEYS = ("abs_rel", "rmse_log", "mae@10", "mae@20", "mae@30")
_MVSEC_TABLE = "FUSE paper (arXiv 2503.19739), MVSEC results; spec fuse-method.md §10"
_DENSE_TABLE = "FUSE paper (arXiv 2503.19739), DENSE results; spec fuse-method.md §10"


def _row(method: str, dataset: str, sequence: str, size: str | None, values: str) -> PublishedRow:
    keys, source = (_MVSEC_KEYS, _MVSEC_TABLE) if dataset == "mvsec" else (_DENSE_KEYS, _DENSE_TABLE)
    metrics = dict(zip(keys, (float(v) for v in values.split("/")), strict=True))
    return PublishedRow(method, dataset, sequence, size, metrics, "e2depth", source)


ROWS: tuple[PublishedRow, ...] = (
    _row("FUSE", "mvsec", "outdoor_day1", None, "0.745/0.892/0.957/0.196/6.004/0.270"),
    _row("FUSE", "mvsec", "outdoor_night1", "small", "0.613/0.814/0.922/0.267/6.785/0.352"),
    _row("FUSE", "mvsec", "outdoor_night1", "base", "0.632/0.827/0.925/0.270/6.445/0.348"),
    _row("FUSE", "mvsec", "outdoor_night1", "large", "0.629/0.824/0.923/0.261/6.587/0.351"),
    _row("FUSE", "dense", "test", "small", "0.401/0.491/1.231/4.262/7.052"),
    _row("FUSE", "dense", "test", "base", "0.348/0.467/1.199/3.732/5.976"),
    _row("FUSE", "dense", "test", "large", "0.385/0.457/1.286/3.998/6.639"),
    _row("E2Depth", "mvsec", "outdoor_day1", None, "0.567/0.772/0.876/0.346/8.564/0.421"),
    _row("HMNet(I+E)", "mvsec", "outdoor_day1", None, "0.717/0.868/0.940/0.230/6.922/0.310"),
    _row("PCDepth", "mvsec", "outdoor_day1", None, "0.712/0.867/0.941/0.228/6.526/0.301"),
    _row("RAMNet", "mvsec", "outdoor_day1", None, "0.541/0.778/0.877/0.303/8.526/0.424"),
    _row("SRFNet", "mvsec", "outdoor_day1", None, "0.637/0.810/0.900/0.268/8.453/0.375"),
)

register_rows(ROWS)
