"""The demo's results: a constant baseline plus the evaluated models, as Markdown and a PNG chart.

    python scripts/demo_report.py --processed DIR --eval DIR --out DIR

Reads ``<eval>/<model>_<test>/metrics.json`` written by ``eval.sh`` for the models
``image``, ``events``, ``fuse`` and the tests ``day_test``, ``night_test``, plus the optional
models named with ``--with`` (``aimdepth``: ``AIMDEPTH=1 ./demo.sh``); the constant baseline
predicts the median valid depth of the training split everywhere.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fuse.atomic import write_text_atomic  # noqa: E402
from fuse.evaluate.metrics import constant_baseline  # noqa: E402
from fuse.evaluate.visualize import write_png_atomic  # noqa: E402

ROWS = (("constant", "constant (train median)"), ("image", "image only (teacher + metric head)"),
        ("events", "events only (aligned encoder + metric head)"), ("fuse", "FUSE (image + events)"))
OPTIONAL_ROWS = (("aimdepth", "AIMDepth tiny (image + events)"),)
TESTS = (("day_test", "day test"), ("night_test", "night test (dark, noisy, blurred images)"))
COLUMNS = (("δ1 ↑", "a1"), ("δ2 ↑", "a2"), ("δ3 ↑", "a3"), ("Abs.Rel ↓", "abs_rel"), ("RMSE ↓", "rmse"),
           ("RMSElog ↓", "rmse_log"))


def rows_of(results: dict[str, dict[str, dict]]) -> list[tuple[str, str]]:
    """The table's rows: the demo's own and the optional models that were run."""
    return [(row, label) for row, label in ROWS + OPTIONAL_ROWS if row in results]


def markdown(results: dict[str, dict[str, dict]], teacher: str, median: float) -> str:
    lines = [f"Synthetic MVSEC-format recordings; teacher: {teacher}; constant baseline = {median:.2f} m.", ""]
    for test, title in TESTS:
        lines += [f"**{title}**", "", "| model | " + " | ".join(h for h, _ in COLUMNS) + " |",
                  "|---|" + "---:|" * len(COLUMNS)]
        for row, label in rows_of(results):
            metrics = results[row][test]
            lines.append(f"| {label} | " + " | ".join(f"{metrics[k]:.3f}" for _, k in COLUMNS) + " |")
        lines.append("")
    return "\n".join(lines)


def chart(results: dict[str, dict[str, dict]]) -> np.ndarray:
    """Bars of Abs.Rel (lower is better) and δ1 (higher is better) per model, day beside night."""
    colors = {"constant": (160, 160, 160), "image": (60, 140, 230), "events": (80, 180, 80), "fuse": (40, 40, 200),
              "aimdepth": (170, 90, 170)}
    rows = rows_of(results)
    panel_w, panel_h, margin = 420, 300, 40
    canvas = np.full((panel_h + 2 * margin + 30, 2 * panel_w + 3 * margin, 3), 255, np.uint8)
    for p, (metric, title, top) in enumerate((("abs_rel", "Abs.Rel (lower is better)", None),
                                              ("a1", "delta1 (higher is better)", 1.0))):
        x0, y0 = margin + p * (panel_w + margin), margin + 10
        values = [results[r][t][metric] for t, _ in TESTS for r, _ in rows]
        scale = top or max(values) * 1.1
        cv2.putText(canvas, title, (x0, y0 - 15), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.line(canvas, (x0, y0 + panel_h), (x0 + panel_w, y0 + panel_h), (0, 0, 0), 1)
        group_w = panel_w // len(TESTS)
        bar_w = (group_w - 30) // len(rows)
        for g, (test, _) in enumerate(TESTS):
            gx = x0 + g * group_w + 15
            for i, (row, _) in enumerate(rows):
                value = results[row][test][metric]
                height = int(panel_h * min(value / scale, 1.0))
                x = gx + i * bar_w
                cv2.rectangle(canvas, (x, y0 + panel_h - height), (x + bar_w - 4, y0 + panel_h), colors[row], -1)
                cv2.putText(canvas, f"{value:.2f}", (x, y0 + panel_h - height - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                            (0, 0, 0), 1, cv2.LINE_AA)
            cv2.putText(canvas, test.replace("_test", ""), (gx + group_w // 3, y0 + panel_h + 18),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    legend_y = canvas.shape[0] - 12
    for i, (row, _) in enumerate(rows):
        x = margin + i * 160
        cv2.rectangle(canvas, (x, legend_y - 10), (x + 14, legend_y), colors[row], -1)
        cv2.putText(canvas, row, (x + 20, legend_y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return canvas


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--processed", required=True, type=Path, help="prepared recordings (split lists)")
    parser.add_argument("--eval", required=True, type=Path, help="folder of <model>_<test>/metrics.json")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--teacher", default="stand-in", help="how the teacher was obtained (printed)")
    parser.add_argument("--with", dest="optional", action="append", default=[],
                        choices=[row for row, _ in OPTIONAL_ROWS], help="an optional model the demo ran")
    args = parser.parse_args(argv)
    results: dict[str, dict[str, dict]] = {row: {} for row, _ in ROWS}
    median = 0.0
    for test, _ in TESTS:
        median, results["constant"][test] = constant_baseline(args.processed / "day_train.txt", args.processed / f"{test}.txt")
        for row in ("image", "events", "fuse", *args.optional):
            path = args.eval / f"{row}_{test}" / "metrics.json"
            if not path.is_file():
                print(f"error: {path} is missing; run eval.sh for {row} on {test} first", file=sys.stderr)
                return 2
            results.setdefault(row, {})[test] = json.loads(path.read_text())
    text = markdown(results, args.teacher, median)
    print(text)
    write_text_atomic(args.out / "results.md", text)
    write_text_atomic(args.out / "results.json", json.dumps(results, indent=2, default=float))
    write_png_atomic(args.out / "results.png", chart(results))
    print(f"wrote {args.out / 'results.md'}, {args.out / 'results.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
