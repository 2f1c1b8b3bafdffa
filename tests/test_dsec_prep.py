"""DSEC: the events.h5 reader (ms_to_idx windows, t_offset, rectification), disparity -> depth against
hand-computed values, the image warp, and preparation of a tiny generated sequence in the published
layout (scripts/process_dsec.py), including a sequence without its calibration."""
from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import yaml

from fuse.data.layout import load_image, load_npy, read_split_list
from fuse.errors import PrepError
from fuse.events import voxel_grid
from fuse.events.dsec import DsecEvents
from fuse.events.readers import EventFileError, open_events
from fuse.prep.dsec import DsecCalibration, disparity_to_depth

pytestmark = pytest.mark.usefixtures("one_thread")

REPO = Path(__file__).resolve().parents[1]
H0, W0 = 24, 32          # event camera (raw and rectified)
H1, W1 = 48, 64          # frame camera: K1 = 2 K0, no rotation, so the warp samples image[2v, 2u]
T_OFFSET = 7_000_000_000  # microseconds; events/t is stored relative to it
F, BASELINE = 50.0, 0.5   # Q gives depth = F * BASELINE / d = 25 / d
DEPTH_STAMPS = [0, 100_000, 200_000, 300_000, 400_000]  # relative us; disparity files 000000, 000002, ...
IMAGE_STAMPS = [50_000 * i + 3_000 for i in range(8)]    # 20 Hz, 3 ms late, none near 400 ms
GAP = (250_000, 300_000)                                 # no events here: the 300 ms window is empty


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"prep_script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


process_dsec = load_script("process_dsec")


def q_matrix(q33: float = 0.0) -> list[list[float]]:
    """OpenCV's Q for f = 50 px, b = 0.5 m, principal point (16, 12); Q[3][3] = -(cx - cx') / b."""
    return [[1.0, 0.0, 0.0, -16.0], [0.0, 1.0, 0.0, -12.0], [0.0, 0.0, 0.0, F], [0.0, 0.0, 1.0 / BASELINE, q33]]


def calibration_yaml(path: Path) -> None:
    eye = np.eye(3).tolist()
    t_10 = np.eye(4)
    t_10[0, 3] = -0.05  # a translation the infinite-depth warp ignores
    data = {
        "intrinsics": {
            "cam0": {"camera_matrix": [49.0, 49.0, 15.5, 11.5], "distortion_coeffs": [0.1, 0.0, 0.0, 0.0],
                     "resolution": [W0, H0]},
            "camRect0": {"camera_matrix": [F, F, 16.0, 12.0], "resolution": [W0, H0]},
            "camRect1": {"camera_matrix": [2 * F, 2 * F, 32.0, 24.0], "resolution": [W1, H1]},
        },
        "extrinsics": {"R_rect0": eye, "R_rect1": eye, "T_10": t_10.tolist()},
        "disparity_to_depth": {"cams_03": q_matrix(), "cams_12": q_matrix()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))


def rectify_table() -> np.ndarray:
    """rectify_map[y, x] = (x + 0.25, y + 0.5); column 0 maps off the image (those events are dropped)."""
    ys, xs = np.mgrid[0:H0, 0:W0].astype(np.float32)
    table = np.stack([xs + 0.25, ys + 0.5], axis=-1)
    table[:, 0, 0] = -2.0
    return table


def make_events(rng: np.random.Generator) -> dict[str, np.ndarray]:
    t = np.sort(rng.integers(0, 420_000, 9000))
    t = t[(t < GAP[0]) | (t > GAP[1])]
    t[:3] = [0, 0, 1]  # the recording starts at t_offset exactly, with equal times
    n = len(t)
    return {"t": t.astype(np.uint32), "x": rng.integers(0, W0, n).astype(np.uint16),
            "y": rng.integers(0, H0, n).astype(np.uint16), "p": rng.integers(0, 2, n).astype(np.uint8)}


def ms_to_idx(t: np.ndarray) -> np.ndarray:
    """DSEC's definition: t[idx[ms]] >= ms * 1000 > t[idx[ms] - 1]."""
    return np.searchsorted(t.astype(np.int64), np.arange(int(t[-1]) // 1000 + 2) * 1000, "left").astype(np.uint64)


def write_events(path: Path, events: dict[str, np.ndarray], compression: dict | None = None,
                 index: np.ndarray | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        for key, values in events.items():
            handle.create_dataset(f"events/{key}", data=values, **(compression or {}))
        handle.create_dataset("ms_to_idx", data=ms_to_idx(events["t"]) if index is None else index)
        handle.create_dataset("t_offset", data=np.int64(T_OFFSET))


def make_sequence(seq: Path, rng: np.random.Generator) -> dict:
    """A DSEC sequence in the published layout; returns what was written."""
    events = make_events(rng)
    write_events(seq / "events/left/events.h5", events)
    with h5py.File(seq / "events/left/rectify_map.h5", "w") as handle:
        handle.create_dataset("rectify_map", data=rectify_table())
    calibration_yaml(seq / "calibration/cam_to_cam.yaml")
    images = seq / "images/left/rectified"
    images.mkdir(parents=True)
    frames = []
    for i in range(len(IMAGE_STAMPS)):
        image = rng.integers(0, 256, (H1, W1, 3), dtype=np.uint8)
        cv2.imwrite(str(images / f"{i:06d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        frames.append(image)
    (seq / "images/timestamps.txt").write_text("".join(f"{T_OFFSET + t}\n" for t in IMAGE_STAMPS))
    disparity = seq / "disparity/event"
    disparity.mkdir(parents=True)
    maps = []
    for k in range(len(DEPTH_STAMPS)):
        values = rng.choice(np.array([0, 640, 1000, 6400], np.uint16), (H0, W0))
        cv2.imwrite(str(disparity / f"{2 * k:06d}.png"), values)
        maps.append(values)
    (seq / "disparity/timestamps.txt").write_text("".join(f"{T_OFFSET + t}\n" for t in DEPTH_STAMPS))
    return {"events": events, "images": frames, "disparity": maps}


def expected_window(events: dict[str, np.ndarray], t_end: int, window_us: int = 50_000) -> np.ndarray:
    """Rectified (N, 4) t [s], x, y, p (±1) with t_end - window <= t <= t_end (relative us), column 0 dropped."""
    t = events["t"].astype(np.int64)
    keep = (t >= t_end - window_us) & (t <= t_end) & (events["x"] > 0)
    return np.stack([(t[keep] + T_OFFSET) * 1e-6, events["x"][keep] + 0.25, events["y"][keep] + 0.5,
                     np.where(events["p"][keep] == 1, 1.0, -1.0)], axis=1)


@pytest.fixture()
def dsec_root(tmp_path: Path) -> tuple[Path, dict]:
    root = tmp_path / "DSEC" / "train"
    truth = make_sequence(root / "zurich_city_04_a", np.random.default_rng(0))
    return root, truth


# ----------------------------------------------------------------------------- disparity -> depth


def test_disparity_to_depth_matches_hand_computed_values(tmp_path: Path):
    # f * b = 25 px m. PNG 6400 -> d = 25 px -> 1 m; 640 -> 2.5 px -> 10 m; 1000 -> 3.90625 px -> 6.4 m; 0 -> none.
    png = np.array([[6400, 640], [1000, 0]], np.uint16)
    calibration_yaml(tmp_path / "cam_to_cam.yaml")
    calibration = DsecCalibration(tmp_path / "cam_to_cam.yaml")
    assert calibration.focal_px == 50.0 and calibration.baseline_m == 0.5
    depth = calibration.depth(png / 256.0)
    assert depth.dtype == np.float32
    np.testing.assert_allclose(depth[0], [1.0, 10.0], rtol=1e-7)
    assert depth[1, 0] == pytest.approx(6.4, rel=1e-7) and np.isnan(depth[1, 1])
    # Q[3][3] = 0.5 (cx' - cx = 0.25 px): Z = 50 / (2 d + 0.5) -> 50 / 50.5 at d = 25.
    assert disparity_to_depth(np.array([[25.0]]), q_matrix(0.5))[0, 0] == pytest.approx(50 / 50.5, rel=1e-7)
    # A Q that gives negative depth is refused, naming the file and the entry.
    data = yaml.safe_load((tmp_path / "cam_to_cam.yaml").read_text())
    data["disparity_to_depth"]["cams_03"][3][2] = -2.0
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(PrepError, match=r"bad\.yaml.*cams_03"):
        DsecCalibration(tmp_path / "bad.yaml").depth(png / 256.0)


def test_image_warp_is_the_infinite_depth_homography(tmp_path: Path):
    calibration_yaml(tmp_path / "cam_to_cam.yaml")
    data = yaml.safe_load((tmp_path / "cam_to_cam.yaml").read_text())
    # Yaw between the cameras with tan = 0.1, same K (f 50, centre (16, 12)) for both: the principal ray
    # of camRect0 lands 50 * 0.1 = 5 px to the right in camRect1: (16, 12) -> (21, 12).
    angle = np.arctan(0.1)
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    t_10 = np.eye(4)
    t_10[:3, :3] = rotation
    data["extrinsics"]["T_10"] = t_10.tolist()
    data["intrinsics"]["camRect1"]["camera_matrix"] = [F, F, 16.0, 12.0]
    (tmp_path / "yaw.yaml").write_text(yaml.safe_dump(data))
    point = DsecCalibration(tmp_path / "yaw.yaml").image_to_event_homography() @ [16.0, 12.0, 1.0]
    np.testing.assert_allclose(point[:2] / point[2], [21.0, 12.0], atol=1e-9)
    # K1 = 2 K0 and no rotation: camRect0 pixel (u, v) sees camRect1 pixel (2u, 2v).
    image = np.random.default_rng(1).integers(0, 256, (H1, W1, 3), dtype=np.uint8)
    warped = DsecCalibration(tmp_path / "cam_to_cam.yaml").warp_image(image)
    np.testing.assert_array_equal(warped, image[::2, ::2])


# ----------------------------------------------------------------------------- the events.h5 reader


def brute_window(events: dict[str, np.ndarray], start: int, stop: int) -> np.ndarray:
    t = events["t"].astype(np.int64) + T_OFFSET
    return np.flatnonzero((t >= start) & (t < stop))


def check_windows(reader: DsecEvents, events: dict[str, np.ndarray]) -> None:
    rng = np.random.default_rng(2)
    bounds = [(0, 1000), (999, 1001), (1000, 2000), (1500, 2500), (-5000, 10), (250_000, 300_001),
              (419_000, 500_000), (500_000, 600_000), (123_456, 123_457), (5, 5), (10, 5)]
    bounds += [tuple(sorted(rng.integers(-1000, 430_000, 2))) for _ in range(40)]
    for start, stop in bounds:
        got = reader.window(T_OFFSET + start, T_OFFSET + stop)
        rows = brute_window(events, T_OFFSET + start, T_OFFSET + stop) if stop > start else np.array([], int)
        assert got.dtype.names == ("t", "x", "y", "p")
        np.testing.assert_array_equal(got["t"], events["t"][rows].astype(np.int64) + T_OFFSET)
        np.testing.assert_array_equal(got["x"], events["x"][rows])
        np.testing.assert_array_equal(got["y"], events["y"][rows])
        np.testing.assert_array_equal(got["p"], np.where(events["p"][rows] == 1, 1, -1))


def test_reader_windows_through_ms_to_idx_with_t_offset(tmp_path: Path):
    events = make_events(np.random.default_rng(0))
    path = tmp_path / "events.h5"
    write_events(path, events)
    with open_events(path) as reader:  # the registered format, found by its keys
        assert isinstance(reader, DsecEvents) and reader.sensor_size == (480, 640)
        assert reader.time_range() == (T_OFFSET, T_OFFSET + int(events["t"][-1]))
        assert len(reader) == len(events["t"])
        check_windows(reader, events)
    # Rectified windows: the truncated rectify_map position, column 0 (mapped off the image) dropped.
    with DsecEvents(path, rectify_map=rectify_table()) as reader:
        assert reader.sensor_size == (H0, W0)
        got = reader.window(T_OFFSET + 100_000, T_OFFSET + 200_000)
        rows = brute_window(events, T_OFFSET + 100_000, T_OFFSET + 200_000)
        rows = rows[events["x"][rows] > 0]
        np.testing.assert_array_equal(got["x"], events["x"][rows])
        np.testing.assert_array_equal(got["y"], events["y"][rows])
        np.testing.assert_array_equal(reader.window_columns(T_OFFSET + 150_000, T_OFFSET + 200_001),
                                      expected_window(events, 200_000))
    # An ms_to_idx that does not describe events/t is reported, not trusted.
    broken = ms_to_idx(events["t"])
    broken[100:] = np.minimum(broken[100:] + 7, len(events["t"]))
    write_events(tmp_path / "broken.h5", events, index=broken)
    with DsecEvents(tmp_path / "broken.h5") as reader, pytest.raises(EventFileError, match="ms_to_idx"):
        reader.window(T_OFFSET + 150_000, T_OFFSET + 160_000)


def test_reader_reads_blosc_zstd_and_names_the_missing_plugin(tmp_path: Path):
    hdf5plugin = pytest.importorskip("hdf5plugin")
    events = make_events(np.random.default_rng(3))
    path = tmp_path / "events.h5"
    write_events(path, events, compression=dict(hdf5plugin.Blosc(cname="zstd", clevel=1,
                                                                 shuffle=hdf5plugin.Blosc.SHUFFLE)))
    with DsecEvents(path) as reader:
        check_windows(reader, events)
    code = ("import sys; sys.modules['hdf5plugin'] = None\n"
            "from fuse.events.dsec import DsecEvents\nfrom fuse.errors import FuseError\n"
            f"try:\n    DsecEvents({str(path)!r})\nexcept FuseError as error:\n    print(error)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "hdf5plugin" in result.stdout and "events/" in result.stdout and str(path) in result.stdout


# ----------------------------------------------------------------------------- preparation


def test_prepares_a_published_layout_sequence(dsec_root, tmp_path: Path, capsys):
    root, truth = dsec_root
    out = tmp_path / "processed"
    assert process_dsec.main(["--root", str(root.parent), "--out", str(out), "--save-events", "--list", "train"]) == 0
    stdout = capsys.readouterr().out
    # 000000: window before the first event; 000006: empty window (no events 250-300 ms); 000008: no image.
    assert "kept 2 (2 written, 0 already present)" in stdout and "skipped 3" in stdout
    samples = read_split_list(out / "zurich_city_04_a.txt")
    assert [paths[0].name for paths in samples] == ["000002.png", "000004.png"]
    assert read_split_list(out / "train.txt") == samples
    for k, (image_path, depth_path, voxel_path) in zip((1, 2), samples):
        depth = load_npy(depth_path)
        png = truth["disparity"][k]
        expected = np.full((H0, W0), np.nan, np.float32)
        expected[png == 640], expected[png == 1000], expected[png == 6400] = 10.0, 6.4, 1.0
        np.testing.assert_allclose(depth, expected, rtol=1e-6)  # NaN where PNG 0, in the same places
        window = expected_window(truth["events"], DEPTH_STAMPS[k])
        np.testing.assert_array_equal(load_npy(voxel_path.parent.parent / "events" / voxel_path.name), window)
        np.testing.assert_array_equal(load_npy(voxel_path), voxel_grid(window, 3, H0, W0))
        image = load_image(image_path, gray=False)
        np.testing.assert_array_equal(image, truth["images"][2 * k][::2, ::2])  # image at 50k ms + 3 ms, warped
    # A rerun keeps every finished file; the dataset reads the samples with DSEC's constants.
    assert process_dsec.main(["--root", str(root), "--out", str(out), "--save-events"]) == 0
    assert "(0 written, 2 already present)" in capsys.readouterr().out
    from fuse.data.dataset import EventDepthDataset

    sample = EventDepthDataset(out / "zurich_city_04_a.txt", "dsec", mode="test")[0]
    assert sample["voxel"].shape[0] == 3 and sample["depth"].shape == (H0, W0)


def test_events_only_samples_have_black_images(dsec_root, tmp_path: Path):
    root, _ = dsec_root
    for name in ("images/left/rectified", "images/timestamps.txt"):  # not needed with --image none
        path = root / "zurich_city_04_a" / name
        if path.is_dir():
            for child in path.iterdir():
                child.unlink()
            path.rmdir()
        else:
            path.unlink()
    out = tmp_path / "events_only"
    assert process_dsec.main(["--root", str(root), "--out", str(out), "--image", "none"]) == 0
    samples = read_split_list(out / "zurich_city_04_a.txt")
    assert len(samples) == 3  # 000008 has no image to miss now
    assert not load_image(samples[0][0], gray=False).any()


def test_missing_calibration_is_one_message_naming_the_file(dsec_root, tmp_path: Path, capsys):
    root, _ = dsec_root
    (root / "zurich_city_04_a" / "calibration" / "cam_to_cam.yaml").unlink()
    out = tmp_path / "processed"
    assert process_dsec.main(["--root", str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1  # one line; no work started: every input is checked first
    message = err[0]
    assert message.startswith("error: ") and "Traceback" not in message
    assert "zurich_city_04_a/calibration/cam_to_cam.yaml" in message and "unpack" in message
    assert not out.exists()
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "process_dsec.py"), "--root", str(root),
                             "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "cam_to_cam.yaml" in result.stderr and "Traceback" not in result.stderr


def test_a_bad_disparity_png_stops_the_run_and_removes_its_files(dsec_root, tmp_path: Path, capsys):
    root, _ = dsec_root
    bad = root / "zurich_city_04_a" / "disparity" / "event" / "000004.png"
    cv2.imwrite(str(bad), np.zeros((H0, W0), np.uint8))  # 8-bit: not DSEC's disparity encoding
    out = tmp_path / "processed"
    assert process_dsec.main(["--root", str(root), "--out", str(out)]) == 2
    message = capsys.readouterr().err.strip().splitlines()[-1]
    assert message.startswith("error: ") and str(bad) in message and "16-bit" in message
    assert not any(path.is_file() for path in out.rglob("*"))  # 000002, written before, was removed again
