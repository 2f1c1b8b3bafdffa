"""Issue 11 through the real commands (subprocess): never a number from the wrong model, settings
from the checkpoint, ranges checked before any work, the right kind of file for each stage, one
clear message instead of a traceback, and nothing left behind by a refused run."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pytest
import torch

import fuse
from fuse.cli import main as fuse_main
from fuse.checkpoint import save_checkpoint
from fuse.train.config import load_config
from fuse.evaluate.inference import SplitSource, predict
from fuse.weights import load_model
from fuse.testing.fixtures import write_split, write_teacher

ROOT = Path(__file__).resolve().parents[1]
TRAINED_SIZE = 56  # the input size the fixture checkpoints record


def fuse_cli(*args: object, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m fuse ARGS`` as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "fuse", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, env=env, timeout=timeout)


class Ran(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def run_here(capsys, main: Callable[[list[str]], int], *args: object) -> Ran:
    """A command's ``main`` in this process (faster than a subprocess, same code path)."""
    try:
        code = main([str(arg) for arg in args])
    except SystemExit as exit_:  # argparse usage errors
        code = exit_.code
    captured = capsys.readouterr()
    return Ran(code, captured.out, captured.err)


def script(name: str, *args: object, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *map(str, args)], capture_output=True,
                          text=True, cwd=cwd or ROOT, env=env, timeout=300)


def refused(result: subprocess.CompletedProcess | Ran, *phrases: str) -> str:
    """Exit 2, one ``error:`` line holding every phrase, no traceback; returns stderr."""
    err = result.stderr
    assert result.returncode == 2, (result.returncode, err[-3000:])
    assert "Traceback" not in err and err.count("error:") == 1, err[-3000:]
    for phrase in phrases:
        assert phrase in err, (phrase, err[-3000:])
    return err


def _trained_checkpoint(path: Path, kind: str, seed: int, head: str = "metric", stage: str = "adapt") -> Path:
    """A model-only checkpoint as ``Trainer.export`` writes it (model config + run config)."""
    torch.manual_seed(seed)
    # Max depth 20 m: random heads predict about half of it, inside the split's depth range, which
    # the E2Depth protocol requires of scored pixels.
    model = fuse.build_model(kind, encoder="vitt", head=head, max_depth=20.0 if head == "metric" else 1.0)
    config = load_config(None, [f"data.input_size={TRAINED_SIZE}", "data.dataset=mvsec", "model.encoder=vitt",
                                "model.max_depth=20"], stage=stage)
    return save_checkpoint(path, model, run_config=config, epoch=1, step=4)


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("trust")
    return {"root": root, "split": write_split(root / "data", frames=3),
            "a": _trained_checkpoint(root / "fuse_a.pth", "fuse", seed=1),
            "b": _trained_checkpoint(root / "fuse_b.pth", "fuse", seed=2),
            "dav2": write_teacher(root / "dav2.pth"),
            "dav2_metric": _trained_checkpoint(root / "image_baseline.pth", "depth_anything_v2", seed=3),
            "student": _trained_checkpoint(root / "align.pth", "event_student", seed=4, head="relative",
                                           stage="align")}


def eval_args(ws: dict, checkpoint: str, *extra: object) -> list[object]:
    return ["eval", "--checkpoint", ws[checkpoint], "--split", ws["split"], "--no-progress", *extra]


# ----------------------------------------------------------------------------- 1. provenance

def test_a_second_checkpoint_is_never_scored_with_the_first_ones_predictions(ws, tmp_path):
    pred = tmp_path / "pred"
    assert fuse_cli(*eval_args(ws, "a", "--pred", pred, "--json", tmp_path / "a.json")).returncode == 0
    result = fuse_cli(*eval_args(ws, "b", "--pred", pred, "--json", tmp_path / "b.json"))
    refused(result, f"{pred} holds outputs of another infer run", "checkpoint_sha256", "--overwrite")
    assert not (tmp_path / "b.json").exists()

    assert fuse_cli(*eval_args(ws, "b", "--pred", pred, "--json", tmp_path / "b.json", "--overwrite")).returncode == 0
    assert fuse_cli(*eval_args(ws, "b", "--pred", tmp_path / "fresh", "--json", tmp_path / "fresh.json")).returncode == 0
    a, b, fresh = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("a", "b", "fresh"))
    assert b["abs_rel"] == fresh["abs_rel"] and b["abs_rel"] != a["abs_rel"]
    assert json.loads((pred / "provenance.json").read_text())["made_by"]["checkpoint_sha256"] == \
        json.loads((tmp_path / "fresh" / "provenance.json").read_text())["made_by"]["checkpoint_sha256"]


def test_default_output_folders_never_collide_and_a_rerun_reuses_its_own(ws, tmp_path):
    for name in ("a", "b", "a"):
        assert fuse_cli(*eval_args(ws, name), cwd=tmp_path).returncode == 0
    folders = sorted((tmp_path / "outputs" / "eval").iterdir())
    assert len(folders) == 2 and all(f.name.startswith(("fuse_a-seq-", "fuse_b-seq-")) for f in folders)
    rerun = fuse_cli(*eval_args(ws, "a"), cwd=tmp_path)
    assert "(0 predicted, 3 already done)" in rerun.stderr
    assert fuse_cli("infer", "--checkpoint", ws["a"], "--split", ws["split"], "--no-progress",
                    cwd=tmp_path).returncode == 0
    assert len(list((tmp_path / "outputs" / "infer").iterdir())) == 1


def test_other_settings_or_unknown_files_in_the_folder_are_refused(ws, tmp_path):
    out = tmp_path / "out"
    infer = ["infer", "--checkpoint", ws["a"], "--split", ws["split"], "--out", out, "--no-progress", "--limit", "1"]
    assert fuse_cli(*infer).returncode == 0
    refused(fuse_cli(*infer, "--size", 70), "input_size: 56 there, 70 now")
    refused(fuse_cli(*infer, "--precision", "bf16"), 'precision: "fp32" there, "bf16" now')
    (out / "provenance.json").unlink()
    refused(fuse_cli(*infer), "no provenance.json saying what made them")
    assert sorted(p.name for p in (out / "depth").iterdir()) == ["000000.npy"]  # nothing deleted by a refusal


def test_a_synthetic_recording_made_with_other_settings_is_refused(tmp_path):
    common = ["--out", tmp_path, "--name", "rec", "--frames", 2, "--height", 24, "--width", 32]
    assert script("make_synthetic.py", *common, "--seed", 0).returncode == 0
    data = (tmp_path / "rec_data.hdf5").read_bytes()
    assert "exists" in script("make_synthetic.py", *common, "--seed", 0).stdout
    refused(script("make_synthetic.py", *common, "--seed", 1), "seed: 0 there, 1 now")
    assert (tmp_path / "rec_data.hdf5").read_bytes() == data


# ----------------------------------------------------------------------------- 2. settings from the checkpoint

def test_infer_runs_at_the_input_size_the_checkpoint_records(ws, tmp_path):
    result = fuse_cli("infer", "--checkpoint", ws["a"], "--split", ws["split"], "--out", tmp_path / "o",
                      "--no-progress", "--limit", "1")
    assert result.returncode == 0 and f"input {TRAINED_SIZE} px" in result.stdout
    model, _ = load_model(ws["a"])
    frame = next(iter(SplitSource(ws["split"]))).load()
    written = np.load(tmp_path / "o" / "depth" / "000000.npy")
    np.testing.assert_allclose(written, predict(model, frame.image, frame.voxel, size=TRAINED_SIZE), atol=1e-4)
    assert not np.allclose(written, predict(model, frame.image, frame.voxel, size=266), atol=1e-3)

    override = fuse_cli("infer", "--checkpoint", ws["a"], "--split", ws["split"], "--out", tmp_path / "p",
                        "--no-progress", "--limit", "1", "--size", 70, "--max-depth", 40)
    assert override.returncode == 0
    assert f"note: --size 70 overrides the input size {TRAINED_SIZE} recorded in {ws['a']}" in override.stderr
    assert f"note: --max-depth 40.0 overrides the max_depth 20.0 recorded in {ws['a']}" in override.stderr


def test_eval_takes_the_dataset_from_the_checkpoint(ws, tmp_path):
    result = fuse_cli(*eval_args(ws, "a", "--pred", tmp_path / "p", "--json", tmp_path / "m.json"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads((tmp_path / "m.json").read_text())["settings"]["dataset"] == "mvsec"


# ----------------------------------------------------------------------------- 3. ranges

@pytest.mark.parametrize("args, phrase", [
    (["adapt", "--set", "model.max_depth=0"], "config key 'model.max_depth' must be a finite number > 0, got 0.0"),
    (["adapt", "--set", "model.max_depth=-80"], "config key 'model.max_depth' must be a finite number > 0"),
    (["adapt", "--set", "loss.silog_lambda=1.5"], "config key 'loss.silog_lambda' must be a finite number >= 0 and <= 1"),
    (["adapt", "--set", "optim.lr=.inf"], "config key 'optim.lr' must be a finite number > 0, got inf"),
    (["infer", "--max-depth", "0"], "argument --max-depth: must be a finite number > 0"),
    (["infer", "--fps", "-5"], "argument --fps: must be a finite number > 0"),
    (["eval", "--clip-distance", "nan"], "argument --clip-distance: must be a finite number > 0"),
])
def test_out_of_range_numbers_are_refused_before_any_work(ws, tmp_path, capsys, args, phrase):
    out = tmp_path / "out"
    if args[0] == "adapt":
        extra = ["--set", f"run.output_dir={out}", "--set", f"init.foundation={ws['a']}",
                 "--set", f"data.train_split={ws['split']}"]
    else:
        extra = ["--checkpoint", ws["a"], "--split", ws["split"], "--pred" if args[0] == "eval" else "--out", out]
    result = run_here(capsys, fuse_main, *args, *extra)
    assert result.returncode == 2 and phrase in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert not out.exists()


def test_a_non_positive_max_depth_is_refused_at_training_and_inference(ws, tmp_path):
    out = tmp_path / "out"
    refused(fuse_cli(*adapt_args(ws, out, **{"init.foundation": ws["a"], "model.max_depth": 0})),
            "config key 'model.max_depth' must be a finite number > 0, got 0.0")
    result = fuse_cli("infer", "--checkpoint", ws["a"], "--split", ws["split"], "--out", out, "--max-depth", -1)
    assert result.returncode == 2 and "argument --max-depth: must be a finite number > 0" in result.stderr
    assert not out.exists()


# ----------------------------------------------------------------------------- 4. the right kind of file

def adapt_args(ws: dict, out: Path, stage: str = "adapt", **settings: object) -> list[object]:
    items = {"model.encoder": "vitt", "data.dataset": "mvsec", "data.input_size": 56, "data.workers": 0,
             "optim.batch_size": 2, "optim.max_steps": 1, "data.train_split": ws["split"], "run.output_dir": out,
             **settings}
    return [stage, *sum((["--set", f"{key}={value}"] for key, value in items.items()), [])]


def test_a_relative_dav2_file_is_refused_as_the_fuse_foundation(ws, tmp_path):
    out = tmp_path / "run"
    result = fuse_cli(*adapt_args(ws, out, **{"init.foundation": ws["dav2"]}))
    refused(result, f"init.foundation: checkpoint {ws['dav2']} holds a depth_anything_v2 checkpoint",
            "stage adapt of a fuse model needs fuse", "stage 2 (fuse_feature.sh")
    assert not out.exists()  # no config.yaml, no empty folder


def test_stage_inputs_of_the_wrong_kind_are_refused(ws, tmp_path, capsys):
    out = tmp_path / "run"
    refused(run_here(capsys, fuse_main, *adapt_args(ws, out, "fuse", **{"init.depth_anything": ws["dav2"],
                                                                      "init.event_encoder": ws["dav2"]})),
            "init.event_encoder", "needs event_student", "stage 1 (align_feature.sh")
    refused(run_here(capsys, fuse_main, *adapt_args(ws, out, "align", **{"init.depth_anything": ws["dav2_metric"]})),
            "init.depth_anything", "metric head", "needs depth_anything_v2 with a relative head")
    refused(run_here(capsys, fuse_main, *adapt_args(ws, out, **{"init.foundation": ws["student"],
                                                              "model.kind": "depth_anything_v2"})),
            "holds a event_student checkpoint", "image-only baseline")
    assert not out.exists()


def test_eval_refuses_to_score_relative_depth_as_metric(ws, tmp_path, capsys):
    result = fuse_cli("eval", "--checkpoint", ws["dav2"], "--split", ws["split"], "--pred", tmp_path / "p")
    refused(result, "holds relative inverse depth", "--pred-format disparity")
    assert not (tmp_path / "p").exists()
    # Folder mode: the prediction folder's provenance.json says what made it.
    assert fuse_main(["infer", "--checkpoint", str(ws["dav2"]), "--split", str(ws["split"]), "--out",
                      str(tmp_path / "rel"), "--no-progress"]) == 0
    targets = Path(ws["split"]).parent / "seq" / "depths"
    assert fuse_main(["eval", "--pred", str(tmp_path / "rel" / "depth"), "--target", str(targets), "--dataset",
                      "mvsec", "--no-progress"]) == 2
    assert "holds relative inverse depth" in capsys.readouterr().err
    assert fuse_main(["eval", "--pred", str(tmp_path / "rel" / "depth"), "--target", str(targets), "--dataset",
                      "mvsec", "--no-progress", "--pred-format", "disparity"]) == 0


# ----------------------------------------------------------------------------- 5. no tracebacks

def test_zero_byte_checkpoints_are_one_message_everywhere(ws, tmp_path, capsys):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    phrase = f"checkpoint {empty} could not be read: the file is empty (0 bytes)"
    refused(fuse_cli("infer", "--checkpoint", empty, "--split", ws["split"], "--out", tmp_path / "o"), phrase)
    refused(run_here(capsys, fuse_main, "eval", "--checkpoint", empty, "--split", ws["split"], "--dataset", "mvsec"),
            phrase)
    refused(run_here(capsys, fuse_main, *adapt_args(ws, tmp_path / "run", **{"init.foundation": empty})), phrase)
    refused(run_here(capsys, fuse_main, "convert", empty, tmp_path / "c.pth"), phrase)
    assert not any((tmp_path / name).exists() for name in ("o", "run", "c.pth"))


def test_a_read_only_output_folder_is_one_message(ws, tmp_path, monkeypatch, capsys):
    """Root ignores permissions, so the file system's refusal is simulated where the project writes."""
    import fuse.atomic

    out = tmp_path / "out"
    out.mkdir()

    def read_only_open(path, mode="r", *args, **kwargs):
        if "x" in mode or "w" in mode:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(path))
        return open(path, mode, *args, **kwargs)

    def read_only_unlink(self, missing_ok=False):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(fuse.atomic, "open", read_only_open, raising=False)
    monkeypatch.setattr(Path, "unlink", read_only_unlink)
    assert fuse_main(["infer", "--checkpoint", str(ws["a"]), "--split", str(ws["split"]), "--out", str(out),
                      "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "Traceback" not in err
    assert f"cannot write {out / '.write_test'}: Read-only file system; choose a writable output folder" in err


def test_a_video_writer_that_cannot_open_is_one_message(ws, tmp_path, monkeypatch, capsys):
    import fuse.evaluate.visualize as visualize

    monkeypatch.setattr(visualize, "MP4_CODEC", "XXXX")  # a codec OpenCV does not have
    assert fuse_main(["infer", "--checkpoint", str(ws["a"]), "--split", str(ws["split"]), "--out",
                      str(tmp_path / "o"), "--no-progress", "--mp4"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and "Traceback" not in err and "panels.mp4" in err


# ----------------------------------------------------------------------------- 6. nothing left behind

def test_refused_runs_create_nothing(ws, tmp_path):
    refused(fuse_cli("infer", "--checkpoint", ws["a"], "--split", tmp_path / "missing.txt", "--out", tmp_path / "o"),
            "missing.txt")
    refused(fuse_cli(*adapt_args(ws, tmp_path / "run", **{"init.foundation": tmp_path / "missing.pth"})),
            "missing.pth")
    refused(fuse_cli(*adapt_args(ws, tmp_path / "run2", **{"init.foundation": ws["a"],
                                                            "data.train_split": tmp_path / "missing.txt"})),
            "missing.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- friction

def test_training_console_reports_validation_best_output_and_resume(ws, tmp_path):
    out = tmp_path / "run"
    # A 10 m head predicts about 5 m at the start: inside the split's depths, so validation scores pixels.
    args = adapt_args(ws, out, **{"init.foundation": ws["a"], "data.val_split": ws["split"], "optim.max_steps": "null",
                                  "model.max_depth": 10, "optim.epochs": 1})
    first = fuse_cli(*args)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "adapt epoch 1/1 validation: loss=" in first.stdout and "abs_rel=" in first.stdout
    assert f"new best, wrote {out / 'best.pth'}" in first.stdout
    assert f"wrote {out / 'model.pth'}; best.pth: epoch 1 (abs_rel" in first.stdout
    resumed = fuse_cli(*args[:-2], "--set", "optim.epochs=2", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed from step 1 (epoch 2, batch 0) of {out / 'latest.pth'}" in resumed.stdout
    assert "note: optim.epochs is 2 now, 1 in the interrupted run" in resumed.stderr


def test_unknown_option_shows_the_commands_usage_and_config_keys_are_listed():
    result = fuse_cli("eval", "--bogus")
    assert result.returncode == 2 and result.stderr.startswith("usage: python -m fuse eval")
    assert "unrecognized arguments: --bogus" in result.stderr
    keys = fuse_cli("adapt", "--help-config")
    assert keys.returncode == 0
    assert "model.max_depth = 80.0  (a finite number > 0)" in keys.stdout
    assert "data.input_size = 266  (an integer >= 56 and a multiple of 14)" in keys.stdout
    assert "--help-config" in fuse_cli("adapt", "-h").stdout


def test_convert_never_overwrites_silently(ws, tmp_path, capsys):
    source = tmp_path / "src.pth"
    source.write_bytes(Path(ws["a"]).read_bytes())
    refused(run_here(capsys, fuse_main, "convert", source, source), "is the source file itself")
    target = tmp_path / "out.pth"
    target.write_bytes(b"keep me")
    refused(run_here(capsys, fuse_main, "convert", source, target), "exists; pass --overwrite")
    assert target.read_bytes() == b"keep me" and source.read_bytes() == Path(ws["a"]).read_bytes()
    assert run_here(capsys, fuse_main, "convert", source, target, "--overwrite").returncode == 0
    assert target.read_bytes() != b"keep me"


def test_messages_name_what_is_wrong(ws, tmp_path, capsys):
    config = tmp_path / "child.yaml"
    config.write_text("base: missing_base.yaml\n")
    refused(run_here(capsys, fuse_main, "adapt", "--config", config),
            f"config file {tmp_path / 'missing_base.yaml'} (named as base: in {config}) does not exist")
    text = tmp_path / "notes.pth"
    text.write_text("epochs: 3\n")
    refused(run_here(capsys, fuse_main, "infer", "--checkpoint", text, "--split", ws["split"]),
            "it is not a PyTorch checkpoint")
    truncated = tmp_path / "cut.pth"
    truncated.write_bytes(Path(ws["a"]).read_bytes()[:4000])
    err = refused(run_here(capsys, fuse_main, "infer", "--checkpoint", truncated, "--split", ws["split"]),
                  "truncated or damaged")
    assert err.rstrip().endswith("download or copy it again")
    err = refused(run_here(capsys, fuse_main, *adapt_args(ws, tmp_path / "run", **{"init.foundation": ws["dav2"]})))
    assert "event bins" not in err
