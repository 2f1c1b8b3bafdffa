"""``python -m fuse align|fuse|adapt --config FILE [--set key=value ...] [--resume]``: the three stages.

Bad input (config, checkpoint, data file) and an output folder that refuses writes end the run
with one ``error:`` line and exit code 2 (``--debug`` shows the traceback).
"""
from __future__ import annotations

import argparse

from fuse.train.config import TrainConfig, describe_keys, load_config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = "--help-config lists every config key with its default and allowed values."
    parser.add_argument("--config", help="YAML file (configs/<stage>/<dataset>.yaml); defaults apply without one")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set model.encoder=vitb --set optim.epochs=5 (repeatable)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from <run.output_dir>/latest.pth (or its previous copy latest.prev.pth)")
    parser.add_argument("--help-config", action="store_true", help="list every config key and exit")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def run(args: argparse.Namespace) -> int:
    """Train one stage."""
    from fuse.train.trainer import train

    if args.help_config:
        print(describe_keys(), end="")
        return 0
    train(TrainConfig.from_dict(load_config(args.config, args.overrides, stage=args.command)), resume=args.resume)
    return 0
