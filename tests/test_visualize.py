"""Colored depth and events, panels, atomic PNG and MP4 writing (``fuse.evaluate.visualize``)."""
from __future__ import annotations

import errno
import math
import os
import stat

import cv2
import numpy as np
import pytest

from fuse.atomic import WriteError
from fuse.data.constants import dataset_info
from fuse.evaluate import visualize
from fuse.evaluate.visualize import (
    Mp4Writer,
    colorize_depth,
    colorize_disparity,
    colorize_voxel,
    depth_colorbar,
    depth_ticks,
    make_panel,
    prediction_panel,
    relative_colorbar,
    write_png_atomic,
)

MVSEC = dataset_info("mvsec")
BLACK = [0, 0, 0]


def turbo(index: int) -> list[int]:
    """BGR color of one entry of the TURBO colormap."""
    return cv2.applyColorMap(np.array([[index]], np.uint8), cv2.COLORMAP_TURBO)[0, 0].tolist()


def depth_colors(depth: np.ndarray) -> np.ndarray:
    return colorize_depth(depth, MVSEC.max_depth, MVSEC.reg_factor)


def test_colorize_depth_maps_invalid_pixels_to_black_and_nothing_else():
    depth = np.array([[np.nan, np.inf, -np.inf, 0.0, -3.0, 5.0, 0.5, 500.0]], np.float32)
    colors = depth_colors(depth)
    assert colors.shape == (1, 8, 3) and colors.dtype == np.uint8
    assert colors[0, :5].tolist() == [BLACK] * 5
    assert all(pixel != BLACK for pixel in colors[0, 5:].tolist())


def test_colorize_depth_uses_the_fixed_normalized_log_scale():
    near, far = MVSEC.min_depth, MVSEC.max_depth
    middle = far * math.exp(-MVSEC.reg_factor / 2)  # normalized log depth 0.5
    colors = depth_colors(np.array([[near, middle, far, 0.5 * near, 2 * far]]))
    assert colors[0].tolist() == [turbo(255), turbo(128), turbo(0), turbo(255), turbo(0)]


def test_colorize_depth_is_the_same_for_a_depth_in_any_frame():
    rng = np.random.default_rng(0)
    first, second = rng.uniform(2, 80, (2, 20, 30))
    second[5, 7] = first[5, 7]
    np.testing.assert_array_equal(depth_colors(first)[5, 7], depth_colors(second)[5, 7])


def test_colorize_disparity_stretches_each_frame_and_blacks_out_nan():
    disparity = np.linspace(0.0, 1.0, 101).reshape(1, -1)
    disparity[0, 50] = np.nan
    colors = colorize_disparity(disparity)
    assert colors[0, 50].tolist() == BLACK
    assert colors[0, 0].tolist() == turbo(0) and colors[0, -1].tolist() == turbo(255)
    np.testing.assert_array_equal(colorize_disparity(disparity * 7 + 3), colors)
    assert (colorize_disparity(np.full((2, 2), np.nan)) == 0).all()


def test_colorize_voxel_red_positive_blue_negative():
    voxel = np.zeros((3, 2, 3), np.float32)
    voxel[:, 0, 0] = [1.0, 1.0, 0.0]   # sum +2: red
    voxel[:, 0, 1] = [-1.0, 0.0, -1.0]  # sum -2: blue
    voxel[:, 0, 2] = [1.0, -1.0, 0.0]  # sum 0: background
    voxel[:, 1, 0] = [0.5, 0.5, 0.0]  # sum +1: half-strength red
    white = colorize_voxel(voxel)
    assert white[0, 0].tolist() == [0, 0, 255]
    assert white[0, 1].tolist() == [255, 0, 0]
    assert white[0, 2].tolist() == [255, 255, 255] and white[1, 2].tolist() == [255, 255, 255]
    assert white[1, 0, 2] == 255 and 100 < white[1, 0, 0] == white[1, 0, 1] < 200
    black = colorize_voxel(voxel, background="black")
    assert black[0, 0].tolist() == [0, 0, 255] and black[0, 1].tolist() == [255, 0, 0]
    assert black[0, 2].tolist() == BLACK
    with pytest.raises(ValueError, match="background"):
        colorize_voxel(voxel, background="gray")


def test_prediction_panel_has_four_tiles_with_ground_truth_and_three_without():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    voxel = rng.normal(size=(3, 40, 50))
    prediction = depth_colors(rng.uniform(2, 80, (40, 50)))
    truth = depth_colors(rng.uniform(2, 80, (40, 50)))
    panel = prediction_panel(image, voxel, prediction, truth)
    assert panel.shape == (40, 200, 3) and panel.dtype == np.uint8
    # Below the label, each tile shows its input unchanged.
    np.testing.assert_array_equal(panel[30:, :50], cv2.cvtColor(image, cv2.COLOR_RGB2BGR)[30:])
    np.testing.assert_array_equal(panel[30:, 50:100], colorize_voxel(voxel)[30:])
    np.testing.assert_array_equal(panel[30:, 100:150], prediction[30:])
    np.testing.assert_array_equal(panel[30:, 150:], truth[30:])
    assert not np.array_equal(panel[:10, 150:], truth[:10])  # the label is drawn
    assert prediction_panel(image, voxel, prediction).shape == (40, 150, 3)
    gray = image[:, :, 0]
    assert prediction_panel(gray, None, prediction).shape == (40, 100, 3)


def bar_ticks(bar: np.ndarray) -> tuple[np.ndarray, list[int], int]:
    """(colors of the bar's strip per row, rows of its white tick marks, column right of the strip)."""
    colored = (bar != 0).any(axis=2)
    strip_columns = np.flatnonzero(colored.mean(axis=0) > 0.5)
    strip_rows = colored[:, strip_columns[0]]
    next_to_strip = bar[:, strip_columns[-1] + 1]
    ticks = np.flatnonzero((next_to_strip == 255).all(axis=1) & strip_rows)
    return bar[:, strip_columns[0]], ticks.tolist(), strip_columns[-1] + 1


def test_depth_ticks_are_round_metres_within_the_scale():
    assert depth_ticks(80.0, MVSEC.reg_factor) == [80, 50, 20, 10, 5, 2]
    assert depth_ticks(1000.0, 5.7) == [1000, 300, 100, 30, 10]  # 1-2-5 steps would be 8 ticks
    assert depth_ticks(1.0, 2.4) == [1, 0.5, 0.2, 0.1]


def test_depth_colorbar_tick_rows_have_the_tile_color_of_their_depth():
    bar = depth_colorbar(260, MVSEC.max_depth, MVSEC.reg_factor)
    assert bar.shape[0] == 260 and bar.dtype == np.uint8 and 30 < bar.shape[1] < 90
    strip, rows, right = bar_ticks(bar)
    ticks = depth_ticks(MVSEC.max_depth, MVSEC.reg_factor)
    assert len(rows) == len(ticks) == 6
    for row, depth in zip(rows, ticks):  # top to bottom: far to near
        assert strip[row].tolist() == depth_colors(np.array([[depth]]))[0, 0].tolist(), depth
        assert (bar[row - 3:row + 4, right + 4:] > 100).any()  # its label, right of the tick mark
    # The strip starts at max_depth (the tick 80) and ends at the nearest depth of the scale.
    assert strip[rows[0] - 1].tolist() == BLACK and strip[rows[0]].tolist() == turbo(0)
    assert strip[np.flatnonzero(strip.any(axis=1))[-1]].tolist() == turbo(255)


def test_relative_colorbar_runs_from_far_to_near_like_colorize_disparity():
    bar = relative_colorbar(260)
    strip, rows, _ = bar_ticks(bar)
    tile = colorize_disparity(np.linspace(0.0, 1.0, 101).reshape(1, -1))
    assert [strip[row].tolist() for row in rows] == [tile[0, 0].tolist(), tile[0, -1].tolist()]
    assert strip[rows[0] - 1].tolist() == BLACK and strip[rows[1] + 1].tolist() == BLACK  # the ticks end the strip


@pytest.mark.parametrize("height", [12, 40, 60])
def test_colorbars_of_small_tiles_keep_the_height_and_drop_labels_that_collide(height):
    for bar in (depth_colorbar(height, 1000.0, 5.7), relative_colorbar(height)):
        strip, rows, _ = bar_ticks(bar)
        assert bar.shape[0] == height and strip.any(axis=1).sum() >= height // 2
        assert all(b - a > 8 for a, b in zip(rows, rows[1:]))


def test_prediction_panel_appends_the_colorbar_at_the_right():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (260, 50, 3), dtype=np.uint8)
    prediction = depth_colors(rng.uniform(2, 80, (260, 50)))
    bar = depth_colorbar(260, MVSEC.max_depth, MVSEC.reg_factor)
    panel = prediction_panel(image, None, prediction, colorbar=bar)
    assert panel.shape == (260, 100 + bar.shape[1], 3)
    np.testing.assert_array_equal(panel[:, 100:], bar)
    np.testing.assert_array_equal(panel[:, :100], prediction_panel(image, None, prediction))
    with pytest.raises(ValueError, match="color bar is 40 px tall"):
        prediction_panel(image, None, prediction, colorbar=bar[:40])


def test_make_panel_rejects_tiles_of_different_size():
    with pytest.raises(ValueError, match="'b'"):
        make_panel([("a", np.zeros((4, 4, 3), np.uint8)), ("b", np.zeros((4, 5, 3), np.uint8))])


def test_write_png_atomic_round_trips_and_leaves_no_temp_file(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    path = write_png_atomic(tmp_path / "sub" / "a.png", image)
    np.testing.assert_array_equal(cv2.imread(str(path), cv2.IMREAD_UNCHANGED), image)
    assert os.listdir(tmp_path / "sub") == ["a.png"]


def test_write_png_atomic_keeps_the_old_file_when_the_rename_fails(tmp_path, monkeypatch):
    old = np.zeros((3, 3, 3), np.uint8)
    path = write_png_atomic(tmp_path / "a.png", old)

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(visualize.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        write_png_atomic(path, np.full((3, 3, 3), 255, np.uint8))
    monkeypatch.undo()
    np.testing.assert_array_equal(cv2.imread(str(path)), old)
    assert os.listdir(tmp_path) == ["a.png"]


def read_video(path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(frame)


def test_mp4_writer_renames_when_done_and_resizes_odd_frames(tmp_path):
    path = tmp_path / "v.mp4"
    with Mp4Writer(path, fps=5) as video:
        for value in (0, 120, 240):
            video.write(np.full((32, 48, 3), value, np.uint8))
            assert not path.exists()
        video.write(np.zeros((20, 20, 3), np.uint8))
    frames = read_video(path)
    assert len(frames) == 4 and frames[0].shape == (32, 48, 3)
    assert abs(int(frames[1].mean()) - 120) < 10
    assert os.listdir(tmp_path) == ["v.mp4"]


def test_mp4_writer_drops_the_video_on_error(tmp_path):
    with pytest.raises(RuntimeError, match="stop"):
        with Mp4Writer(tmp_path / "v.mp4") as video:
            video.write(np.zeros((16, 16, 3), np.uint8))
            raise RuntimeError("stop")
    assert os.listdir(tmp_path) == []


def test_mp4_writer_without_codec_raises_write_error_at_open_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(visualize, "MP4_CODEC", "XXXX")  # a codec OpenCV does not have
    path = tmp_path / "v.mp4"
    with pytest.raises(WriteError, match="codec|FFmpeg") as error:
        Mp4Writer(path)  # fails before any frame is computed
    assert str(path) in str(error.value) and "\n" not in str(error.value)
    assert os.listdir(tmp_path) == []


def test_mp4_writer_whose_folder_cannot_be_made_raises_write_error(tmp_path):
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "v.mp4"
    with pytest.raises(WriteError, match="cannot write") as error:
        Mp4Writer(path)
    assert str(path) in str(error.value)


def test_mp4_writer_in_a_read_only_folder_raises_write_error_at_open(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=stat.S_IRUSR | stat.S_IXUSR)
    if os.access(locked, os.W_OK):
        pytest.skip("this user writes to read-only folders (root)")
    path = locked / "v.mp4"
    with pytest.raises(WriteError, match="writable") as error:
        Mp4Writer(path)
    assert str(path) in str(error.value)
    assert os.listdir(locked) == []


def test_mp4_writer_whose_rename_fails_raises_write_error_and_drops_the_temp_file(tmp_path, monkeypatch):
    def full_disk(src, dst):
        raise OSError(errno.ENOSPC, "No space left on device")

    video = Mp4Writer(tmp_path / "v.mp4")
    video.write(np.zeros((16, 16, 3), np.uint8))
    monkeypatch.setattr(visualize.os, "replace", full_disk)
    with pytest.raises(WriteError, match="v.mp4: No space left on device; free some space"):
        video.close()
    assert os.listdir(tmp_path) == []
