"""DERD-Net end to end through the shared commands, on a tiny synthetic stereo recording with poses.

The recording is ``fuse.demo.room``'s (a textured room seen by MVSEC's two DAVIS lenses, in
MVSEC's hdf5 layout with a camchain yaml), 96 x 72 pixels and 2.6 s. Then: ``derdnet-prepare`` ->
``python -m fuse derdnet`` on the even windows -> ``derdnet-infer`` on the odd windows -> ``eval
--protocol derdnet_points``, where the trained network must beat the arg-max baseline; the
released ensemble runs when ``shared/derdnet/models`` is there; bad inputs give one message, exit
code 2 and no output folder. Commands run in-process through ``fuse.cli.main`` (what ``python -m
fuse`` calls), as ``tests/test_plugin_method.py`` does.

Sizes: 32 depth planes, 0.5 s windows every 0.1 s (23 windows), 150 steps of 64: the arg-max
baseline is ~1.1 m off here, the network ~0.3 m after those steps. The tiny network runs
single-threaded (faster than two threads on shared CPUs).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from fuse.checkpoint import save_checkpoint
from fuse.cli import main as fuse_main
from fuse.demo.room import write_room
from fuse.methods.derdnet.data import PreparedFolder, SubDsiDataset
from fuse.methods.derdnet.model import DerdNet, DerdNetConfig, DepthRange
from fuse.methods.derdnet.stages import masked_l1

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "derdnet"
MODELS = Path(os.environ.get("DERDNET_MODELS", Path(__file__).resolve().parents[2] / "shared" / "derdnet" / "models"))
WIDTH, HEIGHT = 96, 72
WINDOWS = ["--duration", "0.5", "--step", "0.1"]
PREPARE = ["--max-confidence", "20", "--planes", "32", "--no-progress", *WINDOWS]


# ---------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("recording")
    write_room(root, "room", frames=52, height=HEIGHT, width=WIDTH, workers=1)
    return root / "room"


@pytest.fixture(scope="module")
def prepared(recording, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "room_stereo"
    assert fuse_main(["derdnet-prepare", "--recording", str(recording), "--out", str(out), *PREPARE]) == 0
    return out


def settings(**values) -> list[str]:
    return sum((["--set", f"{key}={value}"] for key, value in values.items()), [])


def points_mae(tmp_path: Path, out: Path, protocol: str = "derdnet_points") -> dict:
    report = tmp_path / f"{out.name}-{protocol}.json"
    assert fuse_main(["eval", "--protocol", protocol, "--pred", str(out / "depth"), "--target", str(out / "gt"),
                      "--dataset", "mvsec", "--json", str(report), "--no-progress"]) == 0
    return json.loads(report.read_text())


# ---------------------------------------------------------------- preparation

def test_prepare_keeps_points_not_volumes_and_restarts(prepared, recording, capsys):
    folder = PreparedFolder(prepared)
    count = folder.settings["windows"]["count"]
    assert count == 23 and folder.settings["stereo"] and folder.settings["planes"] == 32
    with np.load(prepared / "windows" / "000003.npz") as record:
        rows, cols, gt = record["rows"], record["cols"], record["gt"]
        assert gt.shape == (len(rows), 9) and np.isfinite(gt[:, 4]).mean() > 0.9
        assert record["argmax_depth"].shape == record["gt_map"].shape == (HEIGHT, WIDTH)
        assert record["event_frame"].sum() > 0 and np.all(np.diff(rows * WIDTH + cols) > 0)  # row-major
        np.testing.assert_allclose(record["confidence"], record["confidence_map"][rows, cols])
    blocks = folder.sub_dsi("000003")
    assert blocks.dtype == np.float16 and blocks.shape == (len(rows), 32, 7, 7)
    np.testing.assert_allclose(blocks.reshape(len(rows), -1).max(axis=1), 1.0)  # each divided by its maximum
    assert len(folder.split("even")) == 12 and len(folder.split("odd")) == 11

    capsys.readouterr()
    assert fuse_main(["derdnet-prepare", "--recording", str(recording), "--out", str(prepared), *PREPARE]) == 0
    assert f"0 built, {count} already done" in capsys.readouterr().err
    other = [*PREPARE[:-len(WINDOWS)], *WINDOWS[:-1], "0.2"]  # another window step
    assert fuse_main(["derdnet-prepare", "--recording", str(recording), "--out", str(prepared), *other]) == 2
    assert "holds outputs of another derdnet-prepare run" in capsys.readouterr().err


# ---------------------------------------------------------------- training beats the arg-max baseline

def test_trained_network_beats_argmax_on_held_out_windows(prepared, tmp_path, one_thread):
    run = tmp_path / "run"
    assert fuse_main(["derdnet", "--config", str(CONFIGS / "mvsec_stereo.yaml"), *settings(**{
        "derdnet.train": prepared, "derdnet.val": prepared, "derdnet.val_split": "odd", "data.workers": 0,
        "optim.max_steps": 150, "run.output_dir": run, "run.log_every": 50, "run.image_every_steps": 50})]) == 0
    assert (run / "model.pth").is_file() and (run / "best.pth").is_file()
    latest = torch.load(run / "latest.pth", weights_only=True)
    assert latest["scheduler"]["_last_lr"] == [1e-3]  # poly_power 0: the authors' constant learning rate

    outputs = {}
    for name, predictor in (("trained", ["--checkpoint", str(run / "model.pth")]), ("argmax", ["--argmax"])):
        outputs[name] = tmp_path / name
        assert fuse_main(["derdnet-infer", "--prepared", str(prepared), *predictor, "--split", "odd",
                          "--out", str(outputs[name]), "--no-progress"]) == 0
    trained, argmax = points_mae(tmp_path, outputs["trained"]), points_mae(tmp_path, outputs["argmax"])
    assert trained["points"] == argmax["points"] > 3000 and trained["frames"] == 11
    assert trained["mae_cm"] < 0.8 * argmax["mae_cm"], (trained["mae_cm"], argmax["mae_cm"])
    assert len(list((outputs["trained"] / "panels").glob("*.png"))) == 11
    assert points_mae(tmp_path, outputs["trained"], "e2depth_points")["frames"] == 11


def test_multi_pixel_training_masks_missing_neighbours(prepared, tmp_path, one_thread):
    run = tmp_path / "multi"
    assert fuse_main(["derdnet", "--config", str(CONFIGS / "mvsec_multipixel.yaml"), *settings(**{
        "derdnet.train": prepared, "derdnet.val": "null", "data.workers": 0, "optim.max_steps": 3,
        "run.output_dir": run})]) == 0
    out = tmp_path / "multi_out"
    assert fuse_main(["derdnet-infer", "--prepared", str(prepared), "--checkpoint", str(run / "model.pth"),
                      "--limit", "2", "--out", str(out), "--no-progress"]) == 0
    depth = np.load(out / "depth" / "000000.npy")
    with np.load(prepared / "windows" / "000000.npz") as record:
        selected = np.zeros(depth.shape, bool)
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                selected[record["rows"] + dr, record["cols"] + dc] = True
    np.testing.assert_array_equal(np.isfinite(depth), selected)  # the 3x3 neighbourhoods of every centre
    assert np.nanmin(depth) >= 1.0 and np.nanmax(depth) <= 6.5


def test_interrupted_training_resumes_exactly(prepared, tmp_path, one_thread):
    """Augmented batches depend on (seed, epoch, sample) only: 5 + 7 steps across an epoch end
    give the weights of 12 steps at once."""
    common = {"derdnet.train": prepared, "derdnet.val": "null", "derdnet.augment": "true", "data.workers": 0,
              "optim.batch_size": 512, "run.checkpoint_every_steps": 0}
    config = str(CONFIGS / "mvsec_stereo.yaml")
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert fuse_main(["derdnet", "--config", config, *settings(**common, **{
        "optim.max_steps": 12, "run.output_dir": whole})]) == 0
    assert fuse_main(["derdnet", "--config", config, *settings(**common, **{
        "optim.max_steps": 5, "run.output_dir": parts})]) == 0
    assert fuse_main(["derdnet", "--config", config, "--resume", *settings(**common, **{
        "optim.max_steps": 12, "run.output_dir": parts})]) == 0
    first, second = (torch.load(run / "model.pth", weights_only=True)["model"] for run in (whole, parts))
    assert all(torch.equal(first[key], second[key]) for key in first)


def test_sub_dsi_dataset_targets_splits_and_flips(prepared):
    folder = PreparedFolder(prepared)
    span = DepthRange(1.0, 6.5)
    plain = SubDsiDataset([folder], "odd", span, multi_pixel=True, clip_targets=False)
    flipped = SubDsiDataset([folder], "odd", span, multi_pixel=True, clip_targets=False, augment=True, seed=3)
    assert len(plain) > 3000 and plain.windows[0][1] == "000001"
    differs = 0
    for index in range(40):
        a, b = plain[index], flipped[index]
        target = a["target"].reshape(3, 3)
        matches = [dims for dims in ([], [0], [1], [0, 1])
                   if torch.equal(torch.flip(a["sub_dsi"], [d + 1 for d in dims]), b["sub_dsi"])]
        assert matches, "the augmented block is a flip of the plain one"
        torch.testing.assert_close(b["target"].reshape(3, 3), torch.flip(target, matches[0]), equal_nan=True)
        differs += bool(matches[0])
    assert differs > 10
    torch.testing.assert_close(a["target"], span.normalize(a["depth"]), equal_nan=True)
    clipped = SubDsiDataset([folder], "even", DepthRange(2.0, 3.0), multi_pixel=False, clip_targets=True)
    samples = [clipped[i] for i in range(len(clipped))]
    targets, depths = (torch.stack([sample[key] for sample in samples]) for key in ("target", "depth"))
    torch.testing.assert_close(targets, depths.clamp(2.0, 3.0) - 2.0)  # GT clipped to the range (spec §5.1)
    assert targets.min() == 0.0 and targets.max() == 1.0 and depths.min() < 2.0 and depths.max() > 3.0
    prediction, target = torch.tensor([0.5, 0.2, 0.9]), torch.tensor([0.4, float("nan"), 0.6])
    assert masked_l1(prediction, target).item() == pytest.approx(0.2)


# ---------------------------------------------------------------- the released ensemble

@pytest.mark.skipif(not MODELS.is_dir(), reason=f"DERD-Net's released weights are not at {MODELS}")
def test_released_ensemble_infers_and_evaluates(recording, tmp_path, one_thread):
    prepared = tmp_path / "room_100"  # the released networks were trained on 100 planes
    assert fuse_main(["derdnet-prepare", "--recording", str(recording), "--out", str(prepared),
                      "--max-confidence", "20", "--no-progress", "--stop", "0.76", *WINDOWS]) == 0
    fold = MODELS / "mvsec" / "indoor_flying1"
    out = tmp_path / "released"
    assert fuse_main(["derdnet-infer", "--prepared", str(prepared), "--checkpoint",
                      str(fold / "indoor_flying1_stereo_even_model.pth"), "--checkpoint",
                      str(fold / "indoor_flying1_stereo_odd_model.pth"), "--out", str(out), "--no-progress"]) == 0
    metrics = points_mae(tmp_path, out)
    assert metrics["frames"] == 3 and metrics["points"] > 300 and metrics["mae_cm"] < 300


# ---------------------------------------------------------------- bad input: one message, exit 2, nothing written

def copy_without(recording: Path, tmp_path: Path, ending: str, key: str) -> Path:
    """A copy of the recording whose ``ending`` file lacks the group or dataset ``key``."""
    target = tmp_path / "broken"
    target.mkdir()
    for path in recording.parent.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    with h5py.File(target / f"{recording.name}{ending}", "a") as handle:
        del handle[key]
    return target / recording.name


def test_recording_without_poses_is_refused(recording, tmp_path, capsys):
    broken = copy_without(recording, tmp_path, "_gt.hdf5", "davis/left/pose")
    out = tmp_path / "out"
    assert fuse_main(["derdnet-prepare", "--recording", str(broken), "--out", str(out), *PREPARE]) == 2
    message = capsys.readouterr().err
    assert message.startswith("error:") and "davis/left/pose" in message and "poses" in message
    assert not out.exists()


def test_stereo_without_right_events_is_refused(recording, tmp_path, capsys):
    broken = copy_without(recording, tmp_path, "_data.hdf5", "davis/right")
    out = tmp_path / "out"
    assert fuse_main(["derdnet-prepare", "--recording", str(broken), "--out", str(out), *PREPARE]) == 2
    message = capsys.readouterr().err
    assert "davis/right/events" in message and "mono" in message and not out.exists()


def test_calibration_missing_a_key_is_refused(recording, tmp_path, capsys):
    broken = tmp_path / "camchain.yaml"
    chain = yaml.safe_load((recording.parent / "room_calib.yaml").read_text())
    del chain["cam1"]["T_cn_cnm1"]
    broken.write_text(yaml.safe_dump(chain))
    out = tmp_path / "out"
    assert fuse_main(["derdnet-prepare", "--recording", str(recording), "--calibration", str(broken),
                      "--out", str(out), *PREPARE]) == 2
    assert "missing key 'cam1.T_cn_cnm1'" in capsys.readouterr().err and not out.exists()


def test_checkpoints_of_different_variants_are_refused(prepared, tmp_path, capsys):
    single = save_checkpoint(tmp_path / "single.pth", DerdNet(DerdNetConfig()))
    multi = save_checkpoint(tmp_path / "multi.pth", DerdNet(DerdNetConfig(multi_pixel=True)))
    out = tmp_path / "out"
    assert fuse_main(["derdnet-infer", "--prepared", str(prepared), "--checkpoint", str(single), "--checkpoint",
                      str(multi), "--out", str(out), "--no-progress"]) == 2
    message = capsys.readouterr().err
    assert "one variant" in message and "single-pixel" in message and "multi-pixel" in message
    assert not out.exists()


def test_training_on_folders_of_another_filter_is_refused(prepared, tmp_path, capsys):
    out = tmp_path / "run"
    assert fuse_main(["derdnet", "--config", str(CONFIGS / "mvsec_stereo.yaml"), *settings(**{
        "derdnet.train": prepared, "derdnet.val": "null", "derdnet.filter": "orig", "run.output_dir": out})]) == 2
    assert "was prepared with filter 'denser'" in capsys.readouterr().err and not out.exists()
