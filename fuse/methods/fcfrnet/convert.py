"""``python -m fuse fcfrnet-convert``: a Paddle-port ``.pdparams`` file of STD or FCFRNet in this
project's checkpoint format.

    python -m fuse fcfrnet-convert --pdparams fcfrnet.pdparams --kind fcfrnet --out fcfrnet.pth

The file is read without Paddle and without running any code it might carry (``paddle.py``), and
loaded strictly; the input mode is read from its shapes, the other options are the release's
(spec fcfrnet.md §7). ``fuse.weights.load_model(OUT)`` rebuilds the network. An existing output is
replaced only with ``--overwrite``.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from fuse.checkpoint import save_checkpoint
from fuse.cli import Command, register_command
from fuse.errors import CheckpointError, UsageError
from fuse.methods.fcfrnet.model import FCFRNET_KIND, STD_KIND
from fuse.methods.fcfrnet.weights import build_for, load_state, read_paddle_layout


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pdparams", required=True, help="the Paddle port's weights (.pdparams)")
    parser.add_argument("--kind", required=True, choices=[STD_KIND, FCFRNET_KIND], help="the network the file holds")
    parser.add_argument("--out", required=True, help="output checkpoint in this project's format (.pth)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def run(args: argparse.Namespace) -> int:
    _check_out(Path(args.pdparams), Path(args.out), args.overwrite)
    layout = read_paddle_layout(args.pdparams)
    if layout.kind != args.kind:
        raise CheckpointError(f"{args.pdparams} holds {layout.describe()}, not {args.kind}; pass --kind {layout.kind}")
    model = build_for(layout, {})
    report = load_state(model, {}, layout, args.pdparams)
    print(report.summary())
    save_checkpoint(args.out, model)
    print(f"wrote {args.out} ({args.kind}, {model.config.input_mode} input; load it with "
          f"fuse.weights.load_model('{args.out}'))")
    return 0


def _check_out(source: Path, out: Path, overwrite: bool) -> None:
    """Never write over the source, and over another file only when asked to."""
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name, e.g. {out / (source.stem + '.pth')}")
    if not out.exists():
        return
    if source.exists() and os.path.samefile(source, out):
        raise UsageError(f"--out {out} is the --pdparams file itself; give another name")
    if not overwrite:
        raise UsageError(f"--out {out} exists; pass --overwrite to replace it, or choose another name")


register_command(Command("fcfrnet-convert", __name__,
                         "FCFR-Net: convert the Paddle port's STD / FCFRNet .pdparams into this project's format"))
