"""DERD-Net's DSI builder (spec derd-net.md §2), calibration and poses, against direct implementations.

The builder is checked against a per-event ray-plane intersection written with plain loops (not
the homography + Eq. 15 route it takes), on both kernels, and on a rendered textured plane at a
known depth seen by a moving camera.
"""
from __future__ import annotations

import cv2
import h5py
import numpy as np
import pytest
import torch
import yaml

from fuse.errors import DataFormatError, MissingDataError, RecordingError
from fuse.methods.derdnet.calibration import read_mvsec_camchain, undistortion_table
from fuse.methods.derdnet.dsi import (
    ArrayEvents,
    DsiGrid,
    SweepCamera,
    Window,
    camera_dsi,
    fuse_stereo,
    inverse_depth_planes,
    mvsec_cameras,
    packet_starts,
    rigid_inverse,
    sliding_windows,
    stream_dsis,
)
from fuse.methods.derdnet.poses import Trajectory, read_mvsec_poses

BACKENDS = ["numba", "torch"]


def pose(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    T = np.eye(4)
    T[:3, :3] = cv2.Rodrigues(np.asarray(rotation, dtype=np.float64))[0]
    T[:3, 3] = translation
    return T


def reference_dsi(events: np.ndarray, camera: SweepCamera, T_rv_w: np.ndarray, grid: DsiGrid,
                  packet_size: int) -> np.ndarray:
    """Spec §2.5 per event: the event's ray (pose at its packet's middle event) cut with every
    plane Z = z_i of the reference view, projected by the virtual camera, voted bilinearly."""
    fx, fy, cx, cy = camera.pinhole
    K_ev_inv = np.linalg.inv(np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]]))
    out = np.zeros((grid.num_planes, grid.height, grid.width))
    start = 0
    while start + packet_size < len(events):
        T_rv_ev = T_rv_w @ camera.trajectory.at(events[start + packet_size // 2, 0])
        for e in range(start, start + packet_size):
            u, v = camera.table[int(events[e, 2]) * camera.width + int(events[e, 1])]
            ray = T_rv_ev[:3, :3] @ K_ev_inv @ np.array([u, v, 1.0])
            centre = T_rv_ev[:3, 3]
            for i, z in enumerate(grid.depths):
                X = centre + ray * (z - centre[2]) / ray[2]
                x, y = grid.fx * X[0] / X[2] + grid.cx, grid.fy * X[1] / X[2] + grid.cy
                if x >= 0 and y >= 0 and int(x) + 1 < grid.width and int(y) + 1 < grid.height:
                    a, b = x - int(x), y - int(y)
                    out[i, int(y), int(x)] += (1 - a) * (1 - b)
                    out[i, int(y), int(x) + 1] += a * (1 - b)
                    out[i, int(y) + 1, int(x)] += (1 - a) * b
                    out[i, int(y) + 1, int(x) + 1] += a * b
        start += packet_size
    return out


def tiny_scene(n_events: int = 43, seed: int = 0) -> tuple[np.ndarray, SweepCamera, DsiGrid, np.ndarray]:
    """12 x 9 sensor, 5 planes, a lookup table off the identity, event camera intrinsics unlike the virtual camera's."""
    rng = np.random.default_rng(seed)
    width, height = 12, 9
    events = np.stack([np.sort(rng.uniform(0.1, 0.9, n_events)), rng.integers(0, width, n_events),
                       rng.integers(0, height, n_events), rng.choice([-1.0, 1.0], n_events)], axis=1)
    ys, xs = np.mgrid[0:height, 0:width]
    table = (np.stack([xs.ravel(), ys.ravel()], 1) + rng.uniform(-0.3, 0.3, (width * height, 2))).astype(np.float32)
    times = np.array([0.0, 0.4, 1.0])
    poses = np.stack([pose(rng.normal(0, 0.05, 3), rng.normal(0, 0.08, 3)) for _ in times])
    camera = SweepCamera(ArrayEvents(events), table, Trajectory.from_poses(times, poses), (10.0, 10.5, 5.6, 4.1),
                         width, height)
    grid = DsiGrid(width, height, 9.5, 9.5, 5.5, 4.0, inverse_depth_planes(1.0, 3.0, 5))
    T_rv_w = rigid_inverse(pose([0.01, -0.02, 0.03], [0.02, 0.01, -0.03]))
    return events, camera, grid, T_rv_w


def as_numpy(volume) -> np.ndarray:
    return volume.numpy() if isinstance(volume, torch.Tensor) else volume


# ---- depth planes and windows ----

def test_inverse_depth_planes_far_to_near_uniform_in_inverse_depth():
    z = inverse_depth_planes(1.0, 6.5, 100)
    assert z[0] == pytest.approx(6.5, rel=1e-6) and z[-1] == pytest.approx(1.0085, abs=1e-4)
    assert np.all(np.diff(z) < 0)
    np.testing.assert_allclose(np.diff(1 / z), (1 - 1 / 6.5) / 100, rtol=1e-4)


def test_sliding_windows_follow_the_mvsec_config():
    windows = sliding_windows(10.0, 65.0, 1.0, 0.05)
    assert len(windows) == 1081  # spec §2.1, flying1
    assert (windows[0].start, windows[0].stop, windows[0].t_ref, windows[0].name) == (10.0, 11.0, 10.5, "10.500000")
    assert windows[-1].stop <= 65.0
    forward = sliding_windows(10.0, 12.0, 1.0, 0.5, forward_looking=True)
    assert [w.t_ref for w in forward] == [11.0, 11.5, 12.0]


# ---- the builder against the per-event reference ----

@pytest.mark.parametrize("backend", BACKENDS)
def test_camera_dsi_equals_per_event_reference(backend):
    events, camera, grid, T_rv_w = tiny_scene()
    input_events = torch.from_numpy(events) if backend == "torch" else events
    built = camera_dsi(input_events, camera, T_rv_w, grid, packet_size=8, backend=backend)
    assert built.packets == 5  # 43 events: packets start at 0, 8, ..., 32; the trailing 3 are dropped
    volume = as_numpy(built.volume)
    assert volume.dtype == np.float32 and volume.shape == (5, 9, 12)
    expected = reference_dsi(events, camera, T_rv_w, grid, packet_size=8)
    assert expected.sum() > 50  # most votes land inside the tiny grid
    np.testing.assert_allclose(volume, expected, atol=1e-5)


@pytest.mark.parametrize("n_events, packets", [(7, 0), (8, 0), (9, 1), (16, 1), (17, 2)])
def test_packets_are_taken_while_start_plus_size_is_below_n(n_events, packets):
    events, camera, grid, T_rv_w = tiny_scene(n_events)
    built = camera_dsi(events, camera, T_rv_w, grid, packet_size=8)
    assert built.packets == packets
    np.testing.assert_allclose(built.volume, reference_dsi(events, camera, T_rv_w, grid, 8), atol=1e-5)


def test_skip_mode_drops_packets_as_the_cpp_retry_loop():
    times = np.linspace(0.0, 1.0, 200)
    trajectory = Trajectory.from_poses([0.3, 0.8], np.stack([np.eye(4), np.eye(4)]))
    expected, start = [], 0
    while start + 16 < len(times):  # evaluateDSI: no pose at the middle event -> move on one event
        if trajectory.covers(times[start + 8]):
            expected.append(start)
            start += 16
        else:
            start += 1
    got = packet_starts(times, trajectory, 16, "skip", "w")
    assert got.tolist() == expected and len(expected) > 3
    with pytest.raises(RecordingError, match="needs a pose at t=0.040201"):
        packet_starts(times, trajectory, 16, "raise", "w")


# ---- streaming, short windows, poses not covering a window, stereo ----

def test_stream_uses_left_pose_at_mid_window_and_matches_camera_dsi():
    events, camera, grid, _ = tiny_scene(60)
    window = Window(0, 0.0, 1.0, 0.5)
    frame = next(stream_dsis([window], 0.0, camera, grid, packet_size=8))
    T_rv_w = rigid_inverse(camera.trajectory.at(0.5))
    np.testing.assert_array_equal(frame.dsi, camera_dsi(events, camera, T_rv_w, grid, packet_size=8).volume)
    assert frame.packets == (7,) and not frame.short and frame.cameras[0] is frame.dsi


def test_window_with_too_few_events_gives_zeros_or_is_skipped():
    _, camera, grid, _ = tiny_scene(60)
    few = Window(0, 0.0, 0.15, 0.1)
    assert 0 < len(camera.events.between(0.0, 0.15)) <= 8  # no complete packet of 8
    frame = next(stream_dsis([few], 0.0, camera, grid, camera, packet_size=8))
    assert frame.short and frame.packets[0] == 0
    assert not np.any(frame.dsi) and not np.any(frame.cameras[0])
    assert list(stream_dsis([few], 0.0, camera, grid, packet_size=8, short_window="skip")) == []


def test_window_not_covered_by_poses_raises_naming_the_window():
    _, camera, grid, _ = tiny_scene(60)
    late = Window(3, 0.5, 1.5, 1.0)  # reference time at the last pose: not covered (t < t_last)
    with pytest.raises(RecordingError, match=r"window 3 .*reference time t=1\.000000 s outside the poses"):
        next(stream_dsis([late], 0.0, camera, grid, packet_size=8))
    short = Trajectory.from_poses([0.0, 0.6], np.stack([np.eye(4), np.eye(4)]), source="poses.h5")
    camera = SweepCamera(camera.events, camera.table, short, camera.pinhole, camera.width, camera.height)
    with pytest.raises(RecordingError, match=r"poses.h5: window 0 .*needs a pose at t=0\.6"):
        next(stream_dsis([Window(0, 0.0, 1.0, 0.3)], 0.0, camera, grid, packet_size=8))
    frame = next(stream_dsis([Window(0, 0.0, 1.0, 0.3)], 0.0, camera, grid, packet_size=8, missing_pose="skip"))
    assert 0 < frame.packets[0] < 7


@pytest.mark.parametrize("backend", BACKENDS)
def test_stereo_fusion_is_the_harmonic_mean_and_symmetric(backend):
    events, camera, grid, T_rv_w = tiny_scene(60)
    other = tiny_scene(60, seed=1)[1]
    left = camera_dsi(events, camera, T_rv_w, grid, packet_size=8, backend=backend).volume
    right = camera_dsi(other.events.between(0, 1), other, T_rv_w, grid, packet_size=8, backend=backend).volume
    fused, swapped = fuse_stereo(left, right), fuse_stereo(right, left)
    assert as_numpy(fused).dtype == np.float32
    np.testing.assert_array_equal(as_numpy(fused), as_numpy(swapped))
    a, b = as_numpy(left).astype(np.float64), as_numpy(right).astype(np.float64)
    np.testing.assert_allclose(as_numpy(fused), 2 * a * b / (a + b + 0.1), rtol=1e-6)
    frame = next(stream_dsis([Window(0, 0.0, 1.0, 0.5)], 0.0, camera, grid, other, packet_size=8, backend=backend))
    np.testing.assert_allclose(as_numpy(frame.dsi), as_numpy(fuse_stereo(*frame.cameras)), rtol=0, atol=0)


# ---- a rendered textured plane at a known depth ----

def render_events(pose_at, depth: float, width: int, height: int, f: float, steps: int = 300,
                  contrast: float = 0.1) -> np.ndarray:
    """Events of a fronto-parallel textured plane Z = depth (world frame) seen by a pinhole camera
    with poses ``pose_at(t)``, t in [0, 1]: a pixel fires each time its log intensity moves by
    ``contrast`` from its last event's level (times spread inside each render step)."""
    rng = np.random.default_rng(0)
    texture = np.ones((512, 512), np.float32)
    for (u, v), r in zip(rng.uniform(0, 512, (40, 2)), rng.uniform(20, 35, 40)):  # dark discs, 4-8 px wide
        cv2.circle(texture, (int(u), int(v)), int(r), 0.2, -1)
    texture = cv2.GaussianBlur(texture, (0, 0), 3)
    extent = 1.6  # the texture spans [-extent, extent] m in X and Y
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    rays = np.stack([(xs - (width - 1) / 2) / f, (ys - (height - 1) / 2) / f, np.ones_like(xs)], -1)

    def log_image(T: np.ndarray) -> np.ndarray:
        d = rays @ T[:3, :3].T
        scale = (depth - T[2, 3]) / d[..., 2]
        X, Y = T[0, 3] + scale * d[..., 0], T[1, 3] + scale * d[..., 1]
        to_texel = lambda c: ((c + extent) / (2 * extent) * 511).astype(np.float32)  # noqa: E731
        return np.log(cv2.remap(texture, to_texel(X), to_texel(Y), cv2.INTER_LINEAR))

    level = log_image(pose_at(0.0))
    rows = []
    for step in range(1, steps + 1):
        t = step / steps
        change = log_image(pose_at(t)) - level
        count = np.floor(np.abs(change) / contrast).astype(int)
        for y, x in zip(*np.nonzero(count)):
            n = count[y, x]
            times = t - (1 - np.arange(1, n + 1) / (n + 1)) / steps
            rows += [(tt, x, y, np.sign(change[y, x])) for tt in times]
        level += np.sign(change) * count * contrast
    events = np.array(rows)
    return events[np.argsort(events[:, 0], kind="stable")], log_image(pose_at(0.5))


def test_rendered_plane_arg_max_is_within_one_plane_of_the_truth():
    width, height, f = 64, 48, 60.0
    depths = inverse_depth_planes(1.0, 5.0, 12)  # neighbouring planes ~1 px of parallax apart
    truth = 6

    def pose_at(t: float) -> np.ndarray:  # a circle in X-Y, some forward motion and a wobble
        a = 2 * np.pi * t
        return pose([0.02 * np.sin(a), 0.02 * np.cos(a), 0.01 * np.sin(a)],
                    [0.3 * np.cos(a), 0.3 * np.sin(a), 0.05 * np.sin(2 * a)])

    events, reference = render_events(pose_at, depths[truth], width, height, f)
    times = np.linspace(-0.01, 1.01, 103)
    trajectory = Trajectory.from_poses(times, np.stack([pose_at(t) for t in times]))
    ys, xs = np.mgrid[0:height, 0:width]
    table = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.float32)
    c = ((width - 1) / 2, (height - 1) / 2)
    camera = SweepCamera(ArrayEvents(events), table, trajectory, (f, f, *c), width, height)
    grid = DsiGrid(width, height, f, f, *c, depths)
    dsi = next(stream_dsis([Window(0, 0.0, 1.0, 0.5)], 0.0, camera, grid)).dsi

    gradient = np.hypot(cv2.Sobel(reference, cv2.CV_64F, 1, 0), cv2.Sobel(reference, cv2.CV_64F, 0, 1))
    textured = np.zeros_like(gradient, bool)
    textured[3:-3, 3:-3] = True
    textured &= gradient > 0.7 * gradient.max()  # the discs' edges in the reference view
    assert textured.sum() > 150
    hits = np.abs(dsi.argmax(axis=0)[textured] - truth) <= 1
    assert hits.mean() >= 0.95, f"{hits.mean():.3f} of {textured.sum()} textured pixels within one plane"


# ---- calibration ----

MVSEC_CAMCHAIN = {
    "cam0": {
        "resolution": [346, 260], "distortion_model": "equidistant", "camera_model": "pinhole",
        "intrinsics": [226.38018519795807, 226.15002947047415, 173.6470807871759, 133.73271487507847],
        "distortion_coeffs": [-0.048031442223833355, 0.011330957517194437, -0.055378166304281135,
                              0.021500973881459395],
        "projection_matrix": [[199.6530123165822, 0.0, 177.43276376280926, 0.0],
                              [0.0, 199.6530123165822, 126.81215684365904, 0.0], [0.0, 0.0, 1.0, 0.0]],
    },
    "cam1": {
        "resolution": [346, 260], "distortion_model": "equidistant", "camera_model": "pinhole",
        "intrinsics": [226.0181418548734, 225.7869434267677, 174.5433576736815, 124.21627572590607],
        "distortion_coeffs": [-0.04846669832871334, 0.010092844338123635, -0.04293073765014637,
                              0.005194706897326005],
        "projection_matrix": [[199.6530123165822, 0.0, 177.43276376280926, -19.941771812941038],
                              [0.0, 199.6530123165822, 126.81215684365904, 0.0], [0.0, 0.0, 1.0, 0.0]],
        "T_cn_cnm1": [[0.9999285439274112, 0.011088072985503046, -0.004467849222081981, -0.09988137641750752],
                      [-0.011042817783611191, 0.9998887260774646, 0.01002953830336461, -0.0003927067773089277],
                      [0.004578560319692358, -0.009979483987103495, 0.9999397215256256, 1.8880107752680777e-06],
                      [0.0, 0.0, 0.0, 1.0]],
    },
}


@pytest.fixture
def camchain(tmp_path):
    path = tmp_path / "camchain-imucam-indoor_flying.yaml"
    path.write_text(yaml.safe_dump(MVSEC_CAMCHAIN))
    return path


def test_camchain_is_read_with_p1_replaced_by_p0(camchain):
    calib = read_mvsec_camchain(camchain)
    assert calib.left.pinhole == (199.6530123165822, 199.6530123165822, 177.43276376280926, 126.81215684365904)
    np.testing.assert_array_equal(calib.right.P, calib.left.P)
    assert calib.right.K[0, 0] == 226.0181418548734 and calib.left.D[3] == 0.021500973881459395
    assert calib.baseline == pytest.approx(0.09988, abs=1e-5)
    grid = DsiGrid.for_camera(calib.left)
    assert (grid.width, grid.height, grid.num_planes, grid.fy) == (346, 260, 100, calib.left.P[0, 0])


@pytest.mark.parametrize("keys", [("cam1", "T_cn_cnm1"), ("cam0", "projection_matrix"), ("cam1", "distortion_coeffs")])
def test_camchain_missing_key_names_file_and_key(tmp_path, keys):
    doc = yaml.safe_load(yaml.safe_dump(MVSEC_CAMCHAIN))
    del doc[keys[0]][keys[1]]
    path = tmp_path / "broken.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(DataFormatError, match=rf"broken.yaml: missing key '{'.'.join(keys)}'"):
        read_mvsec_camchain(path)
    with pytest.raises(MissingDataError, match="not found"):
        read_mvsec_camchain(tmp_path / "absent.yaml")


def test_undistortion_table_maps_raw_pixels_into_p0(camchain):
    calib = read_mvsec_camchain(camchain)
    for camera in (calib.left, calib.right):
        table = undistortion_table(camera)
        assert table.shape == (260 * 346, 2) and table.dtype == np.float32
        x, y = 300, 17
        expected = cv2.fisheye.undistortPoints(np.array([[[x, y]]], np.float32), camera.K, camera.D, R=np.eye(3),
                                               P=camera.P)[0, 0]
        np.testing.assert_array_equal(table[y * 346 + x], expected)
        # Back through the fisheye model, the table returns to the raw pixels.
        fx, fy, cx, cy = camera.pinhole
        normalized = ((table - [cx, cy]) / [fx, fy]).astype(np.float64)[None]
        raw = cv2.fisheye.distortPoints(normalized, camera.K, camera.D)[0]
        ys, xs = np.mgrid[0:260, 0:346]
        np.testing.assert_allclose(raw, np.stack([xs.ravel(), ys.ravel()], 1), atol=2e-3)


def test_mvsec_cameras_put_the_right_camera_at_t_left_right_inverse(camchain):
    calib = read_mvsec_camchain(camchain)
    times = np.array([0.0, 1.0])
    trajectory = Trajectory.from_poses(times, np.stack([pose([0, 0, 0], [0, 0, 0]), pose([0, 0.1, 0], [1, 0, 0])]))
    empty = ArrayEvents(np.zeros((0, 4)))
    left, right = mvsec_cameras(calib, empty, empty, trajectory)
    np.testing.assert_allclose(right.trajectory.T_world_cam[1],
                               trajectory.T_world_cam[1] @ np.linalg.inv(calib.T_right_left), atol=1e-12)
    assert right.pinhole == left.pinhole
    assert not np.array_equal(right.table, left.table)


# ---- poses ----

def test_poses_interpolate_translation_linearly_and_rotation_by_slerp():
    axis = np.array([1.0, 2.0, 2.0]) / 3
    T0, T1 = pose(axis * 0.3, [0, 0, 0]), pose(axis * 2.9, [1.0, -2.0, 4.0])
    trajectory = Trajectory.from_poses([2.0, 4.0], np.stack([T0, T1]))
    for alpha in (0.0, 0.25, 0.5, 0.9):
        T = trajectory.at(2.0 + 2.0 * alpha)
        np.testing.assert_allclose(T[:3, 3], alpha * np.array([1.0, -2.0, 4.0]), atol=1e-12)
        np.testing.assert_allclose(T[:3, :3], pose(axis * (0.3 + 2.6 * alpha), [0, 0, 0])[:3, :3], atol=1e-12)
    # Shorter arc: from +170 deg to -170 deg about z goes through 180, not through 0.
    turn = Trajectory.from_poses([0, 1], np.stack([pose([0, 0, np.radians(170)], [0, 0, 0]),
                                                   pose([0, 0, np.radians(-170)], [0, 0, 0])]))
    np.testing.assert_allclose(turn.at(0.5)[:3, :3], pose([0, 0, np.pi], [0, 0, 0])[:3, :3], atol=1e-12)


def test_pose_coverage_excludes_the_last_pose_time():
    trajectory = Trajectory.from_poses([3.0, 1.0, 2.0, 2.0], np.stack([pose([0, 0, 0], [k, 0, 0]) for k in range(4)]))
    assert trajectory.times.tolist() == [1.0, 2.0, 3.0]  # sorted; the repeated time keeps its first pose
    assert trajectory.at(2.0)[0, 3] == 2.0
    assert trajectory.covers(np.array([0.99, 1.0, 2.99, 3.0])).tolist() == [False, True, True, False]
    with pytest.raises(RecordingError, match="no pose at t=3.000000"):
        trajectory.at(3.0)
    assert trajectory.trimmed(1.5, 2.5).times.tolist() == [2.0, 3.0]


def test_mvsec_poses_are_read_from_the_gt_file(tmp_path):
    path = tmp_path / "indoor_flying1_gt.hdf5"
    with h5py.File(path, "w") as handle:
        handle["davis/left/pose"] = np.stack([pose([0, 0, 0], [k, 0, 0]) for k in range(3)])
        handle["davis/left/pose_ts"] = np.array([10.0, 10.01, 10.02])
    trajectory = read_mvsec_poses(path)
    assert trajectory.at(10.015)[0, 3] == pytest.approx(1.5)
    with pytest.raises(RecordingError, match="missing dataset 'davis/right/pose'"):
        read_mvsec_poses(path, camera="right")
