"""Stage-2 corruptions (spec §5, upstream parameters), the two extra degradations and the registry."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from fuse.data.degradations import (
    DEGRADATIONS,
    ImageCorruption,
    LowLight,
    MotionBlur,
    VoxelCorruption,
    build_degradation,
    gaussian_blur_region,
    motion_blur_kernel,
    random_regions,
)

H, W = 50, 70


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(H, W, 3), dtype=np.uint8)


def _coverage(regions: list[tuple[slice, slice]]) -> np.ndarray:
    """How many rectangles cover each pixel."""
    count = np.zeros((H, W), dtype=int)
    for region in regions:
        count[region] += 1
    return count


def _union(regions: list[tuple[slice, slice]]) -> np.ndarray:
    return _coverage(regions) > 0


def _regions_drawn(seed: int) -> list[tuple[slice, slice]]:
    """The rectangles a corruption with no brightness step draws from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    rng.random()  # the "apply rectangles?" draw
    return random_regions(H, W, 3, 0.2, rng)


def test_stage2_is_deterministic_for_a_seed() -> None:
    degrade = build_degradation("fuse_stage2", image={"region_prob": 1.0}, voxel={"region_prob": 1.0})
    image, voxel = _image(), np.random.default_rng(1).normal(size=(3, H, W)).astype(np.float32)
    a = degrade(image, voxel, np.random.default_rng(5))
    b = degrade(image, voxel, np.random.default_rng(5))
    c = degrade(image, voxel, np.random.default_rng(6))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_brightness_factor_stays_in_range() -> None:
    flat = np.full((H, W, 3), 100, dtype=np.uint8)
    corrupt = ImageCorruption(region_prob=0.0)
    values = []
    for seed in range(60):
        out = corrupt(flat, np.random.default_rng(seed))
        assert out.dtype == np.uint8
        assert len(np.unique(out)) == 1
        values.append(int(out[0, 0, 0]))
    assert min(values) >= 50 and max(values) <= 150
    assert min(values) < 70 and max(values) > 130


def test_brightness_rounds_and_clips() -> None:
    image = np.array([[[0, 101, 250]]], dtype=np.uint8)
    corrupt = ImageCorruption(brightness_range=(1.5, 1.5), region_prob=0.0)
    np.testing.assert_array_equal(corrupt(image, np.random.default_rng(0)), [[[0, 152, 255]]])


@pytest.mark.parametrize("seed", range(5))
def test_rectangles_have_upstream_size_and_stay_inside(seed: int) -> None:
    regions = random_regions(H, W, 3, 0.2, np.random.default_rng(seed))
    assert len(regions) == 3
    for rows, cols in regions:
        assert 0 <= rows.start < rows.stop <= H and 0 <= cols.start < cols.stop <= W
        # cv2.rectangle paints both corners: int(0.2 H) + 1 rows unless clipped at the border
        assert rows.stop - rows.start == int(0.2 * H) + 1 or rows.stop == H
        assert cols.stop - cols.start == int(0.2 * W) + 1 or cols.stop == W


@pytest.mark.parametrize("effect", ["mask", "blur", "overexpose"])
def test_effects_are_confined_to_the_rectangles(effect: str) -> None:
    image = _image(3)
    for seed in range(5):
        corrupt = ImageCorruption(brightness_range=None, region_prob=1.0, effects=(effect,))
        out = corrupt(image, np.random.default_rng(seed))
        inside = _union(_regions_drawn(seed))
        changed = np.any(out != image, axis=2)
        assert not changed[~inside].any(), "pixels outside every rectangle changed"
        assert changed[inside].mean() > 0.5
        if effect == "mask":
            assert (out[inside] == 0).all()


def test_overexposure_uses_convert_scale_abs() -> None:
    image = _image(4)
    corrupt = ImageCorruption(brightness_range=None, region_prob=1.0, effects=("overexpose",))
    out = corrupt(image, np.random.default_rng(0))
    once = _coverage(_regions_drawn(0)) == 1  # overlaps are over-exposed twice
    expected = cv2.convertScaleAbs(image, alpha=2.5, beta=200)
    np.testing.assert_array_equal(out[once], expected[once])


def test_no_rectangles_when_probability_is_zero() -> None:
    image = _image()
    out = ImageCorruption(brightness_range=None, region_prob=0.0)(image, np.random.default_rng(0))
    np.testing.assert_array_equal(out, image)


@pytest.mark.parametrize("dtype,channels", [(np.uint8, 3), (np.float32, 5), (np.float32, 1)])
def test_region_blur_equals_full_blur_inside(dtype: type, channels: int) -> None:
    rng = np.random.default_rng(0)
    array = (rng.random((H, W, channels)) * 200).astype(dtype)
    for region in [(slice(0, 11), slice(0, 15)), (slice(20, 31), slice(30, 45)), (slice(40, 50), slice(56, 70))]:
        out = gaussian_blur_region(array, region, 25, 2.0)
        full = cv2.GaussianBlur(array, (25, 25), 2.0).reshape(array.shape)
        np.testing.assert_allclose(out[region], full[region], atol=1e-5)
        outside = np.ones((H, W), dtype=bool)
        outside[region] = False
        np.testing.assert_array_equal(out[outside], array[outside])


def test_voxel_corruption_keeps_float_values_and_shape() -> None:
    voxel = np.random.default_rng(2).normal(size=(5, H, W)).astype(np.float32)
    out = VoxelCorruption(region_prob=1.0)(voxel, np.random.default_rng(0))
    assert out.shape == voxel.shape and out.dtype == np.float32
    inside = _union(_regions_drawn(0))
    np.testing.assert_array_equal(out[:, ~inside], voxel[:, ~inside])  # negatives survive (no uint8 cast)
    assert (out[:, inside] != voxel[:, inside]).any()


def test_voxel_effects_exclude_overexposure() -> None:
    with pytest.raises(ValueError):
        VoxelCorruption(effects=("overexpose",))


def test_low_light_darkens_adds_noise_and_is_seeded() -> None:
    flat = np.full((H, W, 3), 200, dtype=np.uint8)
    low = LowLight(darken=0.25, photons_at_white=400.0, read_noise=2.0)
    out = low(flat, np.random.default_rng(0))
    assert out.dtype == np.uint8
    assert abs(out.mean() - 50.0) < 2.0
    assert out.std() > 1.0  # shot + read noise
    np.testing.assert_array_equal(out, low(flat, np.random.default_rng(0)))


def test_low_light_darken_range_is_sampled() -> None:
    flat = np.full((H, W, 3), 200, dtype=np.uint8)
    means = [LowLight(darken=(0.1, 0.5))(flat, np.random.default_rng(s)).mean() for s in range(20)]
    assert 15 < min(means) and max(means) < 105 and max(means) - min(means) > 20


@pytest.mark.parametrize(("angle", "axis"), [(0.0, 0), (90.0, 1)])
def test_motion_blur_kernel_is_a_normalized_line(angle: float, axis: int) -> None:
    kernel = motion_blur_kernel(5, angle)
    assert kernel.shape == (5, 5)
    assert kernel.sum() == pytest.approx(1.0)
    line = kernel[2, :] if axis == 0 else kernel[:, 2]
    np.testing.assert_allclose(line, np.full(5, 0.2), atol=1e-7)


def test_motion_blur_smears_along_its_direction_only() -> None:
    image = np.zeros((H, W, 3), dtype=np.uint8)
    image[:, 35] = 255  # a vertical stripe
    out = MotionBlur(length=9, angle=0.0)(image, np.random.default_rng(0))
    assert (out[:, 31:40] > 0).all()  # spread horizontally over the kernel length
    np.testing.assert_array_equal(out[:, :30], 0)
    constant = np.full((H, W, 3), 77, dtype=np.uint8)
    np.testing.assert_array_equal(MotionBlur(length=7, angle=(0, 180))(constant, np.random.default_rng(1)), constant)


def test_registry_names_and_errors() -> None:
    assert set(DEGRADATIONS) == {"none", "fuse_stage2", "low_light", "motion_blur", "night"}
    assert build_degradation(None).is_identity and build_degradation("none").is_identity
    image, voxel = _image(), np.ones((3, H, W), dtype=np.float32)
    for name in ("fuse_stage2", "low_light", "motion_blur"):
        out_image, out_voxel = build_degradation(name)(image, voxel, np.random.default_rng(0))
        assert out_image.shape == image.shape and out_image.dtype == np.uint8
        assert out_voxel.shape == voxel.shape
    with pytest.raises(ValueError, match="fuse_stage2"):
        build_degradation("fog")


def test_registry_accepts_yaml_style_lists() -> None:
    degradation = build_degradation("low_light", darken=[0.1, 0.2])
    assert degradation.image == LowLight(darken=(0.1, 0.2))
    stage2 = build_degradation("fuse_stage2", image={"brightness_range": [1.0, 1.0]})
    assert stage2.image.brightness_range == (1.0, 1.0)


def test_combined_degradations_apply_in_order_and_night_is_random() -> None:
    from fuse.data.degradations import build_degradation

    image = np.full((40, 60, 3), 200, np.uint8)
    voxel = np.ones((3, 40, 60), np.float32)
    night = build_degradation("night")
    outcomes = [night(image, voxel, np.random.default_rng(seed))[0].mean() for seed in range(40)]
    dark = [m for m in outcomes if m < 120]
    assert 8 < len(dark) < 32  # p = 0.5 per sample
    assert sum(m == 200 for m in outcomes) == 40 - len(dark)
    combined = build_degradation("fuse_stage2+night")
    stage2 = build_degradation("fuse_stage2")
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    image_a, _ = combined(image, voxel.copy(), rng_a)
    image_b = night.image(stage2.image(image, rng_b), rng_b)  # images first, then voxels
    assert np.array_equal(image_a, image_b)
