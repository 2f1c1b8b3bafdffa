"""``python -m fuse fcfrnet-predict``: an STD or FCFRNet checkpoint's depth maps of a KITTI split.

    python -m fuse fcfrnet-predict --checkpoint runs/fcfrnet/std/best.pth --root data/kitti_dc \\
        --split train --name std_coarse             # STD's coarse maps, the input of stage fcfrnet
    python -m fuse fcfrnet-predict --checkpoint runs/fcfrnet/fcfrnet/best.pth --root data/kitti_dc \\
        --split val_selection --input std_coarse --out preds/   # .npy maps for python -m fuse eval

``--name NAME`` writes each map as a KITTI depth PNG (16 bits, metres x 256) in a folder NAME beside
``velodyne_raw`` with the benchmark's naming (drive splits: ``<split>/<drive>/proj_depth/NAME/
<camera>/<frame>.png``; val_selection: ``val_selection_cropped/NAME/<drive>_NAME_<frame>_<camera>
.png``), so that ``kitti.split_frames(..., sparse=NAME)`` and the stage fcfrnet
(``fcfrnet.coarse: NAME``) read it as the depth input (spec §5). The networks see the bottom
crop; above it a map is 0 (no depth), so it has its frame's size. ``--out DIR`` writes
``<frame name>.npy``, float32 metres of the crop, named to sort like val_selection's ground truth
for ``python -m fuse eval --protocol kitti_completion``. Each file goes to a temporary name and is
renamed, so an interrupted run leaves only whole files; a rerun writes them all again.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

from fuse.atomic import check_writable, save_npy_atomic, write_bytes_atomic
from fuse.cli import Command, register_command
from fuse.data.layout import png_header
from fuse.errors import UsageError
from fuse.methods.fcfrnet.data import network_image
from fuse.methods.fcfrnet.kitti import (
    CROP, DEPTH_SCALE, SPARSE, SPLITS, VAL_SELECTION, KittiFrame, bottom_crop, read_frame, split_frames)
from fuse.methods.fcfrnet.model import FCFRNET_KIND, STD_KIND
from fuse.weights import load_model

UINT16_MAX = np.iinfo(np.uint16).max


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="STD or FCFRNet weights: this project's .pth or the "
                        "Paddle port's .pdparams")
    parser.add_argument("--root", required=True, help="KITTI depth-completion folder (train/, val/, depth_selection/)")
    parser.add_argument("--raw", default=None, help="folder of the KITTI raw drives' images (default: --root)")
    parser.add_argument("--split", default="val_selection", choices=SPLITS, help="frames to predict")
    parser.add_argument("--input", default=None, help=f"folder of the depth input beside groundtruth (STD: default "
                        f"{SPARSE}; FCFRNet: required, the folder of STD's coarse maps)")
    parser.add_argument("--name", default=None, help="write 16-bit PNGs into the KITTI tree as folder NAME beside "
                        f"{SPARSE} (the input of stage fcfrnet: fcfrnet.coarse=NAME)")
    parser.add_argument("--out", default=None, help="write <frame>.npy (metres) into this folder, for python -m fuse "
                        "eval --protocol kitti_completion")
    parser.add_argument("--crop", type=int, nargs=2, default=list(CROP), metavar=("HEIGHT", "WIDTH"),
                        help="bottom crop the network sees (default: 352 1216, spec §4)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to run the network")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")


def coarse_path(root: Path, split: str, frame: KittiFrame, name: str) -> Path:
    """Where ``split_frames(root, split, sparse=name)`` looks for the frame's depth input."""
    if split == "val_selection":
        drive, number, camera = frame.name[:-20], frame.name[-19:-9], frame.name[-8:]  # <drive>_<10 digits>_image_0X
        return root / VAL_SELECTION / name / f"{drive}_{name}_{number}_{camera}.png"
    gt = frame.groundtruth  # <split>/<drive>/proj_depth/groundtruth/<camera>/<frame>.png
    return gt.parents[2] / name / gt.parent.name / gt.name


def depth_png(depth: np.ndarray) -> bytes:
    """A KITTI depth PNG of metres: round(256 d) in 16 bits (1/256 m steps, at most 255.99 m)."""
    ok, encoded = cv2.imencode(".png", np.clip(np.round(depth * DEPTH_SCALE), 0, UINT16_MAX).astype(np.uint16))
    if not ok:
        raise RuntimeError("OpenCV could not encode a 16-bit PNG")
    return encoded.tobytes()


def _device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda, but CUDA is not available here; use auto or cpu")
    return torch.device("cuda" if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()) else "cpu")


def _input_folder(args: argparse.Namespace, kind: str) -> str:
    if args.input is None and kind == FCFRNET_KIND:
        raise UsageError("an FCFRNet checkpoint refines STD's coarse maps: pass --input with their folder (written "
                         "by fcfrnet-predict --name with an STD checkpoint)")
    return args.input or SPARSE


@torch.no_grad()
def predict(model: torch.nn.Module, image: np.ndarray, depth: np.ndarray, device: torch.device) -> np.ndarray:
    """Metres (H, W) of one cropped frame: uint8 RGB H x W x 3 and input depth H x W in metres."""
    rgb = torch.from_numpy(image.astype(np.float32) / np.float32(255.0)).permute(2, 0, 1)[None].to(device)
    sparse = torch.from_numpy(np.ascontiguousarray(depth))[None, None].to(device)
    return model(network_image(rgb, model.config.input_mode), sparse)[0].float().cpu().numpy()


def run(args: argparse.Namespace) -> int:
    if not (args.name or args.out):
        raise UsageError("give --name NAME (16-bit PNGs in the KITTI tree, the input of stage fcfrnet), --out DIR "
                         "(.npy maps for eval), or both")
    if args.name and (Path(args.name).name != args.name or args.name in ("groundtruth", SPARSE)):
        raise UsageError(f"--name is a new folder name beside {SPARSE}, not a path or an input folder; got "
                         f"{args.name!r}")
    model, _ = load_model(args.checkpoint)
    if model.config.kind not in (STD_KIND, FCFRNET_KIND):
        raise UsageError(f"{args.checkpoint} holds a {model.config.kind} model; fcfrnet-predict runs STD or FCFRNet")
    frames = split_frames(args.root, args.split, args.raw, _input_folder(args, model.config.kind))
    if args.out:
        check_writable(args.out)
    device, crop = _device(args.device), tuple(args.crop)
    model.eval().to(device)
    for frame in tqdm(frames, desc=f"fcfrnet-predict {args.split}", disable=args.no_progress, file=sys.stderr,
                      dynamic_ncols=True):
        sample = read_frame(frame, crop)
        depth = predict(model, sample.image, sample.sparse, device)
        if args.name:
            header = png_header(frame.groundtruth)  # whole: read_frame has just decoded it
            full = np.zeros((header.height, header.width), np.float32)
            bottom_crop(full, crop)[...] = depth  # a view: the crop's place in the frame
            write_bytes_atomic(coarse_path(Path(args.root), args.split, frame, args.name), depth_png(full))
        if args.out:
            save_npy_atomic(Path(args.out) / f"{frame.name}.npy", depth)
    written = [f"{args.name} beside {SPARSE} in {args.root}" if args.name else "", args.out or ""]
    print(f"wrote {len(frames)} {model.config.kind} maps of {args.split} to {' and '.join(w for w in written if w)}")
    return 0


register_command(Command("fcfrnet-predict", __name__,
                         "FCFR-Net: STD / FCFRNet depth maps of a KITTI split (16-bit PNGs in the KITTI tree, .npy)"))
