"""Event files of real cameras (``fuse.events.readers`` and its formats) and ``infer --events``.

Real recordings come from ``../shared/samples`` (see its README); tests that need them skip where
it is absent. ``tests/data/frames_80x60.aedat4`` (events and frames, written by iniVation's
dv-processing: ``tests/data/make_frames_aedat4.py``) covers frames.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import fuse
from fuse.checkpoint import save_checkpoint
from fuse.cli import main
from fuse.events import EVENT_DTYPE, EventFileError, open_events, read_events
from fuse.events import prophesee
from fuse.events.readers import as_columns
from tests.data import make_frames_aedat4 as fixture

pytestmark = pytest.mark.usefixtures("one_thread")

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT.parent / "shared" / "samples"
FRAMES_FILE = ROOT / "tests" / "data" / "frames_80x60.aedat4"
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"real camera files not here: {SAMPLES} is absent "
                                                                 "(see ../shared/samples/README.md)")
needs_aedat = pytest.mark.skipif(importlib.util.find_spec("aedat") is None,
                                 reason="the optional package aedat is not installed (pip install aedat)")


def columns(events: np.ndarray) -> np.ndarray:
    """``(N, 4)`` int64 t, x, y, p of structured events, to compare with plain tables."""
    return np.stack([events[name].astype(np.int64) for name in "txyp"], axis=1)


# --- Prophesee RAW ---------------------------------------------------------------------------

@needs_samples
def test_evt3_sample_decodes_to_the_reference_events_with_the_reference_time_artefact_removed():
    """x, y, polarity and order equal ``evt3_sample.npy`` (expelliarmus' decoding) for all 219,596
    events. Time stamps equal it except that expelliarmus adds 4096 us wherever the 12-bit time-low
    field steps back without a time-high word (11 times here, visible as jumps of exactly 4097 us
    while the file's time-high words stay put); the file's own time words give a 8.8 ms recording,
    as evlib decodes it too (docs/event_files.md)."""
    reference = np.load(SAMPLES / "evt3_sample.npy")
    with open_events(SAMPLES / "evt3_sample.raw") as reader:
        assert isinstance(reader, prophesee.RawReader) and reader.encoding == "evt3"
        assert reader.sensor_size == (720, 1280)  # from the Gen4.1 plugin name: the header has no geometry
        assert len(reader) == 219_596
        assert reader.time_range() == (11_718_656, 11_727_457)
        events = reader.window(*np.add(reader.time_range(), (0, 1)))
    assert events.dtype == EVENT_DTYPE and len(events) == len(reference) == 219_596
    np.testing.assert_array_equal(events["x"], reference["x"])
    np.testing.assert_array_equal(events["y"], reference["y"])
    np.testing.assert_array_equal(events["p"], np.where(reference["p"] > 0, 1, -1))
    jumps = np.diff(reference["t"]) == 4097
    assert jumps.sum() == 11
    np.testing.assert_array_equal(events["t"], reference["t"] - 4096 * np.cumsum(np.r_[0, jumps]))
    assert np.all(np.diff(events["t"]) >= 0)
    # time_low_wraps reads the file as expelliarmus does: every event of the reference, exactly.
    with prophesee.RawReader(SAMPLES / "evt3_sample.raw", time_low_wraps=True) as reader:
        assert reader.time_range() == (int(reference["t"][0]), int(reference["t"][-1]))
        wrapped = reader.window(*np.add(reader.time_range(), (0, 1)))
    for field in ("t", "x", "y"):
        np.testing.assert_array_equal(wrapped[field], reference[field])
    np.testing.assert_array_equal(wrapped["p"], np.where(reference["p"] > 0, 1, -1))


@needs_samples
def test_evt2_sample_gives_its_539481_events():
    """The count from the file's source; the sums equal expelliarmus 1.1.12's decoding of the same file."""
    events = read_events(SAMPLES / "evt2_sample.raw")
    assert len(events) == 539_481
    assert np.all(np.diff(events["t"]) >= 0)
    table = columns(events)
    assert table.sum(axis=0)[:3].tolist() == [724_340_275_912, 171_811_022, 110_162_026]
    assert int((events["p"] > 0).sum()) == 367_855
    with open_events(SAMPLES / "evt2_sample.raw") as reader:
        assert reader.sensor_size == (480, 640)


@needs_samples
@pytest.mark.parametrize("name", ["evt2_sample.raw", "evt3_sample.raw"])
def test_raw_windows_across_chunks_tile_the_file(name, monkeypatch):
    """With small chunks, windows cross chunk boundaries, restart from any chunk and still tile the file."""
    whole = read_events(SAMPLES / name)
    monkeypatch.setattr(prophesee, "CHUNK_WORDS", 3001)
    with open_events(SAMPLES / name) as reader:
        first, last = reader.time_range()
        edges = np.linspace(first, last + 1, 40).astype(np.int64)
        windows = [reader.window(a, b) for a, b in zip(edges[:-1], edges[1:])]
        np.testing.assert_array_equal(np.concatenate(windows), whole)
        np.testing.assert_array_equal(reader.window(edges[5], edges[6]), windows[5])  # going back in time
        assert len(reader.window(last + 1, last + 10)) == 0


def write_raw(path: Path, header: str, words: np.ndarray) -> Path:
    path.write_bytes(header.encode() + words.tobytes())
    return path


def test_evt3_vectors_time_wrap_and_geometry_line(tmp_path):
    """Hand-assembled EVT 3.0 words: a single event, a 12-bit and an 8-bit vector (x base moving
    on), and a time-high wrap (24-bit time stamps) that keeps time increasing."""
    words = np.array([
        0x8000 | 0xFFF,           # time high 4095
        0x6000 | 0x010,           # time low 16 -> t = 4095 * 4096 + 16
        0x0000 | 7,               # y = 7
        0x2000 | 0x800 | 5,       # one ON event at x = 5
        0x3000 | 100,             # vector base x = 100, OFF
        0x4000 | 0b100000000101,  # x = 100, 102, 111
        0x5000 | 0b10000001,      # x = 112, 119
        0x8000 | 0x000,           # time high wraps to 0
        0x6000 | 0x001,           # t = 2^24 + 1
        0x2000 | 9,               # OFF event at x = 9
    ], "<u2")
    path = write_raw(tmp_path / "a.raw", "% evt 3.0\n% geometry 200x10\n", words)
    events = read_events(path)
    t0 = 4095 * 4096 + 16
    expected = [(t0, 5, 7, 1), (t0, 100, 7, -1), (t0, 102, 7, -1), (t0, 111, 7, -1), (t0, 112, 7, -1),
                (t0, 119, 7, -1), ((1 << 24) + 1, 9, 7, -1)]
    assert columns(events).tolist() == [list(e) for e in expected]
    with open_events(path) as reader:
        assert reader.sensor_size == (10, 200)


def test_evt2_time_high_and_format_line(tmp_path):
    words = np.array([0x10000000 | (3 << 22) | (4 << 11) | 2,  # before any time high: dropped
                      0x80000000 | 10,  # time high 10
                      0x10000000 | (3 << 22) | (4 << 11) | 2,  # ON at t = 10 * 64 + 3
                      0x00000000 | (5 << 22) | (6 << 11) | 1], "<u4")  # OFF at t = 645
    path = write_raw(tmp_path / "b.raw", "% format EVT2;height=8;width=16\n% end\n", words)
    assert columns(read_events(path)).tolist() == [[643, 4, 2, 1], [645, 6, 1, -1]]


@pytest.mark.parametrize("header, message", [
    ("% evt 2.1\n% geometry 640x480\n", "names encoding 'evt21'"),
    ("% evt 3.0\n% plugin_name mystery\n", "add a line such as '% geometry 1280x720'"),
])
def test_raw_headers_fuse_cannot_read_are_refused_with_the_fix(tmp_path, header, message):
    path = write_raw(tmp_path / "c.raw", header, np.zeros(4, "<u2"))
    with pytest.raises(EventFileError, match=message) as caught:
        open_events(path)
    assert str(path) in str(caught.value)


def test_corrupt_raw_data_is_refused(tmp_path):
    """Coordinates beyond the sensor mean the words are not what the header says."""
    words = np.array([0x8000 | 1, 0x0000 | 600, 0x2000 | 3], "<u2")
    path = write_raw(tmp_path / "d.raw", "% evt 3.0\n% geometry 640x480\n", words)
    with pytest.raises(EventFileError, match="outside the 640x480 sensor.*corrupt"):
        read_events(path)


# --- Prophesee DAT, npy, text ----------------------------------------------------------------

TABLE = np.array([[10, 1, 2, 1], [10, 3, 0, 0], [25, 7, 5, 1], [40, 0, 1, 0], [41, 2, 2, 1]], np.int64)


def write_dat(path: Path, table: np.ndarray, header: str = "% Version 2\n% Width 8\n% Height 6\n") -> Path:
    records = np.empty(len(table), [("t", "<u4"), ("data", "<u4")])
    records["t"] = table[:, 0]
    records["data"] = table[:, 1] | (table[:, 2] << 14) | (table[:, 3] << 28)
    path.write_bytes(header.encode() + bytes([0, 8]) + records.tobytes())
    return path


def test_dat_records_windows_and_size_from_data(tmp_path):
    path = write_dat(tmp_path / "e.dat", TABLE)
    with open_events(path) as reader:
        assert isinstance(reader, prophesee.DatReader) and reader.sensor_size == (6, 8) and len(reader) == 5
        assert reader.time_range() == (10, 41)
        assert columns(reader.window(10, 40)).tolist() == [[10, 1, 2, 1], [10, 3, 0, -1], [25, 7, 5, 1]]
    bare = write_dat(tmp_path / "f.dat", TABLE, header="% Version 2\n")
    with open_events(bare) as reader:
        assert reader.sensor_size == (6, 8)  # largest y + 1, largest x + 1


def test_dat_with_other_events_is_refused(tmp_path):
    path = tmp_path / "g.dat"
    path.write_bytes(b"% Version 2\n" + bytes([12, 16]) + bytes(32))
    with pytest.raises(EventFileError, match="8-byte change-detection"):
        open_events(path)


@pytest.mark.parametrize("layout", ["structured_us", "columns_seconds", "text_seconds", "csv_us_with_size"])
def test_plain_files(tmp_path, layout):
    expected = TABLE.copy()
    expected[:, 3] = np.where(TABLE[:, 3] > 0, 1, -1)
    if layout == "structured_us":
        path = tmp_path / "h.npy"
        np.save(path, np.rec.fromarrays([TABLE[:, 0], TABLE[:, 1].astype(np.int16), TABLE[:, 2].astype(np.int16),
                                         TABLE[:, 3].astype(np.uint8)], names="t,x,y,p"))
    elif layout == "columns_seconds":
        path = tmp_path / "i.npy"
        np.save(path, np.c_[TABLE[:, :1] * 1e-6, TABLE[:, 1:]])
    elif layout == "text_seconds":
        path = tmp_path / "j.txt"
        np.savetxt(path, np.c_[TABLE[:, :1] * 1e-6, TABLE[:, 1:]], fmt=["%.6f", "%d", "%d", "%d"], header="t x y p")
    else:
        path = tmp_path / "k.csv"
        path.write_text("20 10\n" + "\n".join(",".join(map(str, row)) for row in TABLE) + "\n")
    with open_events(path) as reader:
        assert reader.sensor_size == ((10, 20) if layout == "csv_us_with_size" else (6, 8))
        assert columns(reader.window(0, 100)).tolist() == expected.tolist()
        assert columns(reader.window(25, 41)).tolist() == expected[2:4].tolist()


@pytest.mark.parametrize("rows", [[0, 2, 1, 3, 4], [4, 3, 2, 1, 0]])
def test_unsorted_plain_file_is_refused(tmp_path, rows):
    path = tmp_path / "l.npy"
    np.save(path, TABLE[rows])
    with pytest.raises(EventFileError, match="not sorted"):
        read_events(path)


def test_as_columns_feeds_the_voxel_grid():
    events = np.array([(1_000_000, 3, 4, 1), (1_500_000, 5, 6, -1)], EVENT_DTYPE)
    np.testing.assert_array_equal(as_columns(events), [[1.0, 3, 4, 1], [1.5, 5, 6, -1]])


# --- AEDAT 4.0 -------------------------------------------------------------------------------

@needs_samples
@needs_aedat
def test_aedat4_sample_count_time_range_and_windows():
    with open_events(SAMPLES / "sample.aedat4") as reader:
        assert reader.sensor_size == (240, 320)  # DVXplorer
        assert len(reader) == 111_954
        first, last = reader.time_range()
        assert (first, last) == (1_605_537_493_718_345, 1_605_537_494_308_262)  # 0.59 s
        assert reader.frames() is None
        whole = reader.window(first, last + 1)
        edges = np.linspace(first, last + 1, 13).astype(np.int64)
        windows = [reader.window(a, b) for a, b in zip(edges[:-1], edges[1:])]
        again = reader.window(edges[2], edges[3])  # earlier than the last window: decoding starts over
    assert len(whole) == 111_954 and np.all(np.diff(whole["t"]) >= 0)
    np.testing.assert_array_equal(np.concatenate(windows), whole)
    np.testing.assert_array_equal(again, windows[2])
    assert set(np.unique(whole["p"])) == {-1, 1}


@needs_aedat
def test_aedat4_events_and_frames_written_by_dv_processing():
    with open_events(FRAMES_FILE) as reader:
        assert reader.sensor_size == (fixture.HEIGHT, fixture.WIDTH)
        np.testing.assert_array_equal(columns(reader.window(0, 1 << 62)), fixture.events())
        frames = list(reader.frames())
    assert [t for t, _ in frames] == [fixture.T0 + k * fixture.FRAME_US for k in range(fixture.FRAMES)]
    for k, (_, image) in enumerate(frames):
        np.testing.assert_array_equal(image, fixture.frame(k))


@needs_aedat
def test_corrupt_aedat4_names_the_file(tmp_path):
    truncated = tmp_path / "cut.aedat4"
    truncated.write_bytes(FRAMES_FILE.read_bytes()[:9000])
    with pytest.raises(EventFileError, match="truncated or corrupt") as caught:
        read_events(truncated)
    assert str(truncated) in str(caught.value)
    old = tmp_path / "old.aedat"
    old.write_bytes(b"#!AER-DAT3.1\r\n" + bytes(64))
    with pytest.raises(EventFileError, match="AEDAT 3.1 file; fuse reads AEDAT 4.0"):
        open_events(old)


def test_unknown_file_lists_the_formats(tmp_path):
    path = tmp_path / "notes.bin"
    path.write_bytes(b"\x00\x01 not events")
    with pytest.raises(EventFileError, match="not an event file of a known format") as caught:
        open_events(path)
    assert str(path) in str(caught.value)
    assert all(name in str(caught.value) for name in ("AEDAT 4.0 (.aedat4", "RAW EVT 2.0 / 3.0 (.raw)", "DAT (.dat)"))
    with pytest.raises(EventFileError, match="not found"):
        open_events(tmp_path / "missing.raw")


# --- infer --events and run.sh ---------------------------------------------------------------

@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny freshly built vitt models in this project's checkpoint format."""
    root = tmp_path_factory.mktemp("event_ckpt")
    paths = {}
    for kind in ("event_student", "fuse"):
        torch.manual_seed(0)
        paths[kind] = root / f"{kind}.pt"
        save_checkpoint(paths[kind], fuse.build_model(kind, encoder="vitt", head="metric", max_depth=80).eval())
    return paths


def infer(checkpoint: Path, events: Path, out: Path, *extra: str) -> int:
    return main(["infer", "--checkpoint", str(checkpoint), "--events", str(events), "--out", str(out), "--size", "70",
                 "--device", "cpu", "--no-progress", *extra])


@needs_samples
@needs_aedat
def test_run_sh_makes_depth_panels_from_an_aedat4_file_with_an_event_only_model(checkpoints, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(["bash", str(ROOT / "run.sh"), "-c", str(checkpoints["event_student"]),
                             "-e", str(SAMPLES / "sample.aedat4"), "-o", str(out), "--size", "70", "--device", "cpu",
                             "--limit", "2", "--no-progress"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert "50 ms windows" in result.stdout
    panels = sorted((out / "panels").glob("*.png"))
    assert [p.stem for p in panels] == ["000000", "000001"]
    depth = np.load(out / "depth" / "000000.npy")
    assert depth.shape == (240, 320) and np.isfinite(depth).all()
    assert cv2.imread(str(panels[0])).shape[0] == 240


@needs_aedat
def test_image_event_model_takes_the_frames_and_event_count_windows(checkpoints, tmp_path):
    """A fuse model on a file with frames: one frame per 500 events, the image tile is the file's
    frame nearest to the window's end."""
    out = tmp_path / "fuse"
    assert infer(checkpoints["fuse"], FRAMES_FILE, out, "--window-events", "500") == 0
    assert sorted(p.stem for p in (out / "depth").glob("*.npy")) == ["000000", "000001", "000002", "000003"]
    panel = cv2.imread(str(out / "panels" / "000000.png"))
    image_tile = panel[:fixture.HEIGHT, :fixture.WIDTH, 0]
    times = fixture.events()[:, 0]
    nearest = int(np.argmin(np.abs(fixture.T0 + fixture.FRAME_US * np.arange(fixture.FRAMES) - (times[500] - 1))))
    below_label = slice(20, None)  # the tile's name is written on its top rows
    np.testing.assert_array_equal(image_tile[below_label], fixture.frame(nearest)[below_label])


@needs_samples
@needs_aedat
def test_image_event_model_on_a_file_without_frames_exits_2(checkpoints, tmp_path, capsys):
    assert infer(checkpoints["fuse"], SAMPLES / "sample.aedat4", tmp_path / "x") == 2
    err = capsys.readouterr().err
    assert "sample.aedat4 holds no frames, but a fuse model needs images" in err
    assert not (tmp_path / "x").exists()


def test_unknown_event_file_exits_2_naming_it(checkpoints, tmp_path, capsys):
    bad = tmp_path / "recording.xyz"
    bad.write_bytes(b"garbage")
    assert infer(checkpoints["event_student"], bad, tmp_path / "y") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {bad}: not an event file of a known format")
    assert not (tmp_path / "y").exists()


def test_window_options_need_events(checkpoints, tmp_path, capsys):
    assert main(["infer", "--checkpoint", str(checkpoints["event_student"]), "--split", str(tmp_path / "s.txt"),
                 "--window-ms", "20"]) == 2
    assert "give --events FILE" in capsys.readouterr().err


def test_any_event_file_is_an_event_source_of_the_dsi_builder(tmp_path):
    """``between`` (seconds, both ends inclusive) gives what DERD-Net's in-memory source gives."""
    from fuse.methods.derdnet.dsi import ArrayEvents

    path = write_dat(tmp_path / "m.dat", TABLE)
    with open_events(path) as reader:
        everything = ArrayEvents(as_columns(reader.window(0, 100)))
        for start, stop in ((10e-6, 25e-6), (11e-6, 40e-6), (0.0, 1.0), (42e-6, 50e-6)):
            np.testing.assert_array_equal(reader.between(start, stop), everything.between(start, stop))


def test_event_file_source_plans_time_and_count_windows(tmp_path):
    """Time windows from the first event, empty ones skipped and counted; count windows start at every n-th event."""
    from fuse.evaluate.inference import EventFileSource, EventWindows

    table = np.array([[0, 1, 1, 1], [50, 2, 2, 0], [250, 3, 3, 1], [420, 4, 4, 0]], np.int64)
    path = write_dat(tmp_path / "n.dat", table)
    with EventFileSource(EventWindows(str(path), window_ms=0.1), 3, False, "event_student") as source:
        assert [(start, end) for _, start, end in source.bounds] == [(0, 100), (200, 300), (400, 500)]
        assert source.stems == ["000000", "000002", "000004"] and source.skipped == {"empty windows": 2}
        frame = next(iter(source)).load()
        assert frame.voxel.shape == (3, 6, 8) and frame.depth is None and not frame.image.any()
    with EventFileSource(EventWindows(str(path), window_events=2), 3, False, "event_student") as source:
        assert [(start, end) for _, start, end in source.bounds] == [(0, 250), (250, 421)]
