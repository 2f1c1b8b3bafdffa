"""Event-depth completion end to end on a tiny synthetic stereo recording (``fuse.demo.room``,
96 x 72 pixels, 2.6 s, the sizes of ``tests/test_derdnet_pipeline.py``): ``derdnet-prepare`` ->
``derdnet-infer --argmax`` (no weights) -> ``fcfrnet-from-events`` (even windows -> train, odd ->
val; DERD-Net's depth and a zero depth input for the image-only baseline) -> ``std`` (2 epochs) ->
``fcfrnet-predict --name`` -> ``fcfrnet`` (a few steps) -> ``fcfrnet-predict --out`` -> ``eval
--protocol e2depth --dataset mvsec``. The networks see the bottom 64 x 96 crop of the 72 x 96 frames.

The completion is scored against the nearest-neighbour fill of the same sparse maps and against
STD trained on images with its depth input zeroed; the numbers are printed, not asserted: a few
CPU seconds of training decide nothing about which is better (docs/fcfrnet.md, "Event-depth
completion"). Commands run in-process through ``fuse.cli.main``, single-threaded.
"""
from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from fuse.cli import main
from fuse.demo.room import write_room
from fuse.methods.derdnet.data import PreparedFolder
from fuse.methods.fcfrnet.events import default_crop, nearest_fill, sparse_input
from fuse.methods.fcfrnet.kitti import bottom_crop, read_depth_png, read_frame, split_frames

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "fcfrnet"
WIDTH, HEIGHT = 96, 72
CROP = (64, 96)  # the largest multiples of 16 in 72 x 96: 8 rows off the top
PREPARE = ["--max-confidence", "20", "--planes", "32", "--no-progress", "--duration", "0.5", "--step", "0.1"]
VAL_WINDOWS = 11  # the odd ones of 23


@pytest.fixture(scope="module")
def events(tmp_path_factory, one_thread) -> Path:
    """The recording, DERD-Net's arg-max depth of every window, and the KITTI tree of both inputs."""
    root = tmp_path_factory.mktemp("events")
    write_room(root, "room", frames=52, height=HEIGHT, width=WIDTH, workers=1)
    assert main(["derdnet-prepare", "--recording", str(root / "room"), "--out", str(root / "prep"), *PREPARE]) == 0
    assert main(["derdnet-infer", "--prepared", str(root / "prep"), "--argmax", "--out", str(root / "infer"),
                 "--no-progress"]) == 0
    for split, windows in (("train", "even"), ("val", "odd")):
        common = ["fcfrnet-from-events", "--recording", str(root / "room"), "--prepared", str(root / "prep"),
                  "--infer", str(root / "infer"), "--root", str(root / "kitti"), "--split", split, "--windows", windows]
        scored = ["--nn-out", str(root / "nn"), "--gt-out", str(root / "gt"), "--sparse-out",
                  str(root / "sparse")] if split == "val" else []
        assert main([*common, *scored]) == 0
        assert main([*common, "--sparse", "none", "--folder", "no_depth"]) == 0
        assert main([*common, "--sparse", "gt", "--folder", "gt_points"]) == 0
    return root


def _settings(root: Path, run: Path, **keys: object) -> list[str]:
    values = {"fcfrnet.root": root / "kitti", "fcfrnet.val_split": "null", "fcfrnet.crop": list(CROP),
              "fcfrnet.jitter": 0.0, "data.workers": 0, "optim.batch_size": 2, "run.output_dir": run} | keys
    return [item for key, value in values.items() for item in ("--set", f"{key}={value}")]


def _score(root: Path, predictions: Path) -> dict:
    report = predictions.with_suffix(".json")
    assert main(["eval", "--protocol", "e2depth", "--dataset", "mvsec", "--pred", str(predictions), "--target",
                 str(root / "gt"), "--json", str(report), "--no-progress"]) == 0
    return json.loads(report.read_text())


def test_tree_pairs_each_window_with_the_nearest_image_and_its_depth(events):
    prepared = PreparedFolder(events / "prep")
    frames = split_frames(events / "kitti", "val")
    assert len(frames) == VAL_WINDOWS and len(split_frames(events / "kitti", "train")) == 12
    assert default_crop(HEIGHT, WIDTH) == CROP
    frame = frames[2]
    stem = f"{int(frame.name.split('_')[-3]):06d}"  # room_sync_<10 digits>_image_02
    sample = read_frame(frame, crop=None)
    depth, gt = (np.load(events / "infer" / kind / f"{stem}.npy") for kind in ("depth", "gt"))
    assert sample.image.shape == (HEIGHT, WIDTH, 3) and sample.sparse.shape == (HEIGHT, WIDTH)
    (t_ref,) = prepared.record(stem, "t_ref")
    with h5py.File(events / "room_data.hdf5", "r") as handle:
        times = handle["davis/left/image_raw_ts"][:]
        nearest = handle["davis/left/image_raw"][int(np.argmin(np.abs(times - prepared.settings["t0"] - t_ref)))]
    np.testing.assert_array_equal(sample.image[..., 0], nearest)
    points = np.isfinite(depth)
    assert points.sum() > 100 and np.array_equal(sample.sparse > 0, points & (depth > 0))
    assert np.abs(sample.sparse[points] - depth[points]).max() <= 1 / 512 + 1e-6  # 1/256 m steps
    assert np.abs(sample.groundtruth - np.nan_to_num(gt)).max() <= 1 / 512 + 1e-6
    projected = read_depth_png(frame.sparse.parents[2] / "gt_points" / "image_02" / frame.sparse.name)
    on_gt = points & np.isfinite(gt)
    assert np.abs(projected[on_gt] - gt[on_gt]).max() <= 1 / 512 + 1e-6 and not projected[~points].any()
    assert not read_depth_png(frame.sparse.parents[2] / "no_depth" / "image_02" / frame.sparse.name).any()
    filled = np.load(events / "nn" / f"{frame.name}.npy")
    assert filled.shape == CROP and (filled > 0).all()
    np.testing.assert_allclose(filled, bottom_crop(nearest_fill(sample.sparse), CROP), atol=1 / 512 + 1e-6)  # unrounded
    np.testing.assert_array_equal(np.load(events / "gt" / f"{frame.name}.npy"), bottom_crop(gt, CROP))
    np.testing.assert_array_equal(np.load(events / "sparse" / f"{frame.name}.npy"),
                                  bottom_crop(np.where(points & (depth > 0), depth, np.nan), CROP))


def test_nearest_fill_takes_the_nearest_point():
    sparse = np.zeros((20, 30), np.float32)
    sparse[2, 3], sparse[15, 25] = 2.0, 7.0
    filled = nearest_fill(sparse)
    assert filled[0, 0] == 2.0 and filled[19, 29] == 7.0 and filled[5, 6] == 2.0 and filled[13, 22] == 7.0
    assert not nearest_fill(np.zeros((4, 4), np.float32)).any()
    depth = np.array([[np.nan, 3.0], [4.0, np.nan]], np.float32)
    gt = np.array([[1.0, np.nan], [5.0, 6.0]], np.float32)
    np.testing.assert_array_equal(sparse_input(depth, gt, "derdnet"), [[0, 3], [4, 0]])
    np.testing.assert_array_equal(sparse_input(depth, gt, "gt"), [[0, 0], [5, 0]])


def test_completion_runs_and_is_scored_on_the_frames_of_the_baselines(events, one_thread, capsys):
    root = events
    for run, sparse in (("std", "velodyne_raw"), ("image_only", "no_depth")):
        assert main(["std", "--config", str(CONFIGS / "kitti_std.yaml"),
                     *_settings(root, root / run, **{"optim.epochs": 2, "fcfrnet.sparse": sparse})]) == 0
    for split in ("train", "val"):
        assert main(["fcfrnet-predict", "--checkpoint", str(root / "std" / "model.pth"), "--root", str(root / "kitti"),
                     "--split", split, "--name", "std_coarse", "--crop", *map(str, CROP), "--no-progress"]) == 0
    assert main(["fcfrnet", "--config", str(CONFIGS / "kitti_fcfrnet.yaml"), *_settings(root, root / "fcfrnet", **{
        "fcfrnet.coarse": "std_coarse", "optim.lr": 1e-4, "optim.batch_size": 1, "optim.epochs": 1,
        "optim.max_steps": 8})]) == 0
    for name, checkpoint, depth in (("completion", "fcfrnet", "std_coarse"), ("image_only_maps", "image_only",
                                                                              "no_depth")):
        assert main(["fcfrnet-predict", "--checkpoint", str(root / checkpoint / "model.pth"), "--root",
                     str(root / "kitti"), "--split", "val", "--input", depth, "--out", str(root / name),
                     "--crop", *map(str, CROP), "--no-progress"]) == 0

    names = sorted(path.name for path in (root / "gt").glob("*.npy"))
    assert len(names) == VAL_WINDOWS
    for folder in ("completion", "image_only_maps", "nn"):
        assert sorted(path.name for path in (root / folder).glob("*.npy")) == names  # one frame set for all
        maps = np.stack([np.load(root / folder / name) for name in names])
        assert maps.shape == (VAL_WINDOWS, *CROP) and np.isfinite(maps).all() and (maps > 0).all()  # dense
    scores = {name: _score(root, root / folder) for name, folder in (
        ("completion", "completion"), ("nn-fill", "nn"), ("image-only", "image_only_maps"))}
    assert all(score["frames"] == VAL_WINDOWS for score in scores.values())
    with capsys.disabled():
        print("\nevent-depth completion, room 96x72, argmax DERD-Net depth, val = 11 odd windows (e2depth, mvsec):")
        for name, score in scores.items():
            print(f"  {name:11s} Abs.Rel {score['abs_rel']:.3f}  RMSE {score['rmse']:.3f} m")


def test_missing_inputs_exit_2_with_one_message(events, tmp_path, capsys):
    common = ["--prepared", str(events / "prep"), "--root", str(tmp_path / "kitti")]
    assert main(["fcfrnet-from-events", "--recording", str(events / "room"), "--infer", str(tmp_path / "none"),
                 *common]) == 2
    message = capsys.readouterr().err
    assert message.startswith("error:") and "derdnet-infer" in message and str(tmp_path / "none") in message
    assert main(["fcfrnet-from-events", "--recording", str(tmp_path / "gone"), "--infer", str(events / "infer"),
                 *common]) == 2
    message = capsys.readouterr().err
    assert "gone_data.hdf5" in message and "not found" in message
    assert main(["fcfrnet-from-events", "--recording", str(events / "room"), "--infer", str(events / "infer"),
                 "--prepared", str(tmp_path), "--root", str(tmp_path / "kitti")]) == 2
    assert "derdnet-prepare" in capsys.readouterr().err
