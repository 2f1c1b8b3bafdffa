"""``python -m fuse derdnet-infer``: sparse depth maps of a prepared folder, from DERD-Net networks
or the arg-max baseline.

The networks are one checkpoint or several averaged (the even/odd ensemble of every published
number, spec §5.2): the authors' released files or this project's ``derdnet`` runs, all of one
variant. Every selected pixel of a window is predicted (with or without GT, as the authors'
inference; the #Points of §3 counts them all) and written into an ``(H, W)`` map, NaN elsewhere;
multi-pixel outputs go to the 3 x 3 pixels around each centre, the last centre in row-major order
winning where neighbourhoods overlap (``model.write_points``). ``--argmax`` writes the arg-max
baseline of §5.3 at the same centres instead.

Outputs (each written to a temp name and renamed; a window is done when all four exist):
``depth/<window>.npy`` (float32 metres, NaN = no point), ``gt/<window>.npy`` (the window's GT in
the DSI's camera, NaN = none), ``color/<window>.png`` (the points colored by depth over the
window's event frame) and ``panels/<window>.png`` (events | depth | confidence map | GT | colour
bar). The depth and GT folders are what ``python -m fuse eval --protocol derdnet_points --pred
OUT/depth --target OUT/gt`` scores (files pair by name). ``provenance.json`` records the
prepared folder, the checkpoints' content and the options: a rerun with the same ones finishes
an interrupted run, other ones are refused unless ``--overwrite``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from fuse.atomic import check_writable, remove_stale_temps, save_npy_atomic
from fuse.cli import Command, register_command
from fuse.cli.ranges import non_negative_int, positive_int
from fuse.errors import CheckpointError, UsageError
from fuse.evaluate.prediction import resolve_device
from fuse.evaluate.visualize import colorize_depth, depth_colorbar, make_panel, write_png_atomic
from fuse.methods.derdnet.data import SPLITS, PreparedFolder
from fuse.methods.derdnet.model import HEAD, KIND, DepthRange, DerdNetEnsemble, write_points
from fuse.methods.derdnet.selection import confidence_8bit
from fuse.provenance import OutputFolder, file_identity, identity_key
from fuse.weights import load_model, read_weights

FORMAT = "derdnet-infer/1"
OUTPUT_PATTERNS = ("depth/*.npy", "gt/*.npy", "color/*.png", "panels/*.png")
EVENT_SHADE = 0.6  # how dark the densest event pixels are drawn under the points (0: invisible, 1: black)
EVENT_PERCENTILE = 99.0  # event counts are scaled by this percentile of the pixels with events


@dataclass(frozen=True)
class InferOptions:
    """What ``derdnet-infer`` does (the command line's options)."""

    prepared: str
    checkpoints: tuple[str, ...] = ()
    argmax: bool = False
    out: str | None = None
    out_root: str = str(Path("outputs") / "derdnet")
    split: str = "all"
    batch_size: int = 4096
    device: str = "auto"
    marker: int = 1
    limit: int | None = None
    overwrite: bool = False
    progress: bool = True


def load_networks(paths: tuple[str, ...], dataset: str, device: torch.device) -> DerdNetEnsemble:
    """The checkpoints as one ensemble; files that are no DERD-Net network, of different variants or
    trained for another dataset are refused, naming each file and what it holds."""
    layouts = []
    for path in paths:
        _, layout = read_weights(path)
        if layout.kind != KIND:
            raise CheckpointError(f"--checkpoint {path} holds {layout.describe()}, not a DERD-Net network")
        trained_for = ((layout.run_config or {}).get("derdnet") or {}).get("dataset")
        if trained_for not in (None, dataset):
            raise CheckpointError(f"--checkpoint {path} was trained for {trained_for}, but the prepared folder is "
                                  f"{dataset} data (another depth range)")
        layouts.append(layout)
    if len({layout.config for layout in layouts}) > 1:
        held = "; ".join(f"{path}: {layout.describe()}" for path, layout in zip(paths, layouts))
        raise CheckpointError(f"an ensemble averages networks of one variant, but the checkpoints differ ({held})")
    return DerdNetEnsemble([load_model(path)[0] for path in paths]).to(device).eval()


def _identity(options: InferOptions, prepared: PreparedFolder, networks: DerdNetEnsemble | None) -> dict:
    """What the output files depend on; ``model`` lets ``eval`` check the protocol scores point depth."""
    model = {"kind": KIND, "head": HEAD, **(networks.config.to_dict() if networks is not None else {})}
    return {"format": FORMAT, "predictor": "argmax" if networks is None else "networks",
            "checkpoints": [file_identity(path) for path in options.checkpoints], "model": model,
            "dataset": prepared.settings["dataset"], "prepared": {"name": prepared.folder.name,
                                                                  "settings": identity_key(prepared.settings)},
            "split": options.split, "marker": options.marker}


def _default_out(options: InferOptions, prepared: PreparedFolder, made_by: dict) -> Path:
    """``<out-root>/<prepared>-<checkpoint or argmax>-<hash>``: one folder per identity."""
    what = Path(options.checkpoints[0]).stem if options.checkpoints else "argmax"
    return Path(options.out_root) / f"{prepared.folder.name}-{what}-{identity_key(made_by)}"


@torch.no_grad()
def predict_window(prepared: PreparedFolder, stem: str, networks: DerdNetEnsemble | None, depth: DepthRange,
                   batch_size: int, device: torch.device) -> np.ndarray:
    """The window's sparse depth map (H, W) float32, NaN where no point."""
    rows, cols, argmax = prepared.record(stem, "rows", "cols", "argmax_depth")
    centres = torch.from_numpy(np.stack([rows, cols], axis=1).astype(np.int64))
    if networks is None:
        values = torch.from_numpy(argmax[rows, cols])
    else:
        blocks = prepared.sub_dsi(stem)
        outputs = [networks(torch.from_numpy(blocks[i: i + batch_size].astype(np.float32)).to(device)).cpu()
                   for i in range(0, len(blocks), batch_size)]
        width = networks.config.outputs
        raw = torch.cat(outputs) if outputs else torch.zeros((0, width) if width > 1 else (0,))
        values = depth.to_metres(raw)
    return write_points(argmax.shape, centres, values.float()).numpy()


def event_image(counts: np.ndarray) -> np.ndarray:
    """Event counts as a light gray BGR picture: white without events, darker with more."""
    active = counts[counts > 0]
    scale = np.percentile(active, EVENT_PERCENTILE) if active.size else 1.0
    gray = 255.0 * (1.0 - EVENT_SHADE * np.clip(counts / scale, 0.0, 1.0))
    return cv2.cvtColor(np.round(gray).astype(np.uint8), cv2.COLOR_GRAY2BGR)


def points_over(background: np.ndarray, depth: np.ndarray, colors: np.ndarray, marker: int) -> np.ndarray:
    """Each point drawn as a filled disc of radius ``marker`` px in its depth's color (row-major)."""
    out = background.copy()
    for row, col in zip(*np.nonzero(np.isfinite(depth))):
        if marker == 0:
            out[row, col] = colors[row, col]
        else:
            cv2.circle(out, (int(col), int(row)), marker, colors[row, col].tolist(), -1)
    return out


def pictures(depth: np.ndarray, gt: np.ndarray, confidence: np.ndarray, events: np.ndarray, span: DepthRange,
             max_confidence: float, marker: int) -> tuple[np.ndarray, np.ndarray]:
    """The colored points over the event frame, and the panel events | depth | confidence | GT | bar."""
    scale = (span.z_max, math.log(span.z_max / span.z_min))  # the colour scale spans the depth range
    background = event_image(events)
    color = points_over(background, depth, colorize_depth(depth, *scale), marker)
    confidence8 = confidence_8bit(confidence, max_confidence)
    tiles = [("events", background), ("depth", color),
             ("confidence", cv2.applyColorMap(confidence8, cv2.COLORMAP_INFERNO)),
             ("ground truth", colorize_depth(gt, *scale))]
    panel = np.concatenate([make_panel(tiles), depth_colorbar(depth.shape[0], *scale)], axis=1)
    return color, panel


def _check(options: InferOptions) -> None:
    if bool(options.checkpoints) == options.argmax:
        raise UsageError("give --checkpoint (one, or several for an ensemble) or --argmax, not both or neither")
    if options.split not in SPLITS:
        raise UsageError(f"--split must be one of {SPLITS}, got {options.split!r}")
    if options.out is not None and Path(options.out).exists() and not Path(options.out).is_dir():
        raise UsageError(f"--out {options.out} exists and is not a folder")


@dataclass(frozen=True)
class InferResult:
    out: Path
    windows: int
    predicted: int
    points: int
    seconds: float
    dataset: str

    @property
    def summary(self) -> str:
        return (f"derdnet-infer: {self.windows} windows -> {self.out} ({self.predicted} predicted, "
                f"{self.windows - self.predicted} already done; {self.points} points in the predicted ones); "
                f"{self.seconds:.1f} s. Score: python -m fuse eval --protocol derdnet_points "
                f"--pred {self.out / 'depth'} --target {self.out / 'gt'} --dataset {self.dataset}")


def infer(options: InferOptions) -> InferResult:
    """Check everything (prepared folder, checkpoints, output folder), then predict the windows still to do."""
    _check(options)
    prepared = PreparedFolder(options.prepared)
    device = resolve_device(options.device)
    dataset = prepared.settings["dataset"]
    networks = load_networks(options.checkpoints, dataset, device) if options.checkpoints else None
    made_by = _identity(options, prepared, networks)
    out = Path(options.out) if options.out is not None else _default_out(options, prepared, made_by)
    folder = OutputFolder(out, "derdnet-infer", made_by, OUTPUT_PATTERNS, overwrite=options.overwrite)
    folder.check()
    check_writable(out, create=False)
    stems = prepared.split(options.split)[: options.limit]
    todo = [stem for stem in stems if options.overwrite or not _done(out, stem)]
    check_writable(out)
    folder.start()
    for sub in ("depth", "gt", "color", "panels"):
        remove_stale_temps(out / sub)
    span = DepthRange(**prepared.settings["depth_range"])
    started, points = time.perf_counter(), 0
    with ExitStack() as stack:
        bar = stack.enter_context(tqdm(total=len(todo), unit="window", desc="derdnet-infer",
                                       disable=not options.progress))
        for stem in todo:
            depth = predict_window(prepared, stem, networks, span, options.batch_size, device)
            _write(out, stem, prepared, depth, span, options.marker)
            points += int(np.isfinite(depth).sum())
            bar.update()
    return InferResult(out, len(stems), len(todo), points, time.perf_counter() - started, dataset)


def _paths(out: Path, stem: str) -> tuple[Path, Path, Path, Path]:
    return (out / "depth" / f"{stem}.npy", out / "gt" / f"{stem}.npy", out / "color" / f"{stem}.png",
            out / "panels" / f"{stem}.png")


def _done(out: Path, stem: str) -> bool:
    return all(path.is_file() for path in _paths(out, stem))


def _write(out: Path, stem: str, prepared: PreparedFolder, depth: np.ndarray, span: DepthRange, marker: int) -> None:
    """Depth, GT, colored points and panel of one window (the panel last: ``_done`` checks all four)."""
    depth_path, gt_path, color_path, panel_path = _paths(out, stem)
    gt, confidence, events = prepared.record(stem, "gt_map", "confidence_map", "event_frame")
    color, panel = pictures(depth, gt, confidence, events, span, prepared.settings["max_confidence"], marker)
    save_npy_atomic(depth_path, depth.astype(np.float32, copy=False))
    save_npy_atomic(gt_path, gt.astype(np.float32, copy=False))
    write_png_atomic(color_path, color)
    write_png_atomic(panel_path, panel)


# ---------------------------------------------------------------- command line

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prepared", required=True, help="a derdnet-prepare output folder")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", dest="checkpoints", action="append", default=[], metavar="FILE",
                      help="DERD-Net checkpoint: a released .pth or this project's; repeat it to average several "
                           "(the published numbers: the even and the odd model of a fold)")
    what.add_argument("--argmax", action="store_true", help="the arg-max baseline of spec §5.3 instead of a network")
    parser.add_argument("--out", default=None, help="output folder (default OUT_ROOT/<prepared>-<checkpoint>-<hash>)")
    parser.add_argument("--out-root", default=str(Path("outputs") / "derdnet"),
                        help="where the default --out folders are made (default outputs/derdnet)")
    parser.add_argument("--split", choices=SPLITS, default="all", help="windows to predict (default all)")
    parser.add_argument("--batch-size", type=positive_int, default=4096, help="Sub-DSIs per forward pass")
    parser.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--marker", type=non_negative_int, default=1,
                        help="radius in px of each point in the colored PNGs (0: the pixel alone; default 1)")
    parser.add_argument("--limit", type=positive_int, default=None, help="only the first N windows of the split")
    parser.add_argument("--overwrite", action="store_true", help="delete the folder's earlier outputs first")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def run(args: argparse.Namespace) -> int:
    options = InferOptions(
        prepared=args.prepared, checkpoints=tuple(args.checkpoints), argmax=args.argmax, out=args.out,
        out_root=args.out_root, split=args.split, batch_size=args.batch_size, device=args.device,
        marker=args.marker, limit=args.limit, overwrite=args.overwrite, progress=not args.no_progress)
    print(infer(options).summary, file=sys.stderr)
    return 0


register_command(Command("derdnet-infer", __name__,
                         "DERD-Net: sparse depth maps, GT maps and panels of a prepared folder (networks or arg-max)"))
