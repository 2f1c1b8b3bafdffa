"""Tiny processed splits and checkpoints for training and evaluation tests and benchmarks.

In the splits, depth is learnable from both inputs: the image and the events both encode it.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

import fuse
from fuse.checkpoint import save_checkpoint


def write_split(root: Path, name: str = "seq", frames: int = 8, height: int = 42, width: int = 56, bins: int = 3,
                seed: int = 0) -> Path:
    """Frames whose depth is a smooth random field; the image and the events both encode it."""
    rng = np.random.default_rng(seed)
    for sub in ("images", "depths", "voxels"):
        (root / name / sub).mkdir(parents=True, exist_ok=True)
    lines = []
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    for i in range(frames):
        a, b, c = rng.uniform(-1, 1, 3)
        depth = (10 + 8 * (a * xx + b * yy + c * np.sin(3 * xx + 2 * yy))).astype(np.float32)
        depth[: height // 8] = np.nan  # "sky"
        image = np.clip(255 * (1 - np.nan_to_num(depth, nan=30.0) / 30), 0, 255).astype(np.uint8)
        voxel = np.stack([np.gradient(np.nan_to_num(depth, nan=30.0), axis=1) * (k + 1) for k in range(bins)]).astype(np.float32)
        stem = f"{i:06d}"
        cv2.imwrite(str(root / name / "images" / f"{stem}.png"), image)
        np.save(root / name / "depths" / f"{stem}.npy", depth)
        np.save(root / name / "voxels" / f"{stem}.npy", voxel)
        lines.append(f"{name}/images/{stem}.png {name}/depths/{stem}.npy {name}/voxels/{stem}.npy")
    split = root / f"{name}.txt"
    split.write_text("\n".join(lines) + "\n")
    return split


def write_teacher(path: Path, encoder: str = "vitt", seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = fuse.build_model("depth_anything_v2", encoder=encoder)
    with torch.no_grad():
        model.depth_head.scratch.output_conv2[2].bias.fill_(1.0)  # a ReLU ending that is not all zero
    return save_checkpoint(path, model)
