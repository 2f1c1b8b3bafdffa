"""Faults: a training run killed with SIGKILL (during a step, during validation, while writing a
checkpoint) resumes with ``--resume`` and continues exactly as an uninterrupted run; full disks
and read-only folders fail at start or at the first write with one clear message.

This module is also the runner of the killed training processes:
``python -m tests.test_robustness_faults FAULT LOSSES MARKER -- <python -m fuse arguments>``
runs ``python -m fuse`` with every step's loss appended to LOSSES, and at FAULT (``step:N``:
inside step N, after the forward pass; ``validation:E``: inside the validation after epoch E;
``checkpoint:N``: halfway through writing the ``latest.pth`` of step N; ``none``) writes MARKER
and waits for the test to ``kill -9`` it.
"""
from __future__ import annotations

import errno
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import fuse
import fuse.atomic
from fuse.cli import main as fuse_main
from fuse.train import trainer as trainer_module
from fuse.checkpoint import previous_path, read_checkpoint, read_resumable, save_checkpoint
from fuse.train.config import TrainConfig, load_config
from fuse.train.trainer import train
from fuse.testing.fixtures import write_split, write_teacher

ROOT = Path(__file__).resolve().parents[1]
STEPS_PER_EPOCH = 4  # 8 frames, batch 2
EPOCHS = 2
INTERVAL = 2  # run.checkpoint_every_steps


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    split = write_split(root / "data", frames=8)
    teacher = write_teacher(root / "dav2.pth")
    torch.manual_seed(1)
    event_encoder = save_checkpoint(root / "align.pth", fuse.build_model("event_student", encoder="vitt"))
    return root, split, teacher, event_encoder


def fuse_stage_settings(workspace, out: Path, **extra) -> list[str]:
    """Stage 2 (dropout in FreDFuse, random degradations): every RNG matters for an exact resume."""
    _, split, teacher, event_encoder = workspace
    items = {"model.encoder": "vitt", "data.dataset": "mvsec", "data.train_split": split, "data.val_split": split,
             "data.input_size": 56, "data.workers": 0, "data.degradation": "fuse_stage2", "optim.batch_size": 2,
             "optim.lr": 1e-3, "optim.epochs": EPOCHS, "run.output_dir": out, "run.log_every": 1,
             "run.checkpoint_every_steps": INTERVAL, "init.depth_anything": teacher,
             "init.event_encoder": event_encoder}
    items.update(extra)
    return [f"{key}={value}" for key, value in items.items()]


def _train_args(settings: list[str], stage: str = "fuse") -> list[str]:
    return [stage, *sum((["--set", s] for s in settings), [])]


# ----------------------------------------------------------------------------- the runner


def _block(marker: Path) -> None:
    """Tell the test where we are, then wait to be killed (exit on our own if that never happens)."""
    marker.write_text(str(os.getpid()))
    time.sleep(300)
    os._exit(3)


def _install_fault(fault: str, losses: Path, marker: Path) -> None:
    kind, _, number = fault.partition(":")
    at = int(number or 0)
    Trainer = trainer_module.Trainer
    compute_losses, train_step, save = Trainer.compute_losses, Trainer.train_step, torch.save

    def recorded_step(self, batch):
        logs = train_step(self, batch)
        with open(losses, "a") as handle:
            handle.write(json.dumps({"step": self.step, "loss": logs["loss"]}) + "\n")
        return logs

    def faulty_losses(self, batch):
        result = compute_losses(self, batch)
        if kind == "step" and self.student.training and self.step + 1 == at:
            _block(marker)
        if kind == "validation" and not self.student.training and self.epoch == at:
            _block(marker)
        return result

    def faulty_save(obj, f, *args, **kwargs):
        if kind == "checkpoint" and isinstance(obj, dict) and "optimizer" in obj and obj.get("step") == at:
            buffer = io.BytesIO()
            save(obj, buffer, *args, **kwargs)
            f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            f.flush()
            _block(marker)
        return save(obj, f, *args, **kwargs)

    Trainer.train_step, Trainer.compute_losses, torch.save = recorded_step, faulty_losses, faulty_save


def _runner(argv: list[str]) -> int:
    fault, losses, marker, separator, *command = argv
    assert separator == "--"
    torch.set_num_threads(1)
    _install_fault(fault, Path(losses), Path(marker))
    return fuse_main(command)


# ----------------------------------------------------------------------------- helpers of the tests


def _read_losses(path: Path) -> dict[int, float]:
    if not path.is_file():
        return {}
    return {entry["step"]: entry["loss"] for entry in map(json.loads, path.read_text().splitlines())}


def run_training(tmp: Path, name: str, settings: list[str], fault: str, resume: bool) -> dict[int, float]:
    """Run ``python -m fuse fuse`` in a subprocess; with a fault, SIGKILL it there. Returns its losses by step."""
    losses, marker, log = tmp / f"{name}.losses", tmp / f"{name}.marker", tmp / f"{name}.stderr"
    command = [sys.executable, "-m", "tests.test_robustness_faults", fault, str(losses), str(marker), "--", "fuse"]
    for item in settings:
        command += ["--set", item]
    command += ["--resume"] if resume else []
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    with open(log, "w") as stderr:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 300
        while fault != "none" and not marker.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        if fault != "none" and marker.exists():
            os.kill(process.pid, signal.SIGKILL)
        code = process.wait(timeout=300)
    expected = -signal.SIGKILL if fault != "none" else 0
    assert code == expected, f"{name}: exit code {code}, expected {expected}\n{log.read_text()[-3000:]}"
    return _read_losses(losses)


def _checkpoint_step(path: Path) -> int:
    return read_checkpoint(path)["step"]


# ----------------------------------------------------------------------------- kill -9 and --resume


def test_runs_killed_anywhere_resume_exactly(workspace, tmp_path):
    """Killed during a step, during validation and while writing latest.pth, then resumed to the end:
    every step's loss equals the uninterrupted run's, each kill costs at most the checkpoint
    interval, and the final model is the same."""
    root = workspace[0]
    reference_out = root / "uninterrupted"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the subprocesses: the same kernels, the same float rounding
    try:
        reference = train(TrainConfig.from_dict(load_config(None, fuse_stage_settings(workspace, reference_out),
                                                            stage="fuse")))
    finally:
        torch.set_num_threads(threads)
    expected = {step: logs["loss"] for step, logs in enumerate(reference["history"], start=1)}
    assert len(expected) == EPOCHS * STEPS_PER_EPOCH

    out = tmp_path / "run"
    settings = fuse_stage_settings(workspace, out)
    seen: dict[int, float] = {}

    # 1. Killed inside step 3: the step-2 checkpoint is the newest.
    losses = run_training(tmp_path, "step", settings, "step:3", resume=False)
    assert sorted(losses) == [1, 2]
    seen |= losses
    assert _checkpoint_step(out / "latest.pth") == 2

    # 2. Resumed at step 3, killed inside the validation after the first epoch.
    losses = run_training(tmp_path, "validation", settings, f"validation:{1}", resume=True)
    assert sorted(losses) == [3, 4]
    seen |= losses
    assert _checkpoint_step(out / "latest.pth") == 4

    # 3. Resumed (validation redone), killed halfway through writing the step-8 checkpoint.
    losses = run_training(tmp_path, "checkpoint", settings, "checkpoint:8", resume=True)
    assert sorted(losses) == [5, 6, 7, 8]
    seen |= losses
    partial = list(out.glob(f".latest.pth.*{fuse.atomic.TEMP_SUFFIX}"))
    assert len(partial) == 1  # the half-written file was never the only copy:
    assert _checkpoint_step(out / "latest.pth") == 6 and _checkpoint_step(previous_path(out / "latest.pth")) == 4

    # 4. Resumed from step 6 (steps 7-8 redone) to the end.
    losses = run_training(tmp_path, "finish", settings, "none", resume=True)
    assert sorted(losses) == list(range(7, EPOCHS * STEPS_PER_EPOCH + 1))
    assert not partial[0].exists()  # the dead writer's temp file was cleaned up

    for step, loss in (seen | losses).items():
        assert loss == pytest.approx(expected[step], rel=1e-6, abs=1e-8), f"step {step}"
    assert losses[7] == pytest.approx(seen[7], rel=1e-6, abs=1e-8)  # redone steps repeat themselves
    final, uninterrupted = read_checkpoint(out / "model.pth")["model"], read_checkpoint(reference_out / "model.pth")["model"]
    for key, value in uninterrupted.items():
        torch.testing.assert_close(final[key], value, rtol=1e-5, atol=1e-6, msg=key)


# ----------------------------------------------------------------------------- checkpoint rotation


def _tiny_state(step: int) -> dict:
    return {"format": "fuse-checkpoint/1", "step": step, "weights": torch.full((3,), float(step))}


def test_rotation_keeps_the_previous_checkpoint_and_resume_falls_back(tmp_path, capsys):
    latest = tmp_path / "latest.pth"
    for step in (1, 2, 3):
        fuse.checkpoint.atomic_torch_save(_tiny_state(step), latest, keep_previous=True)
    assert read_checkpoint(latest)["step"] == 3 and read_checkpoint(previous_path(latest))["step"] == 2

    latest.write_bytes(latest.read_bytes()[:200])  # a copy cut short, a disk that lost data
    state, used = read_resumable(latest)
    assert state["step"] == 2 and used == previous_path(latest)
    assert "latest.pth could not be read" in capsys.readouterr().err
    aside = tmp_path / "latest.unreadable.pth"
    assert aside.is_file() and not latest.exists()  # the next rotation cannot push out the good copy

    fuse.checkpoint.atomic_torch_save(_tiny_state(4), latest, keep_previous=True)
    assert read_checkpoint(previous_path(latest))["step"] == 2  # still there: nothing was rotated out

    previous_path(latest).unlink()
    latest.unlink()
    with pytest.raises(fuse.checkpoint.CheckpointError, match="nothing to resume"):
        read_resumable(latest)


def test_resume_from_another_model_or_a_model_only_file_exits_2(workspace, tmp_path, capsys):
    out = tmp_path / "run"
    args = _train_args(fuse_stage_settings(workspace, out, **{"optim.max_steps": 1, "optim.epochs": 1}), "align")
    assert fuse_main(args) == 0
    capsys.readouterr()

    state = read_checkpoint(out / "latest.pth")
    other = dict(state, model_config=dict(state["model_config"], encoder="vits"))
    fuse.checkpoint.atomic_torch_save(other, out / "latest.pth")
    assert fuse_main([*args, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "latest.pth was written for another model (encoder: 'vits' in the file, 'vitt' now)" in err
    assert "Traceback" not in err

    (out / "model.pth").replace(out / "latest.pth")
    assert fuse_main([*args, "--resume"]) == 2
    assert "cannot resume a run: it lacks ['optimizer'" in capsys.readouterr().err

    assert fuse_main(args) == 0  # a fresh start over a run's folder says how to continue that run instead
    assert f"note: {out} holds a checkpoint of an earlier run" in capsys.readouterr().err


# ----------------------------------------------------------------------------- full disks, read-only folders


class _FillingUp:
    """A file whose first write stores half of its bytes, then fails as a full disk does."""

    def __init__(self, handle) -> None:
        self.handle = handle

    def write(self, data) -> int:
        self.handle.write(bytes(data)[: len(data) // 2])
        self.handle.flush()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()


def _refuse(monkeypatch, code: int, when) -> None:
    """Make ``fuse.atomic``'s temp files whose name passes ``when`` fail with ``code``: at opening
    (read-only, no permission) or halfway through the first write (full disk)."""
    real_open = open

    def refusing_open(path, mode="r", *args, **kwargs):
        if "x" not in mode or not when(Path(path).name):
            return real_open(path, mode, *args, **kwargs)
        if code == errno.ENOSPC:
            return _FillingUp(real_open(path, mode, *args, **kwargs))
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(fuse.atomic, "open", refusing_open, raising=False)


@pytest.mark.parametrize("code, advice", [(errno.EROFS, "choose a writable output folder"),
                                          (errno.EACCES, "choose a folder you may write to")])
def test_read_only_output_folder_fails_at_start(workspace, tmp_path, monkeypatch, capsys, code, advice):
    _refuse(monkeypatch, code, lambda name: True)
    out = tmp_path / "run"
    assert fuse_main(_train_args(fuse_stage_settings(workspace, out))) == 2
    err = capsys.readouterr().err
    assert f"error: cannot write {out}: {os.strerror(code)} (in {tmp_path}, where it would be created); {advice}" in err
    assert "Traceback" not in err and not out.exists()  # nothing started, nothing created


def test_too_little_free_space_fails_before_the_first_step(workspace, tmp_path, monkeypatch, capsys):
    free = 1 << 20
    monkeypatch.setattr(trainer_module.shutil, "disk_usage", lambda path: type("Usage", (), {"free": free})())
    out = tmp_path / "run"
    assert fuse_main(_train_args(fuse_stage_settings(workspace, out))) == 2
    err = capsys.readouterr().err
    assert f"error: {out} has 1 MiB free, but this run's checkpoints need about" in err
    assert "choose another run.output_dir" in err and not list(out.glob("*.pth"))


def test_disk_full_at_a_checkpoint_stops_with_a_clear_message_and_keeps_the_last_one(workspace, tmp_path,
                                                                                   monkeypatch, capsys):
    writes = []

    def second_latest(name: str) -> bool:
        if name.startswith(".latest.pth."):
            writes.append(name)
        return len(writes) >= 2 and name.startswith(".latest.pth.")

    _refuse(monkeypatch, errno.ENOSPC, second_latest)
    out = tmp_path / "run"
    assert fuse_main(_train_args(fuse_stage_settings(workspace, out, **{"run.checkpoint_every_steps": 1}))) == 2
    err = capsys.readouterr().err
    assert f"error: cannot write {out / 'latest.pth'}: No space left on device; free some space" in err
    assert read_checkpoint(out / "latest.pth")["step"] == 1  # the last complete checkpoint is intact
    assert not [p.name for p in out.iterdir() if p.name.endswith(fuse.atomic.TEMP_SUFFIX)]


def test_infer_eval_and_preparation_report_a_refusing_output_folder(workspace, tmp_path, monkeypatch, capsys):
    _, split, _, _ = workspace
    checkpoint = save_checkpoint(tmp_path / "model.pth", fuse.build_model("fuse", encoder="vitt", head="metric"))
    _refuse(monkeypatch, errno.ENOSPC, lambda name: True)
    out = tmp_path / "predictions"
    assert fuse_main(["infer", "--checkpoint", str(checkpoint), "--split", str(split), "--dataset", "mvsec",
                      "--out", str(out), "--size", "56", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"error: cannot write {out}: No space left on device (in {tmp_path}, where it would be created)" in err
    assert "Traceback" not in err and not out.exists()

    depths = split.parent / "seq" / "depths"
    assert fuse_main(["eval", "--pred", str(depths), "--target", str(depths), "--dataset", "mvsec",
                      "--no-progress", "--json", str(tmp_path / "report.json")]) == 2
    assert f"error: cannot write {tmp_path / 'report.json'}: No space left on device" in capsys.readouterr().err

    spec = importlib.util.spec_from_file_location("process_mvsec_hdf5", ROOT / "scripts" / "process_mvsec_hdf5.py")
    prep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prep)
    assert prep.main(["--root", str(tmp_path), "--out", str(tmp_path / "prepared" / "mvsec")]) == 2
    err = capsys.readouterr().err
    assert f"error: cannot write {tmp_path / 'prepared' / 'mvsec'}: No space left on device (in {tmp_path}" in err
    assert "Traceback" not in err and not (tmp_path / "prepared").exists()


# ----------------------------------------------------------------------------- restartable preparation


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_preparation_rerun_redoes_cut_short_files_and_drops_dead_writers_temps(tmp_path, capsys):
    from tests.test_dense_eventscape_prep import make_dense_sequence, process_dense

    root, out = tmp_path / "DENSE", tmp_path / "out"
    make_dense_sequence(root / "test", 3, np.random.default_rng(0))
    args = ["--root", str(root), "--out", str(out), "--splits", "test"]
    assert process_dense.main(args) == 0
    seq = out / "test" / "test"
    finished = {p: p.read_bytes() for p in seq.rglob("*") if p.is_file()}
    voxel, image = seq / "voxels" / "000001.npy", seq / "images" / "000002.png"
    voxel.write_bytes(finished[voxel][:100])
    image.write_bytes(finished[image][: len(finished[image]) // 2])
    dead = seq / "depths" / f".000000.npy.{_dead_pid()}.deadbeef{fuse.atomic.TEMP_SUFFIX}"
    live = seq / "depths" / f".000000.npy.{os.getpid()}.cafebabe{fuse.atomic.TEMP_SUFFIX}"
    dead.write_bytes(b"half")
    live.write_bytes(b"being written")
    capsys.readouterr()

    assert process_dense.main(args) == 0
    assert "3 sample(s) (2 written, 1 already there)" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in seq.rglob("*") if p.is_file() and p != live} == finished
    assert not dead.exists() and live.exists()  # another process's file in progress is left alone


if __name__ == "__main__":
    sys.exit(_runner(sys.argv[1:]))
