"""Bad input through the commands a researcher runs: one ``error:`` line naming the file (or key)
and the problem, exit code 2, no traceback unless ``--debug``; holes in depth are masked."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import fuse
from fuse.cli import main as fuse_main
from fuse.checkpoint import read_checkpoint, save_checkpoint
from fuse.train.config import ConfigError
from fuse.train.losses import silog_loss
from fuse.evaluate.metrics import batch_metric_sums, finalize_sums
from fuse.testing.fixtures import write_split, write_teacher
from tests import mvsec_fixtures


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_input")
    split = write_split(root / "data", frames=8)
    teacher = write_teacher(root / "dav2.pth")
    return {"root": root, "split": split, "teacher": teacher}


def train_args(stage: str, out: Path, **settings) -> list[str]:
    items = {"model.encoder": "vitt", "data.dataset": "mvsec", "data.input_size": 56, "data.workers": 0,
             "optim.batch_size": 2, "optim.epochs": 1, "run.output_dir": out, **settings}
    return [stage, *sum((["--set", f"{key}={value}"] for key, value in items.items()), [])]


def error_of(capsys) -> str:
    """The command's stderr, checked to hold an ``error:`` line and no traceback."""
    err = capsys.readouterr().err
    assert "error: " in err and "Traceback" not in err, err
    return err


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=1", "unknown config key 'optim.lrr'; allowed here: ['batch_size', 'betas'"),
    ("optim.epochs=ten", "config key 'optim.epochs' must be an integer, got 'ten'"),
    ("optim.batch_size=0", "config key 'optim.batch_size' must be an integer >= 1, got 0"),
    ("optim.lr=nan", "config key 'optim.lr' must be a finite number > 0, got nan"),
    ("data.input_size=50", "config key 'data.input_size' must be an integer >= 56 and a multiple of 14, got 50"),
    ("data.degradation=fog", "config key 'data.degradation' must be one of ['none', 'fuse_stage2'"),
    ("model.encoder=vitx", "config key 'model.encoder' must be one of vitt, vits, vitb, vitl, vitg, got 'vitx'"),
    ("optim.max_steps=[1]", "config key 'optim.max_steps' must be an integer, got [1]"),
    ("optim.lr=[", "override 'optim.lr=[': the value of 'optim.lr' is not valid YAML"),
    ("model=3", "config key 'model' must be a mapping of ['encoder'"),
])
def test_bad_overrides_name_the_key_and_what_is_allowed(tmp_path, capsys, override, message):
    assert fuse_main(["adapt", "--set", override, "--set", f"run.output_dir={tmp_path / 'run'}"]) == 2
    assert message in error_of(capsys)
    assert not (tmp_path / "run").exists()  # rejected before anything started
    with pytest.raises(ConfigError):
        fuse_main(["adapt", "--set", override, "--debug"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_asked_for_where_there_is_none_exits_2(tmp_path, capsys):
    assert fuse_main(["adapt", "--set", "run.device=cuda", "--set", f"run.output_dir={tmp_path / 'run'}"]) == 2
    assert "config key 'run.device' is cuda, but CUDA is not available here" in error_of(capsys)


def test_bad_key_in_a_config_file_names_the_file(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("optim: {epochs: 2, warmup: 5}\n")
    assert fuse_main(["adapt", "--config", str(config)]) == 2
    assert f"{config}: unknown config key 'optim.warmup'" in error_of(capsys)


def test_degradations_joined_by_plus_are_accepted(tmp_path):
    from fuse.train.config import load_config

    assert load_config(None, ["data.degradation=fuse_stage2+night"])["data"]["degradation"] == "fuse_stage2+night"


# ----------------------------------------------------------------------------- checkpoints


def test_checkpoints_of_another_size_model_or_corrupt_exit_2(workspace, tmp_path, capsys):
    vits = save_checkpoint(tmp_path / "fuse_vits.pth", fuse.build_model("fuse", encoder="vits"))
    args = train_args("adapt", tmp_path / "run", **{"data.train_split": workspace["split"], "init.foundation": vits})
    assert fuse_main(args) == 2
    assert f"checkpoint {vits} holds a fuse checkpoint with encoder vits" in error_of(capsys)

    args = train_args("fuse", tmp_path / "run", **{"data.train_split": workspace["split"],
                                                  "init.depth_anything": workspace["teacher"],
                                                  "init.event_encoder": workspace["split"]})
    assert fuse_main(args) == 2
    assert f"checkpoint {workspace['split']} could not be read" in error_of(capsys)

    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(workspace["teacher"].read_bytes()[:5000])
    for command in (["infer", "--split", str(workspace["split"]), "--dataset", "mvsec", "--out", str(tmp_path / "p")],
                    ["eval", "--split", str(workspace["split"]), "--dataset", "mvsec", "--pred", str(tmp_path / "p")]):
        assert fuse_main([command[0], "--checkpoint", str(corrupt), *command[1:], "--no-progress"]) == 2
        assert f"checkpoint {corrupt} could not be read" in error_of(capsys)


# ----------------------------------------------------------------------------- split lists and data files


def test_split_list_naming_missing_files_lists_the_first_and_the_count(workspace, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(workspace["split"].parent, data)
    for stem in range(8):
        (data / "seq" / "voxels" / f"{stem:06d}.npy").unlink()
    split = data / "seq.txt"
    args = train_args("align", tmp_path / "run", **{"data.train_split": split, "init.depth_anything": workspace["teacher"]})
    assert fuse_main(args) == 2
    err = error_of(capsys)
    assert f"8 file(s) named in {split} do not exist" in err and "... and 3 more" in err
    assert str(data / "seq" / "voxels" / "000000.npy") in err and "000005.npy" not in err

    assert fuse_main(["infer", "--checkpoint", str(workspace["teacher"]), "--split", str(split), "--dataset", "mvsec",
                      "--out", str(tmp_path / "p"), "--no-progress"]) == 2
    assert f"8 file(s) named in {split} do not exist" in error_of(capsys)


def test_bad_data_file_mid_training_is_named_and_the_work_is_kept(workspace, tmp_path, capsys):
    """A truncated voxel read by a DataLoader worker: the message is the file's, not the worker's
    traceback; latest.pth holds the steps done, and after a fix ``--resume`` finishes the run."""
    data = tmp_path / "data"
    shutil.copytree(workspace["split"].parent, data)
    voxel = data / "seq" / "voxels" / "000003.npy"
    good = voxel.read_bytes()
    voxel.write_bytes(good[:150])
    out = tmp_path / "run"
    args = train_args("align", out, **{"data.train_split": data / "seq.txt", "init.depth_anything": workspace["teacher"],
                                       "data.workers": 1, "run.checkpoint_every_steps": 0})
    assert fuse_main(args) == 2
    err = error_of(capsys)
    assert f"error: cannot read npy file (corrupt or truncated?): {voxel}" in err
    assert "DataLoader worker" not in err and "training stopped at step" in err
    stopped = read_checkpoint(out / "latest.pth")["step"]
    assert f"training stopped at step {stopped}, saved in {out / 'latest.pth'}" in err

    voxel.write_bytes(good)
    assert fuse_main([*args, "--resume"]) == 0
    assert read_checkpoint(out / "latest.pth")["step"] == 4  # 8 frames in batches of 2: none repeated or lost


def test_recording_with_missing_keys_or_truncated_exits_2(workspace, tmp_path, capsys):
    recording = mvsec_fixtures.write_recording(tmp_path, "rec", num_depth=6, no_image_frames=(2,), image_offsets={},
                                               empty_window_frames=(4,), drop_keys=("davis/left/events",))
    infer = ["infer", "--checkpoint", str(workspace["teacher"]), "--recording", str(tmp_path / "rec"),
             "--out", str(tmp_path / "p"), "--no-progress"]
    assert fuse_main(infer) == 2
    assert f"{recording.data_path}: missing dataset 'davis/left/events'" in error_of(capsys)

    mvsec_fixtures.write_files(recording)
    with open(recording.data_path, "r+b") as handle:
        handle.truncate(recording.data_path.stat().st_size // 2)
    assert fuse_main(infer) == 2
    assert f"{recording.data_path}: " in error_of(capsys)


# ----------------------------------------------------------------------------- depth holes and evaluation


def test_nan_inf_and_negative_depth_never_enter_the_loss():
    pred = torch.tensor([[2.0, 4.0, 8.0, 3.0, 5.0, 6.0]], requires_grad=True)
    target = torch.tensor([[2.5, 3.0, 9.0, float("nan"), float("inf"), -4.0]])
    loss = silog_loss(pred, target, torch.ones_like(target, dtype=torch.bool))
    expected = silog_loss(pred[:, :3], target[:, :3], torch.ones(1, 3, dtype=torch.bool))
    assert torch.isfinite(loss) and loss.item() == pytest.approx(expected.item())
    loss.backward()
    assert torch.isfinite(pred.grad).all() and (pred.grad[0, 3:] == 0).all()


def test_validation_metrics_mask_nan_inf_and_negative_depth():
    pred = torch.tensor([[[10.0, 20.0, 30.0, 5.0]], [[1.0, 2.0, 3.0, 4.0]]])
    target = torch.tensor([[[11.0, float("nan"), float("inf"), -5.0]], [[float("nan"), -1.0, 0.0, float("-inf")]]])
    metrics = finalize_sums(batch_metric_sums(pred, target, min_depth=2.0, max_depth=80.0))
    assert metrics["frames"] == 1 and metrics["skipped"] == 1
    assert metrics["mae"] == pytest.approx(1.0) and metrics["abs_rel"] == pytest.approx(1 / 11, rel=1e-4)


def test_eval_where_no_frame_has_a_valid_pixel_reports_none_not_nan(tmp_path, capsys):
    pred_dir, target_dir = tmp_path / "pred", tmp_path / "gt"
    pred_dir.mkdir()
    target_dir.mkdir()
    frames = [([[np.nan, 5.0]], [[np.nan, 200.0]]), ([[-1.0, np.inf]], [[10.0, 20.0]])]
    for i, (pred, target) in enumerate(frames):
        np.save(pred_dir / f"{i}.npy", np.array(pred, np.float32))
        np.save(target_dir / f"{i}.npy", np.array(target, np.float32))
    report = tmp_path / "report.json"
    assert fuse_main(["eval", "--pred", str(pred_dir), "--target", str(target_dir), "--dataset", "mvsec",
                      "--no-progress", "--json", str(report)]) == 0
    table = capsys.readouterr().out
    assert "0 frames evaluated, 2 without valid pixels skipped." in table and "nan" not in table.lower()
    metrics = json.loads(report.read_text())  # the writer refuses NaN: nulls only
    assert metrics["skipped"] == 2 and metrics["frames"] == 0 and metrics["abs_rel"] is None
