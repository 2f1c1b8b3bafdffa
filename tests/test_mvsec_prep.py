"""scripts/process_mvsec_hdf5.py and fuse.events.mvsec on tiny generated MVSEC recordings."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from fuse.events import MvsecRecording, voxel_grid
from fuse.events import mvsec as mvsec_module
from fuse.prep import mvsec as mvsec_export
from tests.mvsec_fixtures import Recording, write_files, write_recording

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "process_mvsec_hdf5.py"
SEQ = "outdoor_day1"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("process_mvsec_hdf5", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def rec(tmp_path) -> Recording:
    root = tmp_path / "raw"
    root.mkdir()
    return write_recording(root, SEQ)


def run(script, rec: Recording, out: Path, *extra: str) -> int:
    return script.main(["--root", str(rec.data_path.parent), "--out", str(out), SEQ, *extra])


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_outputs_match_the_recording(script, rec, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(script, rec, out, "--save-events") == 0
    kept = rec.kept_frames()
    assert len(kept) == 17 and 17 in kept and 16 not in kept

    lines = (out / f"{SEQ}.txt").read_text().splitlines()
    assert lines == [f"{SEQ}/images/{k:06d}.png {SEQ}/depths/{k:06d}.npy {SEQ}/voxels/{k:06d}.npy" for k in kept]
    for line in lines:
        assert all((out / path).is_file() for path in line.split())

    for k in kept:
        name = f"{k:06d}"
        image = cv2.imread(str(out / SEQ / "images" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(image, rec.images[rec.nearest_image(k)])
        depth = np.load(out / SEQ / "depths" / f"{name}.npy")
        assert depth.dtype == np.float32
        np.testing.assert_array_equal(depth, rec.depths[k])  # NaN positions included
        window = rec.window(k)
        events = np.load(out / SEQ / "events" / f"{name}.npy")
        assert events.dtype == np.float64
        np.testing.assert_array_equal(events, window)
        voxel = np.load(out / SEQ / "voxels" / f"{name}.npy")
        assert voxel.dtype == np.float32 and voxel.shape == (3, rec.height, rec.width)
        np.testing.assert_array_equal(voxel, voxel_grid(window, 3, rec.height, rec.width))

    skipped = {f"{k:06d}" for k in range(len(rec.depth_ts))} - {f"{k:06d}" for k in kept}
    assert not any(p.stem in skipped for p in (out / SEQ).rglob("*.*"))
    summary = capsys.readouterr().out
    assert "kept 17 (17 written, 0 already present)" in summary
    assert "2 no image within 10 ms" in summary and "1 no events in the 50 ms window" in summary


def test_window_edges_are_inclusive(rec):
    edge = rec.depth_ts[3]
    window = rec.window(3)
    assert window[0, 0] == edge - 0.05 and np.sum(window[:, 0] == edge) == 2
    with MvsecRecording(rec.data_path, rec.gt_path, chunk_size=5) as reader:
        info = list(reader.frames())[3]
        np.testing.assert_array_equal(reader.read_events(info.event_start, info.event_stop), window)


def test_frame_selection(rec):
    with MvsecRecording(rec.data_path, rec.gt_path) as reader:
        frames = list(reader.frames())
    assert [f.depth_index for f in frames] == list(range(20))
    assert "no image within 10 ms" in frames[12].skip_reason
    assert "no image within 10 ms" in frames[16].skip_reason
    assert "no events" in frames[7].skip_reason
    kept = rec.kept_frames()
    for f in frames:
        assert f.image_index == rec.nearest_image(f.depth_index)
        assert f.kept == (f.depth_index in kept)
        if f.kept:
            assert f.num_events == len(rec.window(f.depth_index))
            assert abs(f.image_ts - f.depth_ts) <= 0.010


def test_nearest_image_ties_go_to_the_earlier_image():
    times = np.array([0.0, 1.0, 2.0])
    np.testing.assert_array_equal(mvsec_module._nearest(times, np.array([0.5, 1.5, 1.6, -3.0, 9.0])), [0, 1, 2, 0, 2])


def test_chunked_reading_gives_the_same_outputs(script, rec, tmp_path, monkeypatch):
    reads = []
    real_read = mvsec_module._read

    def spy(path, dataset, selection):
        data = real_read(path, dataset, selection)
        if dataset.name.endswith("events"):
            reads.append((selection, len(data)))
        return data

    monkeypatch.setattr(mvsec_module, "_read", spy)
    chunk = 7
    assert len(rec.events) > 300 * chunk
    assert run(script, rec, tmp_path / "small", "--chunk-size", str(chunk), "--save-events") == 0
    longest_window = max(len(rec.window(k)) for k in range(len(rec.depth_ts)))
    column_reads = [n for sel, n in reads if isinstance(sel, tuple) and sel[0].step is None]
    assert column_reads and max(column_reads) <= chunk
    assert max(n for _, n in reads) <= max(longest_window, len(rec.events) // chunk + 1) < len(rec.events) // 4

    with MvsecRecording(rec.data_path, rec.gt_path, chunk_size=chunk) as reader:
        assert sum(f.kept for f in reader.frames()) == len(rec.kept_frames())
        assert len(reader._times._cache) <= 2  # chunks held in memory stay bounded

    monkeypatch.setattr(mvsec_module, "_read", real_read)
    assert run(script, rec, tmp_path / "huge", "--chunk-size", str(10**9), "--save-events") == 0
    small, huge = files_under(tmp_path / "small"), files_under(tmp_path / "huge")
    assert small.keys() == huge.keys() and len(small) == len(rec.kept_frames()) * 4 + 2  # + list, provenance.json
    assert all(small[name] == huge[name] for name in small)


def test_rerun_skips_and_repairs(script, rec, tmp_path, capsys):
    out = tmp_path / "out"
    assert run(script, rec, out) == 0
    first = files_under(out)
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()

    assert run(script, rec, out) == 0
    assert "kept 17 (0 written, 17 already present)" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps

    voxel = out / SEQ / "voxels" / "000005.npy"
    voxel.write_bytes(voxel.read_bytes()[:100])  # truncated by a crash or a full disk
    (out / SEQ / "images" / "000008.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (out / SEQ / "depths" / "000009.npy").unlink()
    stale = out / SEQ / "depths" / ".000010.npy.1a2b3c4d.partial"
    stale.write_bytes(b"half")
    assert run(script, rec, out) == 0
    assert "kept 17 (3 written, 14 already present)" in capsys.readouterr().out
    assert files_under(out) == first
    assert not stale.exists()

    assert run(script, rec, out, "--overwrite") == 0
    assert "17 written" in capsys.readouterr().out
    assert run(script, rec, out, "--numbins", "5") == 2  # made with 3 bins: never mixed with 5-bin files
    assert "num_bins: 3 there, 5 now" in capsys.readouterr().err
    assert np.load(out / SEQ / "voxels" / "000000.npy").shape == (3, rec.height, rec.width)
    assert run(script, rec, out, "--numbins", "5", "--overwrite") == 0
    assert "17 written" in capsys.readouterr().out
    assert np.load(out / SEQ / "voxels" / "000000.npy").shape == (5, rec.height, rec.width)


def _swap_late_events(rec: Recording) -> str:
    # inside frame 15's window and not next to a multiple of the chunk size used below
    i = int(np.searchsorted(rec.events[:, 2], rec.depth_ts[15] - 0.02))
    i += 2 if i % 7 in (0, 6) else 0
    rec.events[[i, i + 1]] = rec.events[[i + 1, i]]
    rec.events[i, 2] += 1e-3
    return f"timestamps in davis/left/events are not sorted (row {i + 1} is earlier than row {i})"


def _nan_timestamp(rec: Recording) -> str:
    row = len(rec.events) // 2
    rec.events[row, 2] = np.nan
    return f"non-finite timestamp in davis/left/events at row {row}"


def _off_sensor(rec: Recording) -> str:
    row = len(rec.events) // 2
    rec.events[row, 0] = rec.width
    return f"event {row} at x=16.0, y={rec.events[row, 1]} is outside the 16x12 sensor"


def _bad_polarity(rec: Recording) -> str:
    row = len(rec.events) // 2
    rec.events[row, 3] = 2.0
    return f"event {row} has polarity 2.0"


def _unsorted_depth_ts(rec: Recording) -> str:
    rec.depth_ts[[4, 5]] = rec.depth_ts[[5, 4]]
    return "timestamps in davis/left/depth_image_rect_ts are not sorted (row 5 is earlier than row 4)"


@pytest.mark.parametrize(
    "corrupt, file_kind",
    [
        (_swap_late_events, "data"),
        (_nan_timestamp, "data"),
        (_off_sensor, "data"),
        (_bad_polarity, "data"),
        (_unsorted_depth_ts, "gt"),
    ],
)
def test_bad_event_data_is_reported_and_rolled_back(script, rec, tmp_path, capsys, monkeypatch, corrupt, file_kind):
    message = corrupt(rec)
    write_files(rec)
    writes = []
    real_write = mvsec_export.save_npy_atomic
    monkeypatch.setattr(mvsec_export, "save_npy_atomic", lambda *a: writes.append(a[0]) or real_write(*a))
    out = tmp_path / "out"
    assert run(script, rec, out, "--chunk-size", "7") == 2
    err = capsys.readouterr().err
    path = rec.data_path if file_kind == "data" else rec.gt_path
    assert f"error: sequence {SEQ}: {path}: {message}" in err
    assert "Traceback" not in err
    assert not out.exists() or not any(p.is_file() for p in out.rglob("*"))
    if corrupt is _swap_late_events:
        assert writes  # the problem surfaced mid-run, after earlier frames had been written


def test_unsorted_across_a_chunk_boundary(rec):
    j = 7 * (int(np.searchsorted(rec.events[:, 2], rec.depth_ts[10])) // 7)
    rec.events[[j - 1, j]] = rec.events[[j, j - 1]]
    rec.events[j - 1, 2] += 1e-3
    write_files(rec)
    with pytest.raises(mvsec_module.RecordingError, match=rf"not sorted \(row {j} is earlier than row {j - 1}\)"):
        with MvsecRecording(rec.data_path, rec.gt_path, chunk_size=7) as reader:
            for info in reader.frames():
                if info.kept:
                    reader.read_events(info.event_start, info.event_stop)


def test_chunked_search(tmp_path):
    times = np.array([0.0, 1, 2, 2, 2, 5, 6, 7, 8])
    path = tmp_path / "t.hdf5"
    with h5py.File(path, "w") as f:
        f["t"] = times[:, None]
    with h5py.File(path, "r") as f:
        for chunk_size in (1, 2, 4, 100):
            index = mvsec_module._ChunkedTimes(f["t"], 0, chunk_size, str(path), "t")
            for value in (-1.0, 0.0, 1.5, 2.0, 4.0, 8.0, 9.0):
                for side in ("left", "right"):
                    expected = np.searchsorted(times, value, side)
                    assert index.searchsorted(value, side) == expected, (chunk_size, value, side)


def test_chunked_search_rejects_inversion_between_chunks(tmp_path):
    path = tmp_path / "t.hdf5"
    with h5py.File(path, "w") as f:
        f["t"] = np.array([[0.0], [1], [2], [5], [4], [6], [7], [8]])  # every chunk of 2 is sorted
    with h5py.File(path, "r") as f:
        index = mvsec_module._ChunkedTimes(f["t"], 0, 2, str(path), "t")
        with pytest.raises(mvsec_module.RecordingError, match=r"not sorted \(row 4 is earlier than row 3\)"):
            index.searchsorted(3.0, "left")


@pytest.mark.parametrize(
    "key",
    ["davis/left/events", "davis/left/image_raw_ts", "davis/left/depth_image_rect", "davis/left/depth_image_rect_ts"],
)
def test_missing_key(script, rec, tmp_path, capsys, key):
    write_files(rec, drop_keys=(key,))
    out = tmp_path / "out"
    assert run(script, rec, out) == 2
    err = capsys.readouterr().err
    assert f"missing dataset '{key}'" in err and "may not be an MVSEC" in err and SEQ in err
    assert not out.exists()


def test_truncated_file(script, rec, tmp_path, capsys):
    size = rec.data_path.stat().st_size
    with open(rec.data_path, "r+b") as f:
        f.truncate(size // 2)
    out = tmp_path / "out"
    assert run(script, rec, out) == 2
    err = capsys.readouterr().err
    assert str(rec.data_path) in err and "truncated or corrupt" in err and "Traceback" not in err
    assert not out.exists()


def test_other_sequences_still_processed_and_debug_raises(script, rec, tmp_path, capsys):
    out = tmp_path / "out"
    root = str(rec.data_path.parent)
    assert script.main(["--root", root, "--out", str(out), "outdoor_night9", SEQ]) == 2
    captured = capsys.readouterr()
    assert "error: sequence outdoor_night9:" in captured.err
    assert "outdoor_night9_data.hdf5: MVSEC data file not found" in captured.err
    assert (out / f"{SEQ}.txt").is_file() and "kept 17" in captured.out
    with pytest.raises(mvsec_module.RecordingError, match="not found"):
        script.main(["--root", root, "--out", str(out), "outdoor_night9", "--debug"])


def test_runs_as_a_script_from_the_repo_root(rec, tmp_path):
    root = str(rec.data_path.parent)
    command = [sys.executable, str(SCRIPT.relative_to(REPO)), "--root", root, "--out", str(tmp_path)]
    env = {**os.environ, "PYTHONPATH": ""}
    ok = subprocess.run([*command, SEQ], cwd=REPO, capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert f"{SEQ}: 20 depth frames, kept 17" in ok.stdout and (tmp_path / f"{SEQ}.txt").is_file()

    rec.gt_path.unlink()
    bad = subprocess.run([*command, SEQ], cwd=REPO, capture_output=True, text=True, env=env)
    assert bad.returncode == 2
    assert f"error: sequence {SEQ}: {rec.gt_path}: MVSEC ground-truth file not found" in bad.stderr
    assert "Traceback" not in bad.stderr
