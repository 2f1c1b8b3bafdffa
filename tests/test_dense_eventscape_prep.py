"""DENSE / EventScape preparation and change_bins on tiny fake trees in the published layouts."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

from fuse.data.dataset import EventDepthDataset
from fuse.data.layout import read_split_list
from fuse.events import voxel_grid

REPO = Path(__file__).resolve().parents[1]
H, W = 12, 16


def load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"prep_script_{name}", REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


process_dense = load_script("process_dense")
process_eventscape = load_script("process_eventscape")
change_bins = load_script("change_bins")


def fake_events(rng: np.random.Generator, n: int, t0: float) -> np.ndarray:
    """(n, 4) t, x, y, p with p in {0, 1}, time-sorted."""
    t = np.sort(rng.uniform(t0, t0 + 0.05, n))
    return np.stack([t, rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n)], axis=1).astype(np.float64)


def write_stamps(folder: Path, stamps: list[float]) -> None:
    (folder / "timestamps.txt").write_text("".join(f"{i} {t:.6f}\n" for i, t in enumerate(stamps)))


def make_dense_sequence(seq: Path, n: int, rng: np.random.Generator, event_shift: int = 0) -> dict[str, list]:
    """A DENSE sequence; event window i carries the timestamp of frame i + event_shift."""
    rgb, depth, events = seq / "rgb" / "frames", seq / "depth" / "data", seq / "events" / "data"
    for folder in (rgb, depth, events, seq / "depth" / "frames"):
        folder.mkdir(parents=True)
    frame_stamps = [0.1 * (i + 1) for i in range(n)]
    truth: dict[str, list] = {"rgb": [], "depth": [], "events": []}
    for i in range(n):
        image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        cv2.imwrite(str(rgb / f"frame_{i:010d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        d = rng.uniform(2.0, 900.0, (H, W)).astype(np.float32)
        np.save(depth / f"depth_{i:010d}.npy", d)
        truth["rgb"].append(image)
        truth["depth"].append(d)
    window_stamps = []
    for i in range(n - event_shift):
        ev = fake_events(rng, 40, frame_stamps[i + event_shift] - 0.05)
        np.save(events / f"events_{i:010d}.npy", ev)
        truth["events"].append(ev)
        window_stamps.append(frame_stamps[i + event_shift])
    write_stamps(rgb, frame_stamps)
    write_stamps(depth, frame_stamps)
    write_stamps(events, window_stamps)
    (events / "boundary_timestamps.txt").write_text("")
    return truth


def expected_voxel(events: np.ndarray, bins: int) -> np.ndarray:
    signed = events.copy()
    signed[signed[:, 3] == 0, 3] = -1
    return np.asarray(voxel_grid(signed, bins, H, W))


@pytest.fixture()
def dense_root(tmp_path: Path) -> tuple[Path, dict]:
    rng = np.random.default_rng(0)
    root = tmp_path / "DENSE"
    truth = {
        "train/town01": make_dense_sequence(root / "train" / "town01", 3, rng),
        "train/town02": make_dense_sequence(root / "train" / "town02", 2, rng),
        "test/test": make_dense_sequence(root / "test", 2, rng),  # the test release is one bare sequence
    }
    return root, truth


def test_dense_conversion(dense_root: tuple[Path, dict], tmp_path: Path) -> None:
    root, truth = dense_root
    out = tmp_path / "out"
    assert process_dense.main(["--root", str(root), "--out", str(out), "--save-events"]) == 0
    assert (out / "train.txt").read_text().splitlines() == [
        f"train/{seq}/images/{i:06d}.png train/{seq}/depths/{i:06d}.npy train/{seq}/voxels/{i:06d}.npy"
        for seq, n in (("town01", 3), ("town02", 2))
        for i in range(n)
    ]
    assert len((out / "train" / "town01.txt").read_text().splitlines()) == 3
    assert len((out / "test" / "test.txt").read_text().splitlines()) == 2
    for key, data in truth.items():
        split, seq = key.split("/")
        for i in range(len(data["rgb"])):
            base = out / split / seq
            image = cv2.cvtColor(cv2.imread(str(base / "images" / f"{i:06d}.png")), cv2.COLOR_BGR2RGB)
            np.testing.assert_array_equal(image, data["rgb"][i])
            depth = np.load(base / "depths" / f"{i:06d}.npy")
            assert depth.dtype == np.float32
            np.testing.assert_array_equal(depth, data["depth"][i])
            voxel = np.load(base / "voxels" / f"{i:06d}.npy")
            assert voxel.shape == (3, H, W) and voxel.dtype == np.float32
            np.testing.assert_allclose(voxel, expected_voxel(data["events"][i], 3), atol=1e-6)
            events = np.load(base / "events" / f"{i:06d}.npy")
            assert events.dtype == np.float64 and set(np.unique(events[:, 3])) <= {-1.0, 1.0}
    sample = EventDepthDataset(out / "train.txt", "dense", mode="val", size=14)[0]
    assert sample["voxel"].shape == (3, 14, 14) and sample["depth"].shape == (H, W)


def test_dense_pairs_windows_by_timestamp(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    root = tmp_path / "DENSE"
    truth = make_dense_sequence(root / "val" / "town06", 4, rng, event_shift=1)
    out = tmp_path / "out"
    assert process_dense.main(["--root", str(root), "--out", str(out), "--numbins", "5"]) == 0
    lines = (out / "val.txt").read_text().splitlines()
    assert [line.split()[0] for line in lines] == [f"val/town06/images/{i:06d}.png" for i in (1, 2, 3)]
    voxel = np.load(out / "val" / "town06" / "voxels" / "000001.npy")
    np.testing.assert_allclose(voxel, expected_voxel(truth["events"][0], 5), atol=1e-6)

    by_index = tmp_path / "by_index"
    assert process_dense.main(["--root", str(root), "--out", str(by_index), "--match", "index"]) == 0
    assert len((by_index / "val.txt").read_text().splitlines()) == 3
    assert (by_index / "val" / "town06" / "images" / "000000.png").is_file()


def test_dense_skips_existing_unless_overwrite(dense_root: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = dense_root
    out = tmp_path / "out"
    args = ["--root", str(root), "--out", str(out), "--splits", "test"]
    assert process_dense.main(args) == 0
    voxel_path = out / "test" / "test" / "voxels" / "000000.npy"
    original = np.load(voxel_path)
    np.save(voxel_path, np.zeros_like(original))
    assert process_dense.main(args) == 0
    assert not np.load(voxel_path).any()
    assert process_dense.main(args + ["--overwrite"]) == 0
    np.testing.assert_array_equal(np.load(voxel_path), original)
    assert process_dense.main(args + ["--numbins", "4"]) == 2  # existing 3-bin voxels need --overwrite
    assert not list((out / "test" / "test" / "voxels").glob(".*.partial"))


def test_dense_bad_input_exits_2_without_traceback(dense_root, tmp_path: Path, capsys) -> None:
    root, truth = dense_root
    bad = root / "train" / "town02" / "events" / "data" / "events_0000000001.npy"
    events = truth["train/town02"]["events"][1].copy()
    events[0, 1] = W + 3
    np.save(bad, events)
    out = tmp_path / "out"
    assert process_dense.main(["--root", str(root), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "events_0000000001.npy" in err and "Traceback" not in err
    with pytest.raises(Exception, match="outside"):
        process_dense.main(["--root", str(root), "--out", str(out), "--debug"])
    assert process_dense.main(["--root", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert process_dense.main(["--root", str(root)]) == 2  # argparse: --out is required


def make_eventscape_sequence(
    seq: Path, prefix: str, n: int, rng: np.random.Generator, log_depth: bool
) -> dict[str, list]:
    rgb, depth, events = seq / "rgb" / "data", seq / "depth" / "data", seq / "events" / "data"
    for folder in (rgb, depth, events, seq / "semantic" / "data"):
        folder.mkdir(parents=True)
    truth: dict[str, list] = {"rgb": [], "depth": [], "events": []}
    stamps = [0.05 * (i + 1) for i in range(n)]
    for i in range(n):
        name = f"{prefix}_{i:04d}"
        image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        cv2.imwrite(str(rgb / f"{name}_image.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        metres = rng.uniform(5.0, 1000.0, (H, W))
        stored = np.log(metres / 1000.0) / 5.7 + 1.0 if log_depth else metres
        np.save(depth / f"{name}_depth.npy", stored.astype(np.float32))
        ev = fake_events(rng, 30, stamps[i] - 0.05)
        np.savez(events / f"{name}_events.npz", x=ev[:, 1].astype(np.uint16), y=ev[:, 2].astype(np.uint16),
                 t=ev[:, 0], p=ev[:, 3].astype(bool))
        truth["rgb"].append(image)
        truth["depth"].append(metres)
        truth["events"].append(ev)
    for folder in (rgb, depth, events):
        write_stamps(folder, stamps)
    return truth


@pytest.mark.parametrize("log_depth", [True, False])
def test_eventscape_conversion(tmp_path: Path, log_depth: bool) -> None:
    rng = np.random.default_rng(2)
    town = tmp_path / "EventScape" / "Town05_val" / "Town05"
    root = tmp_path / "EventScape"
    truth = {
        "Town05_sequence_0": make_eventscape_sequence(town / "sequence_0", "05_000", 2, rng, log_depth),
        "Town05_sequence_12": make_eventscape_sequence(town / "sequence_12", "05_012", 3, rng, log_depth),
    }
    out = tmp_path / "out"
    assert process_eventscape.main(["--root", str(root), "--out", str(out)]) == 0
    lines = (out / "val.txt").read_text().splitlines()
    assert len(lines) == 5 and lines[0].split()[0] == "val/Town05_sequence_0/images/000000.png"
    for seq, data in truth.items():
        for i in range(len(data["rgb"])):
            base = out / "val" / seq
            image = cv2.cvtColor(cv2.imread(str(base / "images" / f"{i:06d}.png")), cv2.COLOR_BGR2RGB)
            np.testing.assert_array_equal(image, data["rgb"][i])
            np.testing.assert_allclose(np.load(base / "depths" / f"{i:06d}.npy"), data["depth"][i], rtol=1e-4)
            voxel = np.load(base / "voxels" / f"{i:06d}.npy")
            np.testing.assert_allclose(voxel, expected_voxel(data["events"][i], 3), atol=1e-6)
    assert len(EventDepthDataset(out / "val.txt", "eventscape", mode="test")) == 5


def test_eventscape_depth_format_can_be_forced(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    root = tmp_path / "EventScape"
    make_eventscape_sequence(root / "Town05_test" / "Town05" / "sequence_1", "05_001", 1, rng, log_depth=True)
    stored = np.load(root / "Town05_test" / "Town05" / "sequence_1" / "depth" / "data" / "05_001_0000_depth.npy")
    out = tmp_path / "out"
    assert process_eventscape.main(["--root", str(root), "--out", str(out), "--depth-format", "metric"]) == 0
    np.testing.assert_array_equal(np.load(out / "test" / "Town05_sequence_1" / "depths" / "000000.npy"), stored)
    forced = tmp_path / "forced"
    assert process_eventscape.main(["--root", str(root), "--out", str(forced), "--depth-format", "log",
                                    "--reg-factor", "5.70378"]) == 0
    expected = 1000.0 * np.exp(5.70378 * (np.clip(stored, 0, 1) - 1.0))
    np.testing.assert_allclose(np.load(forced / "test" / "Town05_sequence_1" / "depths" / "000000.npy"), expected,
                               rtol=1e-5)


def test_eventscape_missing_npz_key_exits_2(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(4)
    root = tmp_path / "EventScape"
    seq = root / "Town05_val" / "Town05" / "sequence_3"
    make_eventscape_sequence(seq, "05_003", 1, rng, log_depth=True)
    np.savez(seq / "events" / "data" / "05_003_0000_events.npz", x=np.zeros(3), y=np.zeros(3), t=np.zeros(3))
    assert process_eventscape.main(["--root", str(root), "--out", str(tmp_path / "out")]) == 2
    assert "lacks key(s) p" in capsys.readouterr().err


def test_change_bins_rebuilds_from_stored_windows(dense_root: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = dense_root
    out = tmp_path / "out"
    assert process_dense.main(["--root", str(root), "--out", str(out), "--splits", "train", "--save-events"]) == 0
    assert change_bins.main([str(out / "train.txt"), "--numbins", "5"]) == 0
    new_list = out / "train_5bins.txt"
    old_lines = (out / "train.txt").read_text().splitlines()
    new_lines = new_list.read_text().splitlines()
    assert len(new_lines) == len(old_lines) == 5
    for old, new in zip(old_lines, new_lines):
        assert old.split()[:2] == new.split()[:2]
        assert new.split()[2] == old.split()[2].replace("/voxels/", "/voxels_5bins/")
    for _, _, voxel_path in read_split_list(new_list):
        events = np.load(voxel_path.parent.parent / "events" / voxel_path.name)
        np.testing.assert_allclose(np.load(voxel_path), np.asarray(voxel_grid(events, 5, H, W)), atol=1e-6)
    sample = EventDepthDataset(new_list, "dense", mode="test", num_bins=5, resize=False)[0]
    assert sample["voxel"].shape == (5, H, W)


def test_change_bins_never_reuses_voxels_of_re_prepared_events(dense_root, tmp_path: Path, capsys) -> None:
    root, _ = dense_root
    out = tmp_path / "out"
    prepare = ["--root", str(root), "--out", str(out), "--splits", "train", "--save-events"]
    assert process_dense.main(prepare) == 0
    assert change_bins.main([str(out / "train.txt"), "--numbins", "5"]) == 0
    assert change_bins.main([str(out / "train.txt"), "--numbins", "5"]) == 0  # same events: reused
    assert "0 written, 5 already there" in capsys.readouterr().out
    assert process_dense.main([*prepare, "--sync-tol", "1e-4"]) == 2  # other settings: refused, then redone
    assert "sync_tol: 1e-05 there, 0.0001 now" in capsys.readouterr().err
    assert process_dense.main([*prepare, "--sync-tol", "1e-4", "--overwrite"]) == 0
    assert change_bins.main([str(out / "train.txt"), "--numbins", "5"]) == 2
    assert "events_prepared_by.settings.sync_tol" in capsys.readouterr().err
    assert change_bins.main([str(out / "train.txt"), "--numbins", "5", "--overwrite"]) == 0
    assert "5 written" in capsys.readouterr().out


def test_change_bins_without_stored_windows_exits_2(dense_root, tmp_path: Path, capsys) -> None:
    root, _ = dense_root
    out = tmp_path / "out"
    assert process_dense.main(["--root", str(root), "--out", str(out), "--splits", "test"]) == 0
    assert change_bins.main([str(out / "test.txt"), "--numbins", "5"]) == 2
    err = capsys.readouterr().err
    assert "--save-events" in err and "events/000000.npy" in err
    assert not (out / "test_5bins.txt").exists()


def test_scripts_run_from_the_command_line(dense_root, tmp_path: Path) -> None:
    import subprocess

    root, _ = dense_root
    result = subprocess.run(
        [sys.executable, "scripts/process_dense.py", "--root", str(root), "--out", str(tmp_path / "cli"),
         "--splits", "test"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "cli" / "test.txt").is_file()
