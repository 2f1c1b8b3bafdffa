"""FCFR-Net training on a tiny KITTI tree written here: ``python -m fuse std`` learns, the
augmentation is seeded and keeps the maps aligned, the masked MSE, ``fcfrnet-predict``'s 16-bit
maps as the input of stage ``fcfrnet``, and a bad depth file's message."""
from __future__ import annotations

import os
import re
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
from fuse.data.layout import png_header
from fuse.methods.fcfrnet.data import Augmentation, CompletionDataset
from fuse.methods.fcfrnet.kitti import bottom_crop, read_depth_png, split_frames
from fuse.methods.fcfrnet.stages import masked_mse

ROOT = Path(__file__).resolve().parents[1]
DRIVES = {"train": "2011_09_26_drive_0001_sync", "val": "2011_09_26_drive_0002_sync"}
HEIGHT, WIDTH = 64, 96  # frames; the networks see the bottom 48 x 80 (random 32 x 48 windows where asked)
CROP, WINDOW = (48, 80), (32, 48)
MARK = (40, 10)  # (row, column) of the marked pixel of frame 0 of the train split


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def write_depth(path: Path, depth_m: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.round(depth_m * 256).astype(np.uint16))


def scene(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8 x 8 tiles at depths 2-10 m in a random order, darker where farther: depth is learnable from
    the image and the LiDAR points, not from the position. Semi-dense GT (70 % of the pixels), LiDAR
    on 8 % of them."""
    rng = np.random.default_rng(seed)
    tiles = rng.permutation(np.linspace(2.0, 10.0, HEIGHT * WIDTH // 64)).reshape(HEIGHT // 8, WIDTH // 8)
    depth = np.kron(tiles, np.ones((8, 8)))
    gt = np.where(rng.random(depth.shape) < 0.7, depth, 0.0)
    sparse = np.where(rng.random(depth.shape) < 0.08, gt, 0.0)
    image = np.repeat((255 * (1.0 - depth / 12.0))[..., None], 3, axis=2).astype(np.uint8)
    return image, sparse, gt


def write_tree(root: Path, frames: dict[str, int]) -> None:
    """``frames[split]`` frames of one drive per split in the published layout; frame 0 of train
    carries a mark (green in the image, 77 m in both depth maps) at ``MARK``."""
    for split, count in frames.items():
        drive = DRIVES[split]
        for index in range(count):
            image, sparse, gt = scene(seed=100 * (split == "val") + index)
            if split == "train" and index == 0:
                image[MARK] = (0, 255, 0)
                sparse[MARK] = gt[MARK] = 77.0
            name = f"{index + 5:010d}.png"
            base = root / split / drive / "proj_depth"
            write_depth(base / "groundtruth" / "image_02" / name, gt)
            write_depth(base / "velodyne_raw" / "image_02" / name, sparse)
            path = root / drive[:10] / drive / "image_02" / "data" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            assert cv2.imwrite(str(path), image[..., ::-1])


@pytest.fixture(scope="module")
def kitti(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kitti")
    write_tree(root, {"train": 8, "val": 2})
    return root


def _fuse(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "fuse", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=300)


def _overrides(kitti: Path, run: Path, **keys: object) -> list[str]:
    settings = {"fcfrnet.root": kitti, "fcfrnet.val_split": "val", "fcfrnet.crop": list(CROP),
                "fcfrnet.train_crop": list(WINDOW), "data.workers": 0, "run.output_dir": run} | keys
    return [item for key, value in settings.items() for item in ("--set", f"{key}={value}")]


@pytest.fixture(scope="module")
def trained_std(kitti: Path) -> tuple[Path, list[float]]:
    """Three epochs of eight steps on the full 48 x 80 crop: with smaller windows the bottleneck
    holds 2 x 3 values, too few for BatchNorm's running statistics to follow in so few steps."""
    run = kitti.parent / "std_run"
    result = _fuse("std", "--config", str(ROOT / "configs/fcfrnet/kitti_std.yaml"),
                   *_overrides(kitti, run, **{"fcfrnet.train_crop": "null", "optim.epochs": 3, "optim.batch_size": 1,
                                              "optim.lr": 2e-3}), cwd=kitti.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    rmse = re.findall(r"std epoch \d+/3 validation: .*?rmse_mm=([\d.e+]+)", result.stdout)
    assert len(rmse) == 3, result.stdout
    return run, [float(value) for value in rmse]


def test_std_learns_through_python_m_fuse(trained_std):
    run, rmse = trained_std
    assert rmse[-1] < 0.8 * rmse[0], rmse
    assert (run / "model.pth").is_file() and (run / "best.pth").is_file()


def test_augmentation_is_drawn_from_seed_epoch_and_index(kitti):
    frames = split_frames(kitti, "train")
    one, two, other = (CompletionDataset(frames, CROP, Augmentation(window=WINDOW), seed=seed) for seed in (0, 0, 1))
    for dataset in (one, two, other):
        dataset.set_epoch(3)
    for index in range(len(frames)):
        first, again = one[index], two[index]
        assert all(torch.equal(first[key], again[key]) for key in first)
    assert first["image"].shape == (3, *WINDOW) and first["depth"].shape == (1, *WINDOW)
    assert first["gt"].shape == WINDOW and 0 <= first["image"].min() and first["image"].max() <= 1
    assert any(not torch.equal(one[index]["image"], other[index]["image"]) for index in range(len(frames)))
    two.set_epoch(4)
    assert any(not torch.equal(one[index]["image"], two[index]["image"]) for index in range(len(frames)))


def test_a_flip_moves_image_depth_and_gt_together(kitti):
    dataset = CompletionDataset(split_frames(kitti, "train")[:1], CROP, Augmentation())
    row, column = MARK[0] - (HEIGHT - CROP[0]), MARK[1] - (WIDTH - CROP[1]) // 2  # the mark in the bottom crop
    seen = set()
    for epoch in range(8):
        dataset.set_epoch(epoch)
        sample = dataset[0]
        green = sample["image"][1] - sample["image"][0]  # the gray scene has none
        where = {divmod(int(tile.argmax()), CROP[1]) for tile in (green, sample["depth"][0], sample["gt"])}
        assert len(where) == 1 and sample["depth"].max() == sample["gt"].max() == 77.0, where
        seen |= where
    assert seen == {(row, column), (row, CROP[1] - 1 - column)}  # both outcomes occurred, aligned each time


def test_masked_mse_leaves_out_pixels_without_ground_truth():
    prediction = torch.tensor([[1.0, 2.0], [3.0, 50.0]], requires_grad=True)
    loss = masked_mse(prediction, torch.tensor([[2.0, 2.0], [1.0, 0.0]]))
    assert loss.item() == pytest.approx((1.0 + 0.0 + 4.0) / 3)
    loss.backward()
    assert prediction.grad[1, 1] == 0
    none = masked_mse(prediction, torch.zeros(2, 2))
    assert none.item() == 0 and none.requires_grad


def test_predicted_coarse_maps_read_back_and_train_stage_fcfrnet(kitti, trained_std, tmp_path):
    run, _ = trained_std
    code = main(["fcfrnet-predict", "--checkpoint", str(run / "model.pth"), "--root", str(kitti), "--split", "train",
                 "--name", "std_coarse", "--out", str(tmp_path / "npy"), "--crop", *map(str, CROP), "--no-progress"])
    assert code == 0
    for frame in split_frames(kitti, "train", sparse="std_coarse"):
        assert png_header(frame.sparse)[:] == (HEIGHT, WIDTH, 16, 0)  # 16-bit gray, the frame's size
        coarse, exact = read_depth_png(frame.sparse), np.load(tmp_path / "npy" / f"{frame.name}.npy")
        assert np.abs(bottom_crop(coarse, CROP) - exact).max() <= 1 / 512 + 1e-6  # rounded to 1/256 m
        assert (coarse[:HEIGHT - CROP[0]] == 0).all() and (exact >= 0.9).all()  # no depth above the crop
    out = tmp_path / "fcfrnet_run"
    code = main(["fcfrnet", "--config", str(ROOT / "configs/fcfrnet/kitti_fcfrnet.yaml"),
                 *_overrides(kitti, out, **{"fcfrnet.coarse": "std_coarse", "fcfrnet.val_split": "null",
                                            "optim.epochs": 1, "optim.max_steps": 2, "run.image_every_steps": 1})])
    assert code == 0 and (out / "model.pth").is_file() and list((out / "tb").glob("events.out.tfevents.*"))


def test_an_8_bit_sparse_depth_png_exits_2_with_one_message_naming_it(tmp_path, capsys):
    write_tree(tmp_path / "kitti", {"val": 1})
    [frame] = split_frames(tmp_path / "kitti", "val")
    assert cv2.imwrite(str(frame.sparse), np.full((HEIGHT, WIDTH), 40, np.uint8))
    save_checkpoint(tmp_path / "std.pth", fuse.build_model("std"))
    code = main(["fcfrnet-predict", "--checkpoint", str(tmp_path / "std.pth"), "--root", str(tmp_path / "kitti"),
                 "--split", "val", "--out", str(tmp_path / "out"), "--crop", *map(str, CROP), "--no-progress"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("error: ") and str(frame.sparse) in lines[0] and "8-bit" in lines[0]
    assert not list((tmp_path / "out").iterdir())


def test_the_wrapper_prints_its_usage_and_refuses_an_unknown_mode():
    script = str(ROOT / "fcfrnet.sh")
    usage = subprocess.run(["bash", script, "-h"], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 0 and usage.stdout.startswith("Usage") and "train-std" in usage.stdout
    bad = subprocess.run(["bash", script, "fly"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "unknown mode 'fly'" in bad.stderr
