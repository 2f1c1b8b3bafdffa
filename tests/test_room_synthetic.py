"""Synthetic indoor stereo recordings for DERD-Net (fuse.demo.room) and the MVSEC readers they feed."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from fuse.demo.room import (
    T_RIGHT_LEFT,
    Room,
    RoomRecording,
    RoomRenderer,
    generate_room,
    room_lenses,
    save_room,
)
from fuse.demo.synthetic import RecordingConfig
from fuse.errors import RecordingError
from fuse.events.mvsec import MvsecEvents
from fuse.methods.derdnet.calibration import read_mvsec_camchain, undistortion_table
from fuse.methods.derdnet.dsi import DsiGrid, Window, mvsec_cameras, rigid_inverse, stream_dsis
from fuse.methods.derdnet.poses import read_mvsec_poses
from fuse.methods.derdnet.selection import MAX_CONFIDENCE, PRESETS, select_pixels, undistort_depth

SEED = 1
HEIGHT, WIDTH = 130, 173  # half MVSEC size, same 346:260 aspect
FRAMES = 30  # 1.5 s: room for a 1 s DSI window around the middle depth frame
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def recording() -> RoomRecording:
    return generate_room(RecordingConfig(frames=FRAMES, seed=SEED, height=HEIGHT, width=WIDTH), workers=2)


@pytest.fixture(scope="module")
def files(recording: RoomRecording, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return save_room(recording, tmp_path_factory.mktemp("room"), "room")


def _datasets(path: Path) -> dict[str, tuple]:
    """(dtype, shape) of every dataset, by path."""
    found: dict[str, tuple] = {}

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            found[name] = (obj.dtype, obj.shape)

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return found


def test_files_have_the_mvsec_layout_and_dtypes(files: tuple[Path, Path, Path]) -> None:
    data_path, gt_path, calib_path = files
    assert sorted(p.name for p in data_path.parent.iterdir()) == ["room_calib.yaml", "room_data.hdf5", "room_gt.hdf5"]
    data, gt = _datasets(data_path), _datasets(gt_path)
    for side in ("left", "right"):
        n_events, n_images = data[f"davis/{side}/events"][1][0], data[f"davis/{side}/image_raw"][1][0]
        assert data[f"davis/{side}/events"] == (np.dtype("float64"), (n_events, 4))
        assert data[f"davis/{side}/image_raw"] == (np.dtype("uint8"), (n_images, HEIGHT, WIDTH))
        assert data[f"davis/{side}/image_raw_ts"] == (np.dtype("float64"), (n_images,))
        assert data[f"davis/{side}/image_raw_event_inds"] == (np.dtype("int64"), (n_images,))
        assert n_events > 50_000 and n_images > 60
    assert len(data) == 8
    for kind in ("rect", "raw"):
        assert gt[f"davis/left/depth_image_{kind}"] == (np.dtype("float32"), (FRAMES, HEIGHT, WIDTH))
        assert gt[f"davis/left/depth_image_{kind}_ts"] == (np.dtype("float64"), (FRAMES,))
    n_poses = gt["davis/left/pose"][1][0]
    assert gt["davis/left/pose"] == (np.dtype("float64"), (n_poses, 4, 4))
    assert gt["davis/left/pose_ts"] == (np.dtype("float64"), (n_poses,))
    assert len(gt) == 6

    calib = read_mvsec_camchain(calib_path)
    left, right, rect = room_lenses(HEIGHT, WIDTH)
    np.testing.assert_array_equal(calib.left.K, left.K)
    np.testing.assert_array_equal(calib.right.D, right.distortion)
    np.testing.assert_array_equal(calib.left.P[:, :3], rect.K)
    assert (calib.left.width, calib.left.height) == (WIDTH, HEIGHT)


def test_streams_are_sorted_dense_and_aligned_like_mvsec(recording: RoomRecording) -> None:
    for stream in (recording.left, recording.right):
        x, y, t, p = stream.events.T
        assert np.all(np.diff(t) >= 0) and set(np.unique(p)) == {-1.0, 1.0}
        assert x.min() >= 0 and x.max() <= WIDTH - 1 and y.min() >= 0 and y.max() <= HEIGHT - 1
        rate = len(t) / (t[-1] - t[0]) / (WIDTH * HEIGHT)
        assert 1.0 < rate < 20.0, f"{rate:.1f} events per pixel and second"
        inds = stream.image_raw_event_inds
        assert np.all(t[inds] >= stream.image_raw_ts) and np.all(t[inds[1:] - 1] < stream.image_raw_ts[1:])
    np.testing.assert_array_equal(recording.left.image_raw_ts, recording.right.image_raw_ts)
    assert recording.pose_ts[0] <= recording.left.events[0, 2]
    assert recording.pose_ts[-1] > max(recording.left.events[-1, 2], recording.right.events[-1, 2])


def test_same_seed_same_bytes_and_new_seed_new_room(tmp_path: Path) -> None:
    config = RecordingConfig(frames=2, seed=SEED, height=HEIGHT, width=WIDTH)
    a = save_room(generate_room(config, workers=1), tmp_path / "a", "rec")
    b = save_room(generate_room(config, workers=2), tmp_path / "b", "rec")
    for path_a, path_b in zip(a, b):
        assert path_a.read_bytes() == path_b.read_bytes()
    other = generate_room(RecordingConfig(frames=2, seed=SEED + 1, height=HEIGHT, width=WIDTH), workers=2)
    with h5py.File(a[0], "r") as f:
        assert np.mean(other.left.image_raw[0] != f["davis/left/image_raw"][0]) > 0.5
    with h5py.File(a[1], "r") as f:
        assert np.abs(other.pose[:, :3, 3] - f["davis/left/pose"][:, :3, 3]).max() > 0.05


def _surface_distance(room: Room, points: np.ndarray) -> np.ndarray:
    """Distance (N,) of world points inside the room to the nearest wall, floor, ceiling or box face."""
    to_room = np.minimum(np.abs(points - room.lo), np.abs(points - room.hi)).min(axis=1)
    outside = np.maximum(np.maximum(room.box_lo[:, None] - points, points - room.box_hi[:, None]), 0)
    return np.minimum(to_room, np.linalg.norm(outside, axis=-1).min(axis=0))


def _surface_points(room: Room, rng: np.random.Generator, per_face: int) -> np.ndarray:
    """Random points on every face of the room and of its boxes."""
    points = []
    for lo, hi in [(room.lo, room.hi), *zip(room.box_lo, room.box_hi)]:
        for axis in range(3):
            for side in (lo, hi):
                p = rng.uniform(lo, hi, (per_face, 3))
                p[:, axis] = side[axis]
                points.append(p)
    return np.concatenate(points)


def test_depth_and_poses_agree_with_the_room_as_T_world_cam(files: tuple[Path, Path, Path]) -> None:
    """Every rectified depth pixel, back-projected with the written pose and P0, lies on a surface
    of the room; and points of the room, projected with the pose, land where the depth map shows
    them (or something nearer, when occluded)."""
    _, gt_path, calib_path = files
    calib, trajectory, room = read_mvsec_camchain(calib_path), read_mvsec_poses(gt_path), Room.generate(SEED)
    fx, fy, cx, cy = calib.left.pinhole
    with h5py.File(gt_path, "r") as f:
        depths, times = f["davis/left/depth_image_rect"][()], f["davis/left/depth_image_rect_ts"][()]
    v, u = np.mgrid[0:HEIGHT, 0:WIDTH]
    rng = np.random.default_rng(0)
    known = _surface_points(room, rng, 200)
    for k in (0, FRAMES // 2, FRAMES - 1):
        T = trajectory.at(times[k])
        z = depths[k].ravel().astype(np.float64)
        camera = np.stack([(u.ravel() - cx) / fx * z, (v.ravel() - cy) / fy * z, z], axis=1)
        assert _surface_distance(room, camera @ T[:3, :3].T + T[:3, 3]).max() < 2e-3
        wrong = rigid_inverse(T)  # T_cam_world read as a pose puts the points off every surface
        assert np.median(_surface_distance(room, camera @ wrong[:3, :3].T + wrong[:3, 3])) > 0.05

        in_camera = (known - T[:3, 3]) @ T[:3, :3]
        col, row = fx * in_camera[:, 0] / in_camera[:, 2] + cx, fy * in_camera[:, 1] / in_camera[:, 2] + cy
        seen = (in_camera[:, 2] > 0.1) & (col > -0.5) & (col < WIDTH - 0.5) & (row > -0.5) & (row < HEIGHT - 0.5)
        # The 3 x 3 pixels around the nearest one: a point rounds to a pixel centre up to 0.7 px away.
        shown = _neighbourhoods(depths[k])[:, np.rint(row[seen]).astype(int), np.rint(col[seen]).astype(int)]
        depth = in_camera[seen, 2]
        assert seen.sum() > 300
        assert np.mean(shown.min(axis=0) <= depth * 1.01) > 0.99  # nothing visible behind a surface point
        assert np.mean(np.abs(shown - depth).min(axis=0) < 0.01 * depth) > 0.3  # many are the visible surface


def _neighbourhoods(image: np.ndarray) -> np.ndarray:
    """(9, H, W): the image shifted by -1..1 pixels in both axes (edges repeated)."""
    padded = np.pad(image, 1, mode="edge")
    height, width = image.shape
    return np.stack([padded[dy: dy + height, dx: dx + width] for dy in range(3) for dx in range(3)])


def test_raw_depth_is_the_rect_depth_seen_through_the_calibrated_lens(files: tuple[Path, Path, Path]) -> None:
    """DERD-Net's ground truth (spec §6: the raw depth undistorted with K0, D0 into P0) matches the
    depth rendered in P0 directly, away from depth edges (bilinear interpolation blurs those)."""
    _, gt_path, calib_path = files
    calib = read_mvsec_camchain(calib_path)
    with h5py.File(gt_path, "r") as f:
        raw, rect = f["davis/left/depth_image_raw"][FRAMES // 2], f["davis/left/depth_image_rect"][FRAMES // 2]
    undistorted = undistort_depth(raw, calib.left)
    valid = np.isfinite(undistorted)
    assert valid.mean() > 0.9
    error = np.abs(undistorted[valid] - rect[valid]) / rect[valid]
    assert np.median(error) < 1e-3 and np.mean(error < 0.01) > 0.97
    table = undistortion_table(calib.left).reshape(HEIGHT, WIDTH, 2)
    assert np.abs(table[HEIGHT // 2, WIDTH // 2] - (WIDTH // 2, HEIGHT // 2)).max() < 5  # near the centre
    assert np.abs(table[0, 0] - (0, 0)).max() > 5  # the corner is distorted: the undistortion is exercised


def test_stereo_rig_follows_the_calibration(recording: RoomRecording, files: tuple[Path, Path, Path]) -> None:
    _, gt_path, calib_path = files
    calib = read_mvsec_camchain(calib_path)
    assert calib.baseline == pytest.approx(0.09988, abs=1e-4)
    np.testing.assert_array_equal(calib.T_right_left, T_RIGHT_LEFT)
    # dvs_mcemvs' right trajectory (T_w_l · T_right_left⁻¹) is where the right camera was rendered.
    trajectory = read_mvsec_poses(gt_path)
    right = RoomRenderer(Room.generate(SEED), recording.lenses[1], np.linalg.inv(T_RIGHT_LEFT))
    t = recording.depth_ts[3]
    expected = right.pose(t - recording.config.t_start)
    np.testing.assert_allclose(trajectory.right_multiplied(rigid_inverse(calib.T_right_left)).at(t), expected,
                               atol=1e-4)  # 100 Hz poses, interpolated


def test_motion_is_6dof_at_indoor_flying_pace() -> None:
    motion = Room.generate(SEED).motion
    t = np.arange(0.0, 60.0, 0.01)
    poses = motion.pose(t)
    speed = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1) / 0.01
    relative = np.swapaxes(poses[:-1, :3, :3], 1, 2) @ poses[1:, :3, :3]  # rotation between steps, camera frame
    spin = np.stack([relative[:, 2, 1], relative[:, 0, 2], relative[:, 1, 0]], axis=1) / 0.01  # rad/s per axis
    assert 0.2 < speed.mean() < 0.8 and speed.max() < 1.5
    assert 10 < np.degrees(np.linalg.norm(spin, axis=1)).max() < 60
    assert np.all(np.ptp(poses[:, :3, 3], axis=0) > 0.2)  # translation along x, y and z
    assert np.all(np.degrees(np.abs(spin)).max(axis=0) > 5)  # rotation about every camera axis
    assert np.all(motion.state(t)[:, 2] > 1.0)


def test_surfaces_lie_in_derd_nets_depth_range(recording: RoomRecording) -> None:
    depth = recording.depth_image_rect
    assert np.isfinite(depth).all()
    assert np.mean((depth >= 1.0) & (depth <= 6.5)) > 0.995 and depth.max() < 7.0


def test_dsi_arg_max_is_near_the_true_depth(files: tuple[Path, Path, Path]) -> None:
    """The stereo DSI of the 1 s window around the middle depth frame (spec §2: MVSEC settings,
    1-6.5 m, 100 inverse-depth planes) peaks near the rendered depth at DERD-Net's selected pixels.

    Tolerance: one plane is 0.0085 m⁻¹ of inverse depth, i.e. f · b · 0.0085 px of parallax; at
    f = 100 px and the 0.1 m stereo baseline plus this window's 0.3 m of camera travel that is
    0.1-0.3 px, so the ~1 px localization of integer-pixel events spans about 5 planes (about ±8%
    at 3 m). Measured: 79% of ~900 pixels within 5 planes, median 1.9 planes (mono: 72%, 2.6).
    """
    data_path, gt_path, calib_path = files
    calib, trajectory = read_mvsec_camchain(calib_path), read_mvsec_poses(gt_path)
    with h5py.File(gt_path, "r") as f:
        truth, t_ref = f["davis/left/depth_image_rect"][FRAMES // 2], f["davis/left/depth_image_rect_ts"][FRAMES // 2]
    grid = DsiGrid.for_camera(calib.left)
    with MvsecEvents(data_path, "left") as left_events, MvsecEvents(data_path, "right") as right_events:
        left, right = mvsec_cameras(calib, left_events, right_events, trajectory)
        t0 = left_events.first_time
        window = Window(0, t_ref - t0 - 0.5, t_ref - t0 + 0.5, t_ref - t0)
        frame = next(stream_dsis([window], t0, left, grid, right))
    assert min(frame.packets) > 50
    selection = select_pixels(frame.dsi, MAX_CONFIDENCE["indoor_flying1"], PRESETS["mvsec", "denser"], gt=truth)
    assert len(selection.rows) > 300
    estimate = grid.depths[frame.dsi.argmax(axis=0)[selection.rows, selection.cols]]
    true = truth[selection.rows, selection.cols]
    plane = (1 / grid.depths[-1] - 1 / grid.depths[0]) / (grid.num_planes - 1)
    planes_off = np.abs(1 / estimate - 1 / true) / plane
    assert np.mean(planes_off <= 5) > 0.7, f"{np.mean(planes_off <= 5):.2f} within 5 planes"
    assert np.median(planes_off) <= 2.5


def _events_file(path: Path, **datasets: np.ndarray) -> Path:
    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            f[key.replace("__", "/")] = value
    return path


def test_event_windows_match_brute_force(recording: RoomRecording, files: tuple[Path, Path, Path]) -> None:
    for side, stream in (("left", recording.left), ("right", recording.right)):
        events = stream.events
        with MvsecEvents(files[0], side, chunk_size=1000) as reader:
            assert len(reader) == len(events) and reader.first_time == events[0, 2]
            for start, stop in [(events[0, 2] - 1, events[10, 2]), (events[5000, 2], events[23456, 2]),
                                (events[-3, 2], events[-1, 2] + 1), (0.0, 1.0)]:
                inside = events[(events[:, 2] >= start) & (events[:, 2] <= stop)]
                np.testing.assert_array_equal(reader.between(start, stop), inside[:, [2, 0, 1, 3]])


def test_reader_errors_name_the_file_and_what_is_missing(tmp_path: Path) -> None:
    mono = _events_file(tmp_path / "mono_data.hdf5", davis__left__events=np.zeros((3, 4)))
    with pytest.raises(RecordingError, match=r"mono_data.hdf5 has no davis/right/events: stereo DSIs need the "
                                             r"right camera; use mono"):
        MvsecEvents(mono, "right")
    assert len(MvsecEvents(mono, "left")) == 3
    with pytest.raises(RecordingError, match=r"absent_data.hdf5: MVSEC data file not found"):
        MvsecEvents(tmp_path / "absent_data.hdf5")
    empty = _events_file(tmp_path / "empty_data.hdf5", davis__right__events=np.zeros((2, 4)))
    with pytest.raises(RecordingError, match=r"empty_data.hdf5: missing dataset 'davis/left/events'"):
        MvsecEvents(empty, "left")
    flat = _events_file(tmp_path / "flat_data.hdf5", davis__left__events=np.zeros((5, 3)))
    with pytest.raises(RecordingError, match=r"flat_data.hdf5: davis/left/events has shape \(5, 3\)"):
        MvsecEvents(flat)
    unsorted = _events_file(tmp_path / "unsorted_data.hdf5",
                            davis__left__events=np.array([[0, 0, 2.0, 1], [0, 0, 1.0, 1]]))
    with pytest.raises(RecordingError, match=r"unsorted_data.hdf5: timestamps in davis/left/events are not sorted"):
        MvsecEvents(unsorted).between(0.0, 3.0)
    with pytest.raises(ValueError, match="camera must be 'left' or 'right'"):
        MvsecEvents(mono, "middle")
    no_pose = _events_file(tmp_path / "street_gt.hdf5", davis__left__depth_image_raw=np.zeros((1, 2, 2)))
    with pytest.raises(RecordingError, match=r"street_gt.hdf5: missing dataset 'davis/left/pose'"):
        read_mvsec_poses(no_pose)


def _brute_force_depth(renderer: RoomRenderer, t: float) -> np.ndarray:
    """Z-depth of every pixel's ray against the room and every box (float64 slab tests, no culling)."""
    T, room = renderer.pose(t), renderer.room
    rays = np.stack([renderer.a, renderer.b, np.ones_like(renderer.a)], axis=-1).astype(np.float64) @ T[:3, :3].T
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.maximum((room.lo - T[:3, 3]) / rays, (room.hi - T[:3, 3]) / rays).min(axis=-1)
        for lo, hi in zip(room.box_lo, room.box_hi):
            t0, t1 = (lo - T[:3, 3]) / rays, (hi - T[:3, 3]) / rays
            enter, leave = np.minimum(t0, t1).max(axis=-1), np.maximum(t0, t1).min(axis=-1)
            depth = np.where((enter <= leave) & (enter > 0) & (enter < depth), enter, depth)
    return depth


@pytest.mark.parametrize("seed", [0, 2])
def test_ray_caster_matches_brute_force_intersection(seed: int) -> None:
    """Boxes are tested only inside their projected outline (bent by the fisheye): nothing is missed."""
    room = Room.generate(seed)
    for lens in room_lenses(65, 87):
        renderer = RoomRenderer(room, lens, np.eye(4))
        for t in np.arange(0.0, 30.0, 1.3):
            np.testing.assert_allclose(renderer.depth(t), _brute_force_depth(renderer, t), rtol=1e-5)


def test_lens_forward_model_inverts_the_undistortion() -> None:
    for lens in room_lenses(HEIGHT, WIDTH):
        a, b = lens.normalized()
        u, v = lens.pixels(a, b)
        grid_v, grid_u = np.mgrid[0:HEIGHT, 0:WIDTH]
        assert np.abs(u - grid_u).max() < 1e-3 and np.abs(v - grid_v).max() < 1e-3


def _script():
    spec = importlib.util.spec_from_file_location("make_synthetic", REPO / "scripts" / "make_synthetic.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_writes_a_room_recording_with_its_scene_in_the_provenance(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture) -> None:
    script = _script()
    common = ["--out", str(tmp_path), "--frames", "2", "--height", "26", "--width", "35", "--workers", "1"]
    assert script.main([*common, "--name", "room", "--scene", "room"]) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"room_data.hdf5", "room_gt.hdf5", "room_calib.yaml",
                                                    "room.provenance.json"}
    assert json.loads((tmp_path / "room.provenance.json").read_text())["made_by"]["scene"] == "room"
    assert script.main([*common, "--name", "room", "--scene", "room"]) == 0
    assert "exists" in capsys.readouterr().out
    assert script.main([*common, "--name", "room"]) == 2  # a street recording of that name: other settings
    assert script.main([*common, "--name", "night", "--scene", "room", "--night"]) == 2
    assert "no night variant" in capsys.readouterr().err
    assert script.main([*common, "--name", "street"]) == 0
    assert "scene" not in json.loads((tmp_path / "street.provenance.json").read_text())["made_by"]
    assert not (tmp_path / "street_calib.yaml").exists()

