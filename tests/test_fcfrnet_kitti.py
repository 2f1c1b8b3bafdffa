"""KITTI depth completion: the metrics against hand-computed values, a tiny published-layout tree
read back, clear errors on bad files, and ``eval --protocol kitti_completion``."""
from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from fuse.cli import main
from fuse.errors import DataFormatError, MissingDataError
from fuse.evaluate.protocols import protocol_named
from fuse.evaluate.published import all_rows
from fuse.methods.fcfrnet.kitti import bottom_crop, iter_split, read_depth_png, read_frame, split_frames
from fuse.methods.fcfrnet.metrics import KITTI_COMPLETION, evaluate_pairs, image_metrics
from fuse.methods.fcfrnet.published import ROWS

DRIVE = "2011_09_26_drive_0001_sync"


# ----------------------------------------------------------------------------- metrics


def test_units_are_mm_and_inverse_km():
    metrics = image_metrics(np.array([[2.0, 4.0]]), np.array([[1.0, 5.0]]))
    assert metrics["rmse_mm"] == pytest.approx(1000.0) and metrics["mae_mm"] == pytest.approx(1000.0)
    # 1/km: 1/0.002 - 1/0.001 = -500, 1/0.004 - 1/0.005 = 50
    assert metrics["irmse_per_km"] == pytest.approx(math.sqrt((500.0**2 + 50.0**2) / 2))
    assert metrics["imae_per_km"] == pytest.approx(275.0)


def test_images_are_averaged_not_pooled(tmp_path):
    one = (np.array([[2.0]]), np.array([[1.0]]))  # error 1 m
    two = (np.array([[10.0, 20.0]]), np.array([[10.0, 20.0]]))  # exact
    pairs = []
    for index, (pred, gt) in enumerate((one, two)):
        pairs.append((tmp_path / f"pred{index}.npy", tmp_path / f"gt{index}.npy"))
        np.save(pairs[-1][0], pred)
        np.save(pairs[-1][1], gt)
    metrics = evaluate_pairs(pairs, "kitti")
    assert metrics["rmse_mm"] == pytest.approx(500.0) and metrics["mae_mm"] == pytest.approx(500.0)
    pooled_rmse, pooled_mae = math.sqrt(1000.0**2 / 3), 1000.0 / 3  # 577.35 and 333.33 over the three pixels
    assert metrics["rmse_mm"] != pytest.approx(pooled_rmse) and metrics["mae_mm"] != pytest.approx(pooled_mae)
    assert metrics["frames"] == 2 and metrics["skipped"] == 0


def test_only_ground_truth_above_a_tenth_of_a_metre_is_scored():
    gt = np.array([[0.1, 0.0, np.nan, 0.2]], np.float32)  # float32 0.1 is not above 0.1 either
    pred = np.array([[5.0, 5.0, 5.0, 1.2]], np.float32)
    metrics = image_metrics(pred, gt)
    assert metrics["mae_mm"] == pytest.approx(1000.0, rel=1e-6)  # only 0.2 -> 1.2 is scored
    assert image_metrics(pred, np.array([[0.1, 0.0, np.nan, 0.05]])) == {}


def test_predictions_are_clamped_to_the_kitti_range():
    metrics = image_metrics(np.array([[0.5, 100.0]]), np.array([[1.0, 80.0]]))
    assert metrics["mae_mm"] == pytest.approx((100.0 + 5000.0) / 2)  # scored as 0.9 and 85


def test_frames_without_valid_pixels_are_skipped(tmp_path):
    pairs = [(tmp_path / "p0.npy", tmp_path / "g0.npy"), (tmp_path / "p1.npy", tmp_path / "g1.npy")]
    np.save(pairs[0][0], np.array([[3.0]]))
    np.save(pairs[0][1], np.array([[2.0]]))
    np.save(pairs[1][0], np.array([[3.0]]))
    np.save(pairs[1][1], np.array([[0.0]]))
    metrics = evaluate_pairs(pairs, "kitti")
    assert metrics["mae_mm"] == pytest.approx(1000.0) and metrics["frames"] == 1 and metrics["skipped"] == 1


# ----------------------------------------------------------------------------- the KITTI tree


def write_depth(path: Path, depth_m: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.round(depth_m * 256).astype(np.uint16))


def write_image(path: Path, height: int, width: int) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[..., 0] = 200  # red, to catch a BGR/RGB swap
    rgb[..., 2] = np.arange(width, dtype=np.uint8)[None, :]
    assert cv2.imwrite(str(path), rgb[..., ::-1])
    return rgb


def depth_pattern(height: int, width: int, seed: int) -> np.ndarray:
    """Depths k/256 m (exact in a PNG) with a zero column: no depth there."""
    depth = np.random.default_rng(seed).integers(1, 80 * 256, (height, width)) / 256.0
    depth[:, 1] = 0.0
    return depth


def drive_frame(root: Path, split: str, camera: str, frame: str, shape: tuple[int, int], seed: int):
    base = root / split / DRIVE / "proj_depth"
    gt, sparse = depth_pattern(*shape, seed), depth_pattern(*shape, seed + 1)
    write_depth(base / "groundtruth" / camera / f"{frame}.png", gt)
    write_depth(base / "velodyne_raw" / camera / f"{frame}.png", sparse)
    rgb = write_image(root / DRIVE[:10] / DRIVE / camera / "data" / f"{frame}.png", *shape)
    return rgb, sparse, gt


def test_train_split_reads_back_in_metres(tmp_path):
    rgb, sparse, gt = drive_frame(tmp_path, "train", "image_03", "0000000005", (16, 40), 0)
    drive_frame(tmp_path, "train", "image_02", "0000000005", (16, 40), 2)
    frames = split_frames(tmp_path, "train")
    assert [frame.name for frame in frames] == [f"{DRIVE}_0000000005_image_02", f"{DRIVE}_0000000005_image_03"]
    sample = read_frame(frames[1], crop=None)
    assert sample.image.dtype == np.uint8 and np.array_equal(sample.image, rgb)
    assert sample.groundtruth.dtype == np.float32 and np.array_equal(sample.groundtruth, gt.astype(np.float32))
    assert np.array_equal(sample.sparse, sparse.astype(np.float32))
    assert (sample.groundtruth[:, 1] == 0).all()  # no depth stays 0
    cropped = read_frame(frames[1], crop=(8, 32))
    assert np.array_equal(cropped.groundtruth, sample.groundtruth[8:, 4:36])
    assert np.array_equal(cropped.image, rgb[8:, 4:36])


def test_raw_images_may_live_elsewhere(tmp_path):
    depths, raw = tmp_path / "depth", tmp_path / "raw"
    drive_frame(depths, "val", "image_02", "0000000007", (16, 40), 0)
    raw.mkdir()
    (depths / DRIVE[:10]).rename(raw / DRIVE[:10])
    with pytest.raises(MissingDataError, match="no image"):
        split_frames(depths, "val")
    [sample] = iter_split(depths, "val", raw=raw, crop=None)
    assert sample.image.shape == (16, 40, 3)


def test_default_crop_is_the_bottom_352_by_1216_centred():
    frame = np.arange(375 * 1241).reshape(375, 1241)
    cropped = bottom_crop(frame)
    assert cropped.shape == (352, 1216)
    assert cropped[0, 0] == frame[23, 12] and cropped[-1, -1] == frame[374, 1227]  # 25 columns: 12 left, 13 right
    # the left offset rounds half to even, as the reference's Python round
    assert bottom_crop(np.arange(9)[None, :], (1, 4))[0, 0] == 2  # round(2.5) = 2
    assert bottom_crop(np.arange(11)[None, :], (1, 4))[0, 0] == 4  # round(3.5) = 4
    with pytest.raises(DataFormatError, match="smaller than the 352x1216"):
        bottom_crop(np.zeros((16, 40)))


def test_val_selection_pairs_the_three_folders_by_name(tmp_path):
    folder = tmp_path / "depth_selection" / "val_selection_cropped"
    stem = "0000000005_image_02"
    gt = depth_pattern(352, 1216, 0)
    write_depth(folder / "groundtruth_depth" / f"{DRIVE}_groundtruth_depth_{stem}.png", gt)
    write_depth(folder / "velodyne_raw" / f"{DRIVE}_velodyne_raw_{stem}.png", depth_pattern(352, 1216, 1))
    write_image(folder / "image" / f"{DRIVE}_image_{stem}.png", 352, 1216)
    [sample] = iter_split(tmp_path, "val_selection")  # the default crop leaves 352 x 1216 as it is
    assert sample.frame.name == f"{DRIVE}_{stem}"
    assert sample.image.shape == (352, 1216, 3)
    assert np.array_equal(sample.groundtruth, gt.astype(np.float32))


# ----------------------------------------------------------------------------- bad input


def test_an_8_bit_depth_png_is_refused(tmp_path):
    path = tmp_path / "depth.png"
    cv2.imwrite(str(path), np.full((4, 5), 40, np.uint8))
    with pytest.raises(DataFormatError, match=r"depth\.png: 8-bit single-channel PNG, not a KITTI depth "
                                              r"map \(a 16-bit single-channel PNG"):
        read_depth_png(path)


def test_colour_and_non_png_depth_files_are_refused(tmp_path):
    colour, other = tmp_path / "colour.png", tmp_path / "other.png"
    cv2.imwrite(str(colour), np.zeros((4, 5, 3), np.uint16))
    np.save(tmp_path / "other.npy", np.zeros((4, 5)))
    (tmp_path / "other.npy").rename(other)
    with pytest.raises(DataFormatError, match="16-bit colour PNG"):
        read_depth_png(colour)
    with pytest.raises(DataFormatError, match="not a whole PNG file"):
        read_depth_png(other)


def test_image_and_depth_of_different_sizes_are_refused(tmp_path):
    drive_frame(tmp_path, "train", "image_02", "0000000005", (16, 40), 0)
    write_image(tmp_path / DRIVE[:10] / DRIVE / "image_02" / "data" / "0000000005.png", 16, 42)
    [frame] = split_frames(tmp_path, "train")
    with pytest.raises(DataFormatError, match=r"differ in size \(image .*0000000005\.png is 16x42; sparse depth "
                                              r".* is 16x40; ground truth .* is 16x40\)"):
        read_frame(frame)


def test_missing_sparse_depth_and_empty_folders_are_named(tmp_path):
    drive_frame(tmp_path, "train", "image_02", "0000000005", (16, 40), 0)
    (tmp_path / "train" / DRIVE / "proj_depth" / "velodyne_raw" / "image_02" / "0000000005.png").unlink()
    with pytest.raises(MissingDataError, match="1 of 1 frames have no sparse depth"):
        split_frames(tmp_path, "train")
    with pytest.raises(MissingDataError, match="no ground-truth depth maps in"):
        split_frames(tmp_path, "val")


# ----------------------------------------------------------------------------- protocol and published rows


def test_png_targets_are_scored_like_npy(tmp_path):
    gt = np.clip(depth_pattern(6, 7, 0), 0.0, 50.0)  # 0 stays 0 (not scored); the rest away from the clamp
    gt[gt > 0] = np.maximum(gt[gt > 0], 1.0)
    write_depth(tmp_path / "gt.png", gt)
    pred = gt + 0.5
    np.save(tmp_path / "pred.npy", pred)
    metrics = evaluate_pairs([(tmp_path / "pred.npy", tmp_path / "gt.png")], "kitti")
    expected = image_metrics(pred, gt.astype(np.float32))
    assert {key: metrics[key] for key in expected} == pytest.approx(expected)
    assert metrics["mae_mm"] == pytest.approx(500.0)


def test_cli_gives_the_functions_numbers(tmp_path, capsys):
    pred_dir, gt_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    gt_dir.mkdir()
    rng = np.random.default_rng(3)
    pairs = []
    for index in range(3):
        gt = depth_pattern(8, 12, index).astype(np.float32)
        pred = (gt + rng.normal(0, 0.3, gt.shape)).astype(np.float32)
        pairs.append((pred_dir / f"{DRIVE}_{index:010d}_image_02.npy", gt_dir / f"gt_{index}.npy"))
        np.save(pairs[-1][0], pred)
        np.save(pairs[-1][1], gt)
    report = tmp_path / "metrics.json"
    code = main(["eval", "--no-progress", "--protocol", "kitti_completion", "--dataset", "kitti",
                 "--pred", str(pred_dir), "--target", str(gt_dir), "--json", str(report),
                 "--compare-published", "base", "--method", "FCFR-Net Paddle port", "--sequence", "val_selection"])
    assert code == 0
    written = json.loads(report.read_text())
    expected = evaluate_pairs(pairs, "kitti")
    assert {key: written[key] for key in expected} == expected
    assert written["settings"]["clamp"] == [0.9, 85.0] and written["settings"]["min_target"] == 0.1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "| Method | RMSE [mm] ↓ | MAE [mm] ↓ | iRMSE [1/km] ↓ | iMAE [1/km] ↓ |"
    assert lines[3] == "| FCFR-Net Paddle port (published) | 784.224 | 222.639 | 2.370 | 1.014 |"
    assert lines[4].startswith("| STD (Ma et al. 2019) (published) | 814.730 |")
    png_dir = tmp_path / "gt_png"  # the KITTI ground-truth PNGs themselves, as the protocol's targets
    png_dir.mkdir()
    png_pairs = [(pred, png_dir / f"gt_{index}.png") for index, (pred, _) in enumerate(pairs)]
    for (_, npy), (_, png) in zip(pairs, png_pairs):
        write_depth(png, np.load(npy))
    assert main(["eval", "--no-progress", "--protocol", "kitti_completion", "--dataset", "kitti",
                 "--pred", str(pred_dir), "--target", str(png_dir), "--json", str(report)]) == 0
    written = json.loads(report.read_text())
    expected = evaluate_pairs(png_pairs, "kitti")
    assert {key: written[key] for key in expected} == expected


def test_protocol_and_published_rows_are_registered():
    assert protocol_named("kitti_completion") is KITTI_COMPLETION
    assert all(row in all_rows("kitti_completion") for row in ROWS)
    rows = {(row.method, row.sequence): row.metrics for row in all_rows("kitti_completion")}
    assert rows["FCFR-Net", "test"] == {"rmse_mm": 735.81, "mae_mm": 217.15, "irmse_per_km": 2.20,
                                         "imae_per_km": 0.98}
    assert rows["FCFR-Net Paddle port", "val_selection"] == {"rmse_mm": 784.224, "mae_mm": 222.639,
                                                             "irmse_per_km": 2.370, "imae_per_km": 1.014}
