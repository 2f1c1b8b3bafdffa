"""DERD-Net's pixel selection, Sub-DSI gather and GT undistortion (spec derd-net.md §3, §4, §6)
against direct implementations of the notebook's steps."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from fuse.demo.room import INDOOR_LEFT, INDOOR_RECT
from fuse.errors import UsageError
from fuse.methods.derdnet.calibration import Camera
from fuse.methods.derdnet.selection import (
    MAX_CONFIDENCE,
    PRESETS,
    FilterPreset,
    border_mask,
    confidence_8bit,
    confidence_map,
    point_count,
    select_pixels,
    sub_dsis,
    threshold_mask,
    undistort_depth,
)

# MVSEC indoor_flying's left DAVIS (spec §2.3), as the synthetic room renders it.
MVSEC_LEFT = Camera(INDOOR_LEFT.width, INDOOR_LEFT.height, INDOOR_LEFT.K, np.array(INDOOR_LEFT.distortion),
                    np.hstack([INDOOR_RECT.K, np.zeros((3, 1))]))


def random_dsi(depth: int = 20, height: int = 30, width: int = 40, seed: int = 0) -> np.ndarray:
    """Sparse ray counts with a few strong ridges, like a DSI."""
    rng = np.random.default_rng(seed)
    dsi = rng.gamma(0.5, 2.0, (depth, height, width)).astype(np.float32)
    peaks = rng.integers(0, depth, (height, width))
    strong = rng.random((height, width)) < 0.2
    dsi[peaks[strong], *np.nonzero(strong)] += rng.uniform(20, 60, strong.sum()).astype(np.float32)
    return dsi


def test_presets_and_sequence_maxima_are_the_papers():
    assert PRESETS[("mvsec", "orig")] == FilterPreset(5, -14)
    assert PRESETS[("mvsec", "denser")] == FilterPreset(9, -10)
    assert PRESETS[("dsec", "orig")] == FilterPreset(5, -4) and PRESETS[("dsec", "denser")] == FilterPreset(9, -2)
    assert MAX_CONFIDENCE == {"indoor_flying1": 57.7, "indoor_flying2": 78.0, "indoor_flying3": 78.8, "dsec": 468.0}


def test_confidence_scaling_uses_the_larger_of_sequence_and_dsi_maximum():
    dsi = random_dsi()
    c = confidence_map(dsi)
    np.testing.assert_array_equal(c, dsi.max(axis=0))
    np.testing.assert_array_equal(confidence_map(torch.from_numpy(dsi)), c)
    for m in (57.7, 10.0):  # the notebook's get_threshold_mask, float32 throughout
        expected = np.around(c * 255 / max(m, np.max(c))).astype("uint8")
        np.testing.assert_array_equal(confidence_8bit(c, m), expected)
    assert confidence_8bit(c, 10.0).max() == 255 and confidence_8bit(c, 1000.0).max() < 255


@pytest.mark.parametrize("name", ["orig", "denser"])
def test_threshold_is_mean_plus_c_of_opencvs_gaussian(name):
    preset = PRESETS[("mvsec", name)]
    c8 = confidence_8bit(confidence_map(random_dsi()), 57.7)
    mask = threshold_mask(c8, preset)
    # Spec §3: selected iff c8 > G * c8 - C, G the Gaussian of the block (uint8 mean, replicated border).
    mean = cv2.GaussianBlur(c8, (preset.block_size, preset.block_size), 0, borderType=cv2.BORDER_REPLICATE)
    expected = c8.astype(int) > mean.astype(int) - preset.c
    np.testing.assert_array_equal(mask, expected)
    assert 0 < mask.sum() < mask.size


def test_denser_filter_selects_more_pixels():
    c8 = confidence_8bit(confidence_map(random_dsi(height=60, width=80)), 57.7)
    assert threshold_mask(c8, PRESETS[("mvsec", "denser")]).sum() > threshold_mask(c8, PRESETS[("mvsec", "orig")]).sum()


def test_border_mask_keeps_rows_and_columns_3_to_size_minus_4():
    mask = border_mask((260, 346))
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (3, 256, 3, 342)


def test_selection_counts_points_before_the_gt_mask():
    dsi = random_dsi()
    preset = PRESETS[("mvsec", "orig")]
    gt = np.full(dsi.shape[1:], 2.0, np.float32)
    gt[:, :20] = np.nan
    selected = select_pixels(dsi, 57.7, preset)
    with_gt = select_pixels(dsi, 57.7, preset, gt=gt)
    mask = threshold_mask(confidence_8bit(confidence_map(dsi), 57.7), preset) & border_mask(dsi.shape[1:])
    assert selected.points == with_gt.points == mask.sum()
    assert [selected.rows.tolist(), selected.cols.tolist()] == [v.tolist() for v in np.nonzero(mask)]
    assert len(with_gt.rows) < len(selected.rows) and with_gt.cols.min() >= 20
    union = np.zeros_like(mask)
    for r, c in zip(*np.nonzero(mask)):
        union[r - 1: r + 2, c - 1: c + 2] = True
    assert select_pixels(dsi, 57.7, preset, multi_pixel=True).points == union.sum() == point_count(mask, True)
    with pytest.raises(UsageError, match="ground truth has shape"):
        select_pixels(dsi, 57.7, preset, gt=gt[1:])


def reference_sub_dsi(dsi: np.ndarray, h: int, w: int, r: int = 3) -> np.ndarray:
    """The notebook's get_sub_dsi on the flipped DSI, normalized by the block maximum."""
    block = dsi[::-1, h - r: h + r + 1, w - r: w + r + 1].astype(np.float32)
    return block / max(block.max(), np.float32(1e-8))


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_sub_dsi_gather_equals_a_loop_over_centres(kind):
    dsi = random_dsi()
    dsi[:, 10:20, 30:40] = 0  # an empty block stays zero (divisor clamped at 1e-8)
    rows, cols = np.array([3, 26, 15, 10]), np.array([3, 36, 35, 20])
    source = torch.from_numpy(dsi) if kind == "torch" else dsi
    got = sub_dsis(source, rows, cols)
    got = got.numpy() if kind == "torch" else got
    assert got.shape == (4, 20, 7, 7) and got.dtype == np.float32
    for k, (h, w) in enumerate(zip(rows, cols)):
        np.testing.assert_array_equal(got[k], reference_sub_dsi(dsi, h, w))
    assert not np.any(got[2]) and got[0].max() == 1.0
    near_first = sub_dsis(dsi, rows[:1], cols[:1], flip=False)
    np.testing.assert_array_equal(near_first[0], got[0][::-1])
    with pytest.raises(UsageError, match="at least 3 px inside"):
        sub_dsis(dsi, np.array([2]), np.array([10]))


def test_gt_undistortion_into_p0_sets_missing_depth_to_nan():
    raw = np.full((260, 346), 2.5, np.float32)
    out = undistort_depth(raw, MVSEC_LEFT)
    assert out.shape == (260, 346) and out.dtype == np.float32
    missing = np.isnan(out)
    assert 400 < missing.sum() < 600  # spec §6: about 490 zero border pixels for a constant map
    # Pixels whose source straddles the raw image's edge blend with the zeros outside (bilinear,
    # as in the authors' pipeline): a few hundred, all below the true depth.
    exact = np.isclose(out, 2.5, rtol=1e-6)
    assert exact.sum() > 0.99 * out.size
    assert np.all((out[~missing & ~exact] > 0) & (out[~missing & ~exact] < 2.5))
    raw[100:110, 150:160] = 0.0  # no GT in the raw map
    raw[50, 50] = np.nan
    out = undistort_depth(raw, MVSEC_LEFT)
    expected = cv2.fisheye.undistortImage(raw, MVSEC_LEFT.K, MVSEC_LEFT.D, Knew=MVSEC_LEFT.P)
    assert np.isnan(out).sum() > missing.sum() + 60
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected) | (expected == 0))
