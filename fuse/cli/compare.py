"""``python -m fuse compare SPEC.yaml --out DIR``: several methods on the same frames with one protocol,
clean and under controlled degradations, into one results folder (``fuse.evaluate.compare``,
``docs/compare.md``). A bad comparison file, checkpoint or sequence gives one ``error:`` line and
exit code 2 before anything is predicted.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from fuse.evaluate.compare import compare, markdown, read_spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", help="comparison YAML: methods, sequences, conditions (docs/compare.md)")
    parser.add_argument("--out", required=True, help="results folder (results.md/json, charts, panels, predictions)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N frames of each sequence")
    parser.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:1, ...")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def run(args: argparse.Namespace) -> int:
    spec = read_spec(args.spec)
    changes = {key: value for key, value in (("limit", args.limit), ("device", args.device)) if value is not None}
    spec = replace(spec, **changes)
    runs = compare(spec, args.out, progress=not args.no_progress)
    print(markdown(spec, runs))
    print(f"compare: {len(runs)} methods x {len(spec.sequences)} sequences x {len(spec.labels)} conditions -> "
          f"{Path(args.out)} (results.md, results.json, chart.png, panels/)")
    return 0
