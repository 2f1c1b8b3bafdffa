"""Colored depth and events, panels, atomic PNG and MP4 writing (``fuse.engine.visualize``)."""
from __future__ import annotations

import math
import os

import cv2
import numpy as np
import pytest

from fuse.data.constants import dataset_info
from fuse.engine import visualize
from fuse.engine.visualize import (
    Mp4Writer,
    colorize_depth,
    colorize_disparity,
    colorize_voxel,
    make_panel,
    prediction_panel,
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
