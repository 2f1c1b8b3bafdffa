"""Synthetic MVSEC-layout recordings: file layout, timing, content and determinism."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from fuse.demo.synthetic import (
    CAMERA_HEIGHT,
    MVSEC_HEIGHT,
    MVSEC_WIDTH,
    NEAR,
    Camera,
    Recording,
    RecordingConfig,
    Renderer,
    Scene,
    generate_recording,
    save_recording,
    write_recording,
)

SMALL = dict(frames=6, height=130, width=173)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def day() -> Recording:
    return generate_recording(RecordingConfig(seed=0, **SMALL), workers=2)


@pytest.fixture(scope="module")
def night() -> Recording:
    return generate_recording(RecordingConfig(seed=0, night=True, **SMALL), workers=2)


@pytest.fixture(scope="module")
def full_size_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_recording(tmp_path_factory.mktemp("full"), "rec", frames=3, seed=2)


def _datasets(path: Path) -> dict[str, tuple]:
    """(dtype, shape, chunks, compression) of every dataset, by path."""
    found: dict[str, tuple] = {}

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            found[name] = (obj.dtype, obj.shape, obj.chunks, obj.compression)

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return found


def test_files_have_the_mvsec_layout_and_dtypes(full_size_files: tuple[Path, Path]) -> None:
    data_path, gt_path = full_size_files
    assert data_path.name == "rec_data.hdf5" and gt_path.name == "rec_gt.hdf5"
    assert sorted(p.name for p in data_path.parent.iterdir()) == ["rec_data.hdf5", "rec_gt.hdf5"]  # no temp files
    data, gt = _datasets(data_path), _datasets(gt_path)
    assert set(data) == {"davis/left/events", "davis/left/image_raw", "davis/left/image_raw_ts",
                         "davis/left/image_raw_event_inds"}
    assert set(gt) == {"davis/left/depth_image_rect", "davis/left/depth_image_rect_ts",
                       "davis/left/depth_image_raw", "davis/left/depth_image_raw_ts"}
    n_events, n_images = data["davis/left/events"][1][0], data["davis/left/image_raw"][1][0]
    assert data["davis/left/events"][:2] == (np.dtype("float64"), (n_events, 4))
    assert data["davis/left/image_raw"][:2] == (np.dtype("uint8"), (n_images, MVSEC_HEIGHT, MVSEC_WIDTH))
    assert data["davis/left/image_raw_ts"][:2] == (np.dtype("float64"), (n_images,))
    assert data["davis/left/image_raw_event_inds"][:2] == (np.dtype("int64"), (n_images,))
    for name in ("depth_image_rect", "depth_image_raw"):
        assert gt[f"davis/left/{name}"][:2] == (np.dtype("float32"), (3, MVSEC_HEIGHT, MVSEC_WIDTH))
        assert gt[f"davis/left/{name}_ts"][:2] == (np.dtype("float64"), (3,))
    for dtype, shape, chunks, compression in [*data.values(), *gt.values()]:
        assert chunks is not None and compression is None
    assert n_events > 1000 and n_images > 3


def test_raw_depth_matches_rect_depth(full_size_files: tuple[Path, Path]) -> None:
    with h5py.File(full_size_files[1], "r") as f:
        left = f["davis/left"]
        np.testing.assert_array_equal(left["depth_image_raw"][()], left["depth_image_rect"][()])
        np.testing.assert_array_equal(left["depth_image_raw_ts"][()], left["depth_image_rect_ts"][()])


def test_timestamps_are_sorted_and_aligned_like_mvsec(day: Recording) -> None:
    t = day.events[:, 2]
    assert np.all(np.diff(t) >= 0)
    assert t[0] >= day.config.t_start > 0
    assert np.all(np.diff(day.image_raw_ts) > 0) and np.all(np.diff(day.depth_image_rect_ts) > 0)
    np.testing.assert_allclose(np.diff(day.image_raw_ts), 1 / day.config.image_rate)
    np.testing.assert_allclose(np.diff(day.depth_image_rect_ts), 1 / day.config.depth_rate)
    for ts in day.depth_image_rect_ts:
        nearest = np.abs(day.image_raw_ts - ts).min()
        assert 0 < nearest <= 0.010  # offset from the images, as in MVSEC, but within 10 ms
        assert np.count_nonzero((t >= ts - 0.05) & (t < ts)) > 100  # a full 50 ms window of events
    inds = day.image_raw_event_inds
    assert np.all(np.diff(inds) >= 0) and inds[-1] < len(t)
    assert np.all(t[inds] >= day.image_raw_ts)
    assert np.all(t[inds[inds > 0] - 1] < day.image_raw_ts[inds > 0])


def test_events_lie_on_the_sensor_with_both_polarities(day: Recording) -> None:
    x, y, _, p = day.events.T
    assert np.array_equal(x, np.round(x)) and np.array_equal(y, np.round(y))
    assert x.min() >= 0 and x.max() <= day.camera.width - 1
    assert y.min() >= 0 and y.max() <= day.camera.height - 1
    assert set(np.unique(p)) == {-1.0, 1.0}
    assert 0.25 < np.mean(p > 0) < 0.75
    assert len(np.unique(x)) > day.camera.width // 2 and len(np.unique(y)) > day.camera.height // 2


def test_depth_is_nan_only_in_the_sky_and_in_range_elsewhere(day: Recording) -> None:
    depth = day.depth_image_rect
    cam, max_depth = day.camera, day.config.max_depth
    valid = depth[np.isfinite(depth)]
    assert valid.min() >= 1.5 and valid.max() <= max_depth
    assert valid.min() < 5.0 and valid.max() > 40.0  # spans the MVSEC evaluation range
    nan_rows = np.nonzero(np.isnan(depth).any(axis=(0, 2)))[0]
    # NaN above the horizon (sky) or just below it (ground farther than max_depth).
    assert nan_rows.max() < cam.cy + cam.fy * 1.65 / max_depth + 1
    assert np.isfinite(depth[:, -1, :]).all()  # the bottom row sees the road
    assert 0.05 < np.isnan(depth).mean() < 0.5


def _brute_force_depth(scene: Scene, camera: Camera, t: float) -> np.ndarray:
    """Camera-z depth of every pixel ray against every box (3-D slabs) and the ground."""
    x, z, yaw = scene.trajectory.pose(t)
    a = ((np.arange(camera.width) - camera.cx) / camera.fx)[None, :, None]
    b = ((np.arange(camera.height) - camera.cy) / camera.fy)[:, None, None]
    boxes = scene.boxes
    with np.errstate(divide="ignore", invalid="ignore"):
        dx, dy, dz = a * np.cos(yaw) + np.sin(yaw), -b, -a * np.sin(yaw) + np.cos(yaw)
        slabs = [((lo - origin) / d, (hi - origin) / d) for lo, hi, origin, d in (
            (boxes.x0, boxes.x1, x, dx), (0.0, boxes.top, CAMERA_HEIGHT, dy), (boxes.z0, boxes.z1, z, dz))]
        (x0, x1), (y0, y1), (z0, z1) = slabs
        enter = np.maximum(np.maximum(np.minimum(x0, x1), np.minimum(y0, y1)), np.minimum(z0, z1))
        leave = np.minimum(np.minimum(np.maximum(x0, x1), np.maximum(y0, y1)), np.maximum(z0, z1))
        hit = np.where((enter <= leave) & (enter > NEAR), enter, np.inf).min(axis=2)
        ground = np.where(b[..., 0] > 0, CAMERA_HEIGHT / b[..., 0], np.inf)
    return np.minimum(hit, ground)


def test_ray_caster_matches_brute_force_intersection() -> None:
    camera = Camera.mvsec_like(65, 87)
    scene = Scene.generate(seed=4, duration=3.0)
    renderer = Renderer(scene, camera, night=False)
    for t in (0.0, 1.3, 2.9):
        expected = _brute_force_depth(scene, camera, t)
        expected = np.where(expected <= 80.0, expected, np.nan)
        np.testing.assert_allclose(renderer.depth(t, 80.0), expected, rtol=1e-5)


def test_images_show_the_depth_structure(day: Recording) -> None:
    """Sky (no depth) is bright, and near road is darker than the far, fogged scene."""
    image = day.image_raw[np.abs(day.image_raw_ts[:, None] - day.depth_image_rect_ts).argmin(axis=0)]
    depth = day.depth_image_rect
    sky, near, far = np.isnan(depth), depth < 8.0, depth > 30.0
    assert image[sky].mean() > image[far].mean() > image[near].mean()


def test_same_seed_same_bytes_and_new_seed_new_scene(day: Recording, tmp_path: Path) -> None:
    config = RecordingConfig(seed=0, **SMALL)
    again = generate_recording(config, workers=1)
    for name in ("events", "image_raw", "image_raw_ts", "image_raw_event_inds", "depth_image_rect_ts"):
        np.testing.assert_array_equal(getattr(again, name), getattr(day, name))
    np.testing.assert_array_equal(again.depth_image_rect, day.depth_image_rect)
    paths_a = save_recording(day, tmp_path / "a", "rec")
    paths_b = save_recording(again, tmp_path / "b", "rec")
    for a, b in zip(paths_a, paths_b):
        assert a.read_bytes() == b.read_bytes()

    other = generate_recording(RecordingConfig(seed=1, **SMALL), workers=2)
    assert np.mean(other.image_raw[0] != day.image_raw[0]) > 0.5
    assert np.mean(np.isnan(other.depth_image_rect) != np.isnan(day.depth_image_rect)) > 0.01
    assert abs(len(other.events) - len(day.events)) > 0 or not np.array_equal(other.events[:100], day.events[:100])


def _relative_noise(images: np.ndarray) -> float:
    """High-frequency energy relative to brightness (sensor noise dominates it at night)."""
    ratios = []
    for image in images.astype(np.float32):
        detail = image - cv2.GaussianBlur(image, (0, 0), 1.5)
        ratios.append(detail.std() / max(image.mean(), 1.0))
    return float(np.mean(ratios))


def _pooled_counts(recording: Recording, block: int) -> np.ndarray:
    x, y = recording.events[:, 0].astype(int) // block, recording.events[:, 1].astype(int) // block
    shape = (recording.camera.height // block + 1, recording.camera.width // block + 1)
    return np.bincount(y * shape[1] + x, minlength=shape[0] * shape[1]).astype(float)


def test_night_images_are_dark_and_noisy_while_events_stay_informative(day: Recording, night: Recording) -> None:
    assert 8 <= night.image_raw.mean() <= 30
    assert day.image_raw.mean() > 4 * night.image_raw.mean()
    assert night.image_raw.std() < day.image_raw.std() / 2  # low contrast
    assert _relative_noise(night.image_raw) > 2 * _relative_noise(day.image_raw)
    np.testing.assert_array_equal(night.depth_image_rect, day.depth_image_rect)  # same scene
    assert 0.5 < len(night.events) / len(day.events) < 2.0
    # Night events fire where day events fire: same geometry, same motion.
    assert np.corrcoef(_pooled_counts(day, 8), _pooled_counts(night, 8))[0, 1] > 0.4


def test_events_follow_image_change(day: Recording) -> None:
    t = day.events[:, 2]
    block = 8
    changes, counts = [], []
    for j in range(len(day.image_raw) - 1):
        a, b = (np.log1p(day.image_raw[k].astype(np.float32)) for k in (j, j + 1))
        change = cv2.resize(np.abs(b - a), None, fx=1 / block, fy=1 / block, interpolation=cv2.INTER_AREA)
        window = (t >= day.image_raw_ts[j]) & (t < day.image_raw_ts[j + 1])
        x, y = day.events[window, 0].astype(int) // block, day.events[window, 1].astype(int) // block
        count = np.zeros(change.shape)
        np.add.at(count, (np.minimum(y, change.shape[0] - 1), np.minimum(x, change.shape[1] - 1)), 1)
        changes.append(change.ravel())
        counts.append(count.ravel())
    changes, counts = np.concatenate(changes), np.concatenate(counts)
    assert np.corrcoef(changes, counts)[0, 1] > 0.5
    calm = changes < np.quantile(changes, 0.25)
    busy = changes > np.quantile(changes, 0.75)
    assert counts[busy].mean() > 5 * counts[calm].mean()


def test_cli_writes_a_recording(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("make_synthetic", REPO / "scripts" / "make_synthetic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["--out", str(tmp_path), "--name", "cli", "--frames", "2", "--seed", "3", "--night",
            "--height", "65", "--width", "87", "--workers", "1"]
    assert module.main(argv) == 0
    with h5py.File(tmp_path / "cli_data.hdf5", "r") as f:
        assert f["davis/left/image_raw"].shape[1:] == (65, 87)
        assert f["davis/left/image_raw"][()].mean() < 30
    with h5py.File(tmp_path / "cli_gt.hdf5", "r") as f:
        assert f["davis/left/depth_image_rect"].shape == (2, 65, 87)
