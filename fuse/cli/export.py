"""``python -m fuse export``: a checkpoint as an ONNX (or TorchScript) file for one input size.

    python -m fuse export --checkpoint fuse_vits.pth --size 266 350 --out fuse_vits_266x350.onnx

The file takes the model's inputs at exactly that height and width, with any batch size, and
every size-dependent constant (position embeddings, blur kernels, merged LoRA weights) already
computed (``fuse.export.fixed``). Before the file is renamed into place it is run with
onnxruntime (TorchScript: reloaded with torch) on random inputs at two batch sizes and compared
with the PyTorch model; the relative L2 errors are printed and stored in the file. Inputs,
their normalization and the output's meaning are in the file's metadata (``docs/export.md``).
A size that is not a multiple of 14, and an existing ``--out`` without ``--overwrite``, are
refused with one message (exit code 2) before the checkpoint is read.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from fuse.cli.ranges import positive_float, positive_int
from fuse.errors import UsageError
from fuse.export.fixed import check_export_size
from fuse.export.verify import TOLERANCE
from fuse.layers.dpt import HEAD_KINDS

FORMATS = ("onnx", "torchscript")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True,
                        help="any file fuse.weights.load_model reads (this project's, a FUSE release, a DA-V2 file)")
    parser.add_argument("--size", required=True, nargs="+", type=positive_int, metavar=("H", "W"),
                        help="input height and width, multiples of 14 (one value: square)")
    parser.add_argument("--out", required=True, help="the file to write (e.g. model.onnx, model.pt)")
    parser.add_argument("--format", choices=FORMATS, default="onnx", help="onnx (default) or torchscript")
    parser.add_argument("--opset", type=positive_int, default=None,
                        help="ONNX opset (default 17; torch's exporter supports 9 to 20)")
    parser.add_argument("--tolerance", type=positive_float, default=TOLERANCE,
                        help=f"largest relative L2 error accepted against PyTorch (default {TOLERANCE:g})")
    parser.add_argument("--head", choices=HEAD_KINDS, default=None,
                        help="head ending for files that do not record it (upstream FUSE files: metric)")
    parser.add_argument("--max-depth", type=positive_float, default=None,
                        help="metric head scale for files that do not record it (upstream: 80 MVSEC, 1000 DENSE)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def _size(values: list[int]) -> tuple[int, int]:
    if len(values) > 2:
        raise UsageError(f"--size takes H W (or one value for a square), got {len(values)} values")
    height, width = (values[0], values[0]) if len(values) == 1 else values
    check_export_size(height, width)
    return height, width


def _check_out(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name, e.g. {out / 'model.onnx'}")
    if out.exists() and not args.overwrite:
        raise UsageError(f"--out {out} exists; pass --overwrite to replace it, or choose another name")
    if args.format == "torchscript" and args.opset is not None:
        raise UsageError("--opset applies to --format onnx only")
    if Path(args.checkpoint).exists() and out.exists() and os.path.samefile(args.checkpoint, out):
        raise UsageError(f"--out {out} is the checkpoint itself; choose another name")
    return out


def run(args: argparse.Namespace) -> int:
    height, width = _size(args.size)
    out = _check_out(args)
    from fuse.provenance import file_sha256
    from fuse.weights import load_model

    overrides = {key: value for key, value in (("head", args.head), ("max_depth", args.max_depth)) if value is not None}
    model, report = load_model(args.checkpoint, **overrides)
    print(report.summary().splitlines()[0])
    source = {"fuse.checkpoint": Path(args.checkpoint).name, "fuse.checkpoint_sha256": file_sha256(args.checkpoint)}
    if args.format == "onnx":
        from fuse.export.onnx import DEFAULT_OPSET, export_onnx

        result = export_onnx(model, out, height, width, opset=args.opset or DEFAULT_OPSET, tolerance=args.tolerance,
                             extra_metadata=source)
    else:
        from fuse.export.torchscript import export_torchscript

        result = export_torchscript(model, out, height, width, tolerance=args.tolerance, extra_metadata=source)
    print(result.summary())
    return 0
