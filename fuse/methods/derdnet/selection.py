"""DERD-Net's pixel selection, Sub-DSI inputs and MVSEC ground truth (spec §3, §4, §6).

Source: tub-rip/DERD-Net ``2684ed8``, ``notebooks/Classes_and_Functions.ipynb``:
``DSI_Pixelswise_Dataset.get_threshold_mask`` / ``get_depthmap`` / ``get_pixels`` (training and
numeric testing) and ``DSI_Pixels_for_Inference.get_sub_dsis`` (the batched gather).

* Confidence map: the maximum over depth of the DSI (fused for stereo, ``dsi_0`` for mono).
* 8-bit: ``round(c · 255 / max(M_seq, max c))`` in float32 as numpy does it on the float32 DSI
  (``np.around``: halves to even), then uint8.
* Selection: ``cv2.adaptiveThreshold(c8, 255, ADAPTIVE_THRESH_GAUSSIAN_C, THRESH_BINARY, block, C)``
  and a border of ``radius`` pixels dropped; for training / numeric tests also finite GT at the
  centre. The "#Points" count is taken before the GT mask (single pixel: the centres;
  multi-pixel: the union of their 3 x 3 neighbourhoods, the notebook's bool ``convolve``).
* Sub-DSI: ``DSI[::-1, h-3:h+4, w-3:w+4]`` (depth flipped to near -> far, ``neg_depth_axis``),
  divided by its own maximum clamped at 1e-8 (inference path; the training path divides only
  when the maximum is > 0, which differs only for maxima below 1e-8).
  Not offered (off in every released model): whole-DSI normalization and the centre-pixel
  reference, which in the notebook reads ``sub_dsi[:, r//2, r//2]`` (pixel (1, 1), not the centre).
* GT: MVSEC's raw (distorted) left depth through ``cv2.fisheye.undistortImage(depth, K0, D0,
  Knew=P0)`` (3 x 4 ``P0``, R = I, same size); zeros -> NaN.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from fuse.errors import UsageError
from fuse.methods.derdnet.calibration import Camera
from fuse.methods.derdnet.dsi import Volume

__all__ = ["FilterPreset", "PRESETS", "MAX_CONFIDENCE", "RADIUS", "confidence_map", "confidence_8bit",
           "threshold_mask", "border_mask", "Selection", "select_pixels", "point_count", "sub_dsis",
           "undistort_depth"]


@dataclass(frozen=True)
class FilterPreset:
    """Adaptive Gaussian threshold: ``block_size`` (odd) and ``c`` (negative: threshold = mean + |c|)."""

    block_size: int
    c: float


# (dataset, filter) -> preset; "orig" is the notebook default, "denser" the one used for training and tests.
PRESETS = {
    ("mvsec", "orig"): FilterPreset(5, -14),
    ("mvsec", "denser"): FilterPreset(9, -10),
    ("dsec", "orig"): FilterPreset(5, -4),
    ("dsec", "denser"): FilterPreset(9, -2),
}

# M_seq: the per-sequence ray count that maps to 255 (MC-EMVS' max_confidence of the DSI configs).
MAX_CONFIDENCE = {"indoor_flying1": 57.7, "indoor_flying2": 78.0, "indoor_flying3": 78.8, "dsec": 468.0}

RADIUS = 3  # Sub-DSI radius in h and w (7 x 7 blocks) of every released model


def _is_tensor(x: object) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def confidence_map(dsi: Volume) -> np.ndarray:
    """Maximum over depth ``(H, W)`` float32 of a DSI ``(D, H, W)`` (numpy or tensor; numpy out, for OpenCV)."""
    if _is_tensor(dsi):
        return dsi.amax(dim=0).float().cpu().numpy()
    return np.asarray(dsi, dtype=np.float32).max(axis=0)


def confidence_8bit(confidence: np.ndarray, max_confidence: float) -> np.ndarray:
    """uint8 map ``round(c · 255 / max(M_seq, max c))`` (the notebook's float32 arithmetic)."""
    confidence = np.asarray(confidence, dtype=np.float32)
    top = max(max_confidence, np.max(confidence))
    return np.around(confidence * 255 / top).astype(np.uint8)


def threshold_mask(confidence8: np.ndarray, preset: FilterPreset) -> np.ndarray:
    """OpenCV's adaptive Gaussian threshold (replicated border, its own sigma) as a bool mask."""
    mask = cv2.adaptiveThreshold(confidence8, 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY,
                                 preset.block_size, preset.c)
    return mask.astype(bool)


def border_mask(shape: tuple[int, int], radius: int = RADIUS) -> np.ndarray:
    """True where a ``2 radius + 1`` square block fits inside the image."""
    mask = np.zeros(shape, bool)
    mask[radius: shape[0] - radius, radius: shape[1] - radius] = True
    return mask


@dataclass(frozen=True, eq=False)
class Selection:
    """Selected centres ``rows``, ``cols`` (row-major order, as ``np.where``) and the "#Points"
    count taken before the GT mask."""

    rows: np.ndarray
    cols: np.ndarray
    points: int


def point_count(mask: np.ndarray, multi_pixel: bool) -> int:
    """Selected centres, or for the multi-pixel model the union of their 3 x 3 neighbourhoods."""
    if not multi_pixel:
        return int(mask.sum())
    return int(cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT,
                          borderValue=0).sum())


def select_pixels(dsi: Volume, max_confidence: float, preset: FilterPreset, *, gt: np.ndarray | None = None,
                  radius: int = RADIUS, multi_pixel: bool = False) -> Selection:
    """The pixels DERD-Net predicts: threshold and border masks, and finite ``gt`` (H, W) when given."""
    mask = threshold_mask(confidence_8bit(confidence_map(dsi), max_confidence), preset)
    mask &= border_mask(mask.shape, radius)
    points = point_count(mask, multi_pixel)
    if gt is not None:
        if gt.shape != mask.shape:
            raise UsageError(f"ground truth has shape {gt.shape}, the DSI's pixels are {mask.shape}")
        mask &= np.isfinite(gt)
    rows, cols = np.nonzero(mask)
    return Selection(rows, cols, points)


def sub_dsis(dsi: Volume, rows: Any, cols: Any, radius: int = RADIUS, flip: bool = True) -> Volume:
    """Sub-DSIs ``(B, D, 2r+1, 2r+1)`` float32 around each centre, each divided by its maximum.

    One advanced-indexing gather on the far -> near DSI (numpy or tensor; the result is of the
    same kind and device); ``flip`` orders depth near -> far as the network expects.
    Centres must lie at least ``radius`` pixels inside the image (:func:`border_mask`).
    """
    depth, height, width = dsi.shape
    rows, cols = _as_index(dsi, rows), _as_index(dsi, cols)
    if len(rows) and (rows.min() < radius or cols.min() < radius or rows.max() >= height - radius
                      or cols.max() >= width - radius):
        raise UsageError(f"Sub-DSI centres must lie at least {radius} px inside the {width}x{height} DSI")
    offsets = _as_index(dsi, np.arange(-radius, radius + 1))
    r = rows[:, None, None, None] + offsets[None, None, :, None]  # (B, 1, size, 1)
    c = cols[:, None, None, None] + offsets[None, None, None, :]  # (B, 1, 1, size)
    planes = _as_index(dsi, np.arange(depth)[::-1] if flip else np.arange(depth))[None, :, None, None]
    blocks = dsi[planes, r, c]  # (B, D, size, size) in one gather
    if _is_tensor(blocks):
        blocks = blocks.float()
        return blocks / blocks.amax(dim=(1, 2, 3), keepdim=True).clamp(min=1e-8)
    blocks = blocks.astype(np.float32, copy=False)
    return blocks / np.maximum(blocks.max(axis=(1, 2, 3), keepdims=True), np.float32(1e-8))


def _as_index(like: Volume, values: Any) -> Any:
    """Integer index array of the same kind (and device) as ``like``."""
    if _is_tensor(like):
        import torch

        return torch.as_tensor(np.ascontiguousarray(values) if isinstance(values, np.ndarray) else values,
                               dtype=torch.long, device=like.device)
    return np.asarray(values, dtype=np.intp)


def undistort_depth(depth: np.ndarray, camera: Camera) -> np.ndarray:
    """MVSEC raw depth (H, W) metres into the DSI's virtual camera: fisheye undistortion with
    ``Knew = P`` (bilinear; NaNs spread to their neighbours), zeros (no GT) -> NaN."""
    depth = np.asarray(depth, dtype=np.float32)
    if depth.shape != (camera.height, camera.width):
        raise UsageError(f"depth map has shape {depth.shape}, the camera is {camera.height}x{camera.width}")
    out = cv2.fisheye.undistortImage(depth, camera.K, camera.D.reshape(1, 4), Knew=camera.P)
    out[out == 0] = np.nan
    return out
