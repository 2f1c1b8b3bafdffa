"""Convert an upstream FUSE / stage-1 / DA-V2 file into this project's checkpoint format.

    python -m fuse.convert upstream.pth converted.pth [--head metric --max-depth 80]

Sizes are detected from tensor shapes; the head ending (relative or metric) cannot be, so it
defaults to "metric" (max depth 80) for FUSE files and "relative" otherwise. LoRA tensors of
upstream files are already merged into the weights; the converted file stores those merged
weights with zero LoRA updates, so it gives the same outputs.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fuse.atomic import WriteError
from fuse.cli.ranges import positive_float
from fuse.engine.checkpoint import CheckpointError, save_checkpoint
from fuse.engine.weights import load_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuse.convert", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="upstream checkpoint (.pth)")
    parser.add_argument("target", help="output checkpoint in this project's format")
    parser.add_argument("--head", choices=["relative", "metric"], help="head ending (not detectable from shapes)")
    parser.add_argument("--max-depth", type=positive_float, help="metric head scale: 80 for MVSEC, 1000 for DENSE")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing target file")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("head", args.head), ("max_depth", args.max_depth)) if v is not None}
    try:
        model, report = load_model(args.source, **overrides)
        _check_target(args)
    except (CheckpointError, ValueError) as error:
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(report.summary())
    try:
        save_checkpoint(args.target, model)
    except WriteError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.target} ({model.config.kind}, encoder {model.config.encoder}, head {model.config.head_size} "
          f"{model.config.head})")
    return 0


def _check_target(args: argparse.Namespace) -> None:
    """Never write over the source, and over another file only when asked to."""
    source, target = Path(args.source), Path(args.target)
    if target.is_dir():
        raise ValueError(f"target {target} is a folder; give a file name, e.g. {target / (source.stem + '_converted.pth')}")
    if not target.exists():
        return
    if source.exists() and os.path.samefile(source, target):
        raise ValueError(f"target {target} is the source file itself; give another target name")
    if not args.overwrite:
        raise ValueError(f"target {target} exists; pass --overwrite to replace it, or choose another name")


if __name__ == "__main__":
    raise SystemExit(main())
