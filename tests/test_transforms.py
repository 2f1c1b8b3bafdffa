"""Resize geometry (DA-V2 "lower_bound"), interpolation kinds, normalization, crop and paired flip."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fuse.data.constants import IMAGENET_MEAN, IMAGENET_STD
from fuse.data.transforms import (
    SampleTransform,
    constrain_to_multiple_of,
    lower_bound_size,
    resize_depth,
    resize_voxel,
)


@pytest.mark.parametrize(
    ("height", "width", "size", "expected"),
    [
        (260, 346, 266, (266, 350)),  # MVSEC / DENSE sensor
        (256, 512, 266, (266, 532)),  # EventScape sensor
        (346, 260, 266, (350, 266)),  # portrait
        (260, 346, 518, (518, 686)),  # DA-V2's native size
        (480, 640, 266, (266, 350)),  # downscaling
        (266, 266, 266, (266, 266)),
        (100, 100, 266, (266, 266)),
    ],
)
def test_lower_bound_size_examples(height: int, width: int, size: int, expected: tuple[int, int]) -> None:
    assert lower_bound_size(height, width, size) == expected


def test_constrain_rounds_half_to_even_like_numpy() -> None:
    # DA-V2 uses np.round: 35/14 = 2.5 -> 2, 49/14 = 3.5 -> 4.
    assert constrain_to_multiple_of(35, 14) == 28
    assert constrain_to_multiple_of(49, 14) == 56
    # below min_val the ceiling is taken instead
    assert constrain_to_multiple_of(262.9, 14, min_val=266) == 266
    # above max_val the floor is taken (96.5 / 14 = 6.9 rounds up to 98 > 97)
    assert constrain_to_multiple_of(96.5, 14, max_val=97) == 84


@settings(max_examples=200, deadline=None)
@given(st.integers(20, 2000), st.integers(20, 2000), st.sampled_from([14, 28, 266, 518]))
def test_lower_bound_size_properties(height: int, width: int, size: int) -> None:
    new_h, new_w = lower_bound_size(height, width, size)
    assert new_h % 14 == 0 and new_w % 14 == 0
    assert new_h >= size and new_w >= size
    # the shorter side lands on the smallest multiple of 14 >= size; the other keeps the ratio
    short_in, long_in = sorted((height, width))
    short_out, long_out = (new_h, new_w) if height <= width else (new_w, new_h)
    assert short_out == -(-size // 14) * 14
    assert abs(long_out - long_in * size / short_in) <= 7 + 1e-6 * long_in


@pytest.mark.parametrize("bins", [1, 3, 5])
def test_resize_voxel_matches_per_bin_bicubic(bins: int) -> None:
    voxel = np.random.default_rng(0).normal(size=(bins, 13, 17)).astype(np.float32)
    out = resize_voxel(voxel, (28, 42))
    assert out.shape == (bins, 28, 42) and out.dtype == np.float32
    for b in range(bins):
        ref = cv2.resize(voxel[b], (42, 28), interpolation=cv2.INTER_CUBIC)
        np.testing.assert_allclose(out[b], ref, atol=1e-5)


def test_resize_depth_is_nearest_and_keeps_nan() -> None:
    depth = np.arange(12, dtype=np.float32).reshape(3, 4)
    depth[1, 1] = np.nan
    out = resize_depth(depth, (9, 12))
    finite = out[np.isfinite(out)]
    assert set(finite.tolist()) <= set(depth[np.isfinite(depth)].tolist())
    assert np.isnan(out).any()


def _coded_sample(height: int = 40, width: int = 50, bins: int = 3) -> dict[str, np.ndarray]:
    """Inputs whose values encode the pixel position, so crops and flips can be traced."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack([rows / height, cols / width, (rows + cols) / (height + width)], axis=2)
    voxel = np.stack([(cols + 1) * (b + 1) - rows for b in range(bins)]).astype(np.float32)
    depth = (rows * 1000 + cols + 1).astype(np.float32)
    return {"image": image, "voxel": voxel, "depth": depth}


def test_normalization_formulas() -> None:
    sample = _coded_sample()
    out = SampleTransform(train=False, resize=False)(sample, np.random.default_rng(0))
    expected_image = ((sample["image"] - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)
    np.testing.assert_allclose(out["image"], expected_image, rtol=1e-6, atol=1e-6)
    voxel = sample["voxel"]
    nz = voxel != 0
    expected_voxel = np.where(nz, (voxel - voxel[nz].mean()) / voxel[nz].std(), 0.0)
    np.testing.assert_allclose(out["voxel"], expected_voxel, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(out["depth"], sample["depth"])


def test_eval_resizes_inputs_but_not_depth() -> None:
    sample = _coded_sample(26, 34)
    out = SampleTransform(train=False, size=28)(sample, np.random.default_rng(0))
    assert out["image"].shape == (3, 28, 42)
    assert out["voxel"].shape == (3, 28, 42)
    assert out["depth"].shape == (26, 34)


def test_voxel_is_normalized_after_resizing() -> None:
    sample = _coded_sample(26, 34)
    out = SampleTransform(train=False, size=28)(sample, np.random.default_rng(0))
    nz = out["voxel"] != 0
    assert abs(out["voxel"][nz].mean()) < 1e-5
    assert abs(out["voxel"][nz].std() - 1.0) < 1e-5


def test_train_output_is_square_crop() -> None:
    sample = _coded_sample(26, 34)
    out = SampleTransform(train=True, size=28)(sample, np.random.default_rng(0))
    assert out["image"].shape == (3, 28, 28)
    assert out["voxel"].shape == (3, 28, 28)
    assert out["depth"].shape == (28, 28)
    assert all(v.flags.c_contiguous for v in out.values())


def test_crop_takes_the_same_window_everywhere() -> None:
    sample = _coded_sample()
    full = SampleTransform(train=False, resize=False)(sample, np.random.default_rng(0))
    origins = set()
    for seed in range(10):
        out = SampleTransform(train=True, size=28, resize=False, flip=False)(sample, np.random.default_rng(seed))
        code = int(out["depth"][0, 0]) - 1
        top, left = code // 1000, code % 1000
        origins.add((top, left))
        window = (slice(top, top + 28), slice(left, left + 28))
        np.testing.assert_array_equal(out["depth"], sample["depth"][window])
        np.testing.assert_array_equal(out["image"], full["image"][(slice(None), *window)])
        np.testing.assert_array_equal(out["voxel"], full["voxel"][(slice(None), *window)])
    assert len(origins) > 1


def test_flip_is_paired_and_happens_about_half_the_time() -> None:
    sample = _coded_sample()
    full = SampleTransform(train=False, resize=False)(sample, np.random.default_rng(0))
    flips = []
    for seed in range(40):
        out = SampleTransform(train=True, resize=False, crop=False)(sample, np.random.default_rng(seed))
        flipped = [not np.array_equal(out[k], full[k]) for k in ("image", "voxel", "depth")]
        assert len(set(flipped)) == 1, "image, voxel and depth must flip together"
        if flipped[0]:
            for key in ("image", "voxel", "depth"):
                np.testing.assert_array_equal(out[key], full[key][..., ::-1])
        flips.append(flipped[0])
    assert 8 < sum(flips) < 32


def test_same_generator_seed_same_output() -> None:
    sample = _coded_sample(26, 34)
    transform = SampleTransform(train=True, size=28)
    a = transform(sample, np.random.default_rng(7))
    b = transform(sample, np.random.default_rng(7))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_crop_larger_than_input_is_an_error() -> None:
    with pytest.raises(ValueError, match="cannot crop"):
        SampleTransform(train=True, size=64, resize=False)(_coded_sample(40, 50), np.random.default_rng(0))
