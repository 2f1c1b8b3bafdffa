"""Command dispatcher. Each command lives in ``fuse/cli/<module>.py`` and exposes
``add_arguments(parser)`` and ``run(args) -> int``."""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "align": ("fuse.cli.train", "stage 1: align an event encoder to the DA-V2 image teacher (LoRA)"),
    "fuse": ("fuse.cli.train", "stage 2: train FreDFuse on degraded inputs against the clean-image teacher"),
    "adapt": ("fuse.cli.train", "stage 3: train the metric depth head on MVSEC or DENSE"),
    "teacher": ("fuse.cli.train", "stand-in relative-depth teacher when no DA-V2 checkpoint is at hand (demo)"),
    "eval": ("fuse.cli.evaluate", "evaluate predictions against ground truth (E2Depth protocol)"),
    "infer": ("fuse.cli.infer", "predict depth maps, colored PNGs and panels"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fuse", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules, parsers = {}, {}
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        modules[name] = module
        parsers[name] = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(parsers[name])
    args, unknown = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if unknown:  # the command's own usage, not the top-level one (argparse exits with code 2)
        parsers[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
    return int(modules[args.command].run(args) or 0)
