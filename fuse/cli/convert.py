"""``python -m fuse convert SOURCE TARGET``: an upstream FUSE / stage-1 / DA-V2 file in this
project's checkpoint format.

    python -m fuse convert upstream.pth converted.pth [--head metric --max-depth 80]

Sizes are detected from tensor shapes; the head ending (relative or metric) cannot be, so it
defaults to "metric" (max depth 80) for FUSE files and "relative" otherwise. LoRA tensors of
upstream files are already merged into the weights; the converted file stores those merged
weights with zero LoRA updates, so it gives the same outputs. The target is never the source,
and an existing target is replaced only with ``--overwrite``.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from fuse.cli.ranges import positive_float
from fuse.checkpoint import save_checkpoint
from fuse.weights import load_model
from fuse.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", help="upstream checkpoint (.pth)")
    parser.add_argument("target", help="output checkpoint in this project's format")
    parser.add_argument("--head", choices=["relative", "metric"], help="head ending (not detectable from shapes)")
    parser.add_argument("--max-depth", type=positive_float, help="metric head scale: 80 for MVSEC, 1000 for DENSE")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing target file")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def run(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in (("head", args.head), ("max_depth", args.max_depth)) if v is not None}
    model, report = load_model(args.source, **overrides)
    _check_target(args)
    print(report.summary())
    save_checkpoint(args.target, model)
    print(f"wrote {args.target} ({model.config.kind}, encoder {model.config.encoder}, head {model.config.head_size} "
          f"{model.config.head})")
    return 0


def _check_target(args: argparse.Namespace) -> None:
    """Never write over the source, and over another file only when asked to."""
    source, target = Path(args.source), Path(args.target)
    if target.is_dir():
        raise UsageError(f"target {target} is a folder; give a file name, e.g. "
                         f"{target / (source.stem + '_converted.pth')}")
    if not target.exists():
        return
    if source.exists() and os.path.samefile(source, target):
        raise UsageError(f"target {target} is the source file itself; give another target name")
    if not args.overwrite:
        raise UsageError(f"target {target} exists; pass --overwrite to replace it, or choose another name")
