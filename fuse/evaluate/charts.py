"""Small charts drawn with OpenCV (no plotting library in the requirements): grouped bars of one
metric per method and lines of a metric against a condition's severity. Both return uint8 BGR
images, like ``fuse.evaluate.visualize``; methods keep one color across every chart of a run.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX
INK = (40, 40, 40)
GRID = (225, 225, 225)
# Tableau-like colors in BGR, picked in order by method.
PALETTE = ((180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140),
           (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23))
WIDTH, HEIGHT, MARGIN = 460, 300, 46


def method_colors(methods: Sequence[str]) -> dict[str, tuple[int, int, int]]:
    return {method: PALETTE[k % len(PALETTE)] for k, method in enumerate(methods)}


def _nice_top(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above ``value`` (a readable axis end)."""
    if not value > 0 or not math.isfinite(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(step * power for step in (1.0, 2.0, 2.5, 5.0, 10.0) if step * power >= value * (1 - 1e-9))


def _frame(title: str, top: float) -> tuple[np.ndarray, int, int, int, int]:
    """A white canvas with a title, a y axis from 0 to ``top`` with 5 grid lines; returns the
    canvas and the plot box (x0, y0, x1, y1)."""
    canvas = np.full((HEIGHT + 2 * MARGIN, WIDTH + 2 * MARGIN, 3), 255, np.uint8)
    x0, y0, x1, y1 = MARGIN + 10, MARGIN, MARGIN + WIDTH, MARGIN + HEIGHT - 40
    cv2.putText(canvas, title, (x0, y0 - 16), FONT, 0.5, INK, 1, cv2.LINE_AA)
    for k in range(6):
        y = round(y1 - (y1 - y0) * k / 5)
        cv2.line(canvas, (x0, y), (x1, y), GRID, 1)
        cv2.putText(canvas, f"{top * k / 5:.3g}", (4, y + 4), FONT, 0.35, INK, 1, cv2.LINE_AA)
    cv2.line(canvas, (x0, y0), (x0, y1), INK, 1)
    cv2.line(canvas, (x0, y1), (x1, y1), INK, 1)
    return canvas, x0, y0, x1, y1


def _legend(canvas: np.ndarray, colors: Mapping[str, tuple[int, int, int]], y: int) -> None:
    x = MARGIN + 10
    for name, color in colors.items():
        cv2.rectangle(canvas, (x, y - 8), (x + 10, y + 2), color, -1)
        cv2.putText(canvas, name, (x + 14, y + 2), FONT, 0.38, INK, 1, cv2.LINE_AA)
        x += 24 + cv2.getTextSize(name, FONT, 0.38, 1)[0][0]
        if x > WIDTH:
            x, y = MARGIN + 10, y + 14


def bar_chart(title: str, groups: Sequence[str], values: Mapping[str, Sequence[float | None]],
              colors: Mapping[str, tuple[int, int, int]]) -> np.ndarray:
    """One bar per method (``values[method][k]``) in each group ``groups[k]``; None = no bar."""
    finite = [v for series in values.values() for v in series if v is not None and math.isfinite(v)]
    top = _nice_top(max(finite, default=1.0))
    canvas, x0, y0, x1, y1 = _frame(title, top)
    slot = (x1 - x0) / max(len(groups), 1)
    bar = slot * 0.8 / max(len(values), 1)
    for k, group in enumerate(groups):
        left = x0 + k * slot + slot * 0.1
        for m, (method, series) in enumerate(values.items()):
            value = series[k]
            if value is None or not math.isfinite(value):
                continue
            height = (y1 - y0) * min(value, top) / top
            cv2.rectangle(canvas, (round(left + m * bar), round(y1 - height)), (round(left + (m + 1) * bar) - 1, y1),
                          colors[method], -1)
        width = cv2.getTextSize(group, FONT, 0.4, 1)[0][0]
        cv2.putText(canvas, group, (round(x0 + (k + 0.5) * slot - width / 2), y1 + 16), FONT, 0.4, INK, 1, cv2.LINE_AA)
    _legend(canvas, {method: colors[method] for method in values}, y1 + 36)
    return canvas


def line_chart(title: str, xs: Sequence[int], values: Mapping[str, Sequence[float | None]],
               colors: Mapping[str, tuple[int, int, int]], x_label: str = "severity") -> np.ndarray:
    """One line per method through ``(xs[k], values[method][k])``; None breaks the line."""
    finite = [v for series in values.values() for v in series if v is not None and math.isfinite(v)]
    top = _nice_top(max(finite, default=1.0))
    canvas, x0, y0, x1, y1 = _frame(title, top)
    lo, hi = min(xs), max(xs)

    def position(x: float, y: float) -> tuple[int, int]:
        fraction = 0.5 if hi == lo else (x - lo) / (hi - lo)
        return round(x0 + 12 + fraction * (x1 - x0 - 24)), round(y1 - (y1 - y0) * min(y, top) / top)

    for x in xs:
        px, _ = position(x, 0.0)
        cv2.putText(canvas, str(x), (px - 4, y1 + 16), FONT, 0.4, INK, 1, cv2.LINE_AA)
    cv2.putText(canvas, x_label, (x1 - 60, y1 + 30), FONT, 0.38, INK, 1, cv2.LINE_AA)
    for method, series in values.items():
        points = [position(x, y) if y is not None and math.isfinite(y) else None for x, y in zip(xs, series)]
        for a, b in zip(points, points[1:]):
            if a is not None and b is not None:
                cv2.line(canvas, a, b, colors[method], 2, cv2.LINE_AA)
        for point in points:
            if point is not None:
                cv2.circle(canvas, point, 3, colors[method], -1, cv2.LINE_AA)
    _legend(canvas, {method: colors[method] for method in values}, y1 + 46)
    return canvas


def side_by_side(charts: Sequence[np.ndarray]) -> np.ndarray:
    """Charts of one height in a row (a grid of rows when there are more than three)."""
    rows = [list(charts[k:k + 3]) for k in range(0, len(charts), 3)]
    blank = np.full_like(charts[0], 255)
    return np.concatenate([np.concatenate(row + [blank] * (3 - len(row) if len(rows) > 1 else 0), axis=1)
                           for row in rows], axis=0)
