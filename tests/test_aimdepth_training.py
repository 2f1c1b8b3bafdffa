"""AIMDepth (tiny) in the shared engine on the synthetic MVSEC-format recordings: 5-bin
preparation, ``python -m fuse aimdepth`` training, ``eval --checkpoint`` on the day and night test
recordings, against the constant baseline (the median training depth everywhere)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fuse.demo.synthetic import write_recording
from fuse.evaluate.metrics import constant_baseline
from fuse.prep.mvsec import export_sequence

ROOT = Path(__file__).resolve().parents[1]
TESTS = ("day_test", "night_test")


def _fuse(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "fuse", *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=600)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("aimdepth")
    recordings, processed = root / "recordings", root / "processed"
    write_recording(recordings, "day_train", frames=48, seed=0)
    write_recording(recordings, "day_test", frames=8, seed=100)
    write_recording(recordings, "night_test", frames=8, seed=100, night=True)
    for name in ("day_train", *TESTS):
        export_sequence(recordings, processed, name, num_bins=5, progress=False)
    return processed


def test_tiny_aimdepth_learns_on_the_synthetic_recordings_and_beats_the_constant_baseline(prepared):
    run = prepared.parent / "run"
    trained = _fuse("aimdepth", "--config", str(ROOT / "configs/aimdepth/demo.yaml"),
                    "--set", f"data.train_split={prepared / 'day_train.txt'}", "--set", "data.input_size=84",
                    "--set", "optim.epochs=8", "--set", f"run.output_dir={run}", cwd=prepared.parent)
    assert trained.returncode == 0, trained.stderr[-3000:]
    for test in TESTS:
        out = prepared.parent / f"eval_{test}.json"
        scored = _fuse("eval", "--checkpoint", str(run / "model.pth"), "--split", str(prepared / f"{test}.txt"),
                       "--json", str(out), "--no-progress", cwd=prepared.parent)
        assert scored.returncode == 0, scored.stderr[-3000:]
        ours = json.loads(out.read_text())
        _, constant = constant_baseline(prepared / "day_train.txt", prepared / f"{test}.txt")
        assert ours["abs_rel"] < constant["abs_rel"], (test, ours, constant)
        assert ours["a1"] > constant["a1"], (test, ours, constant)


def test_a_checkpoint_refuses_voxels_of_another_bin_count(prepared, tmp_path):
    """5-bin AIMDepth on FUSE's 3-bin samples: one clear message naming the file."""
    from fuse.checkpoint import save_checkpoint
    import fuse

    model = fuse.build_model("aimdepth", size="tiny", input_fit="pad")
    checkpoint = tmp_path / "aimdepth.pth"
    save_checkpoint(checkpoint, model, run_config={"data": {"dataset": "mvsec", "input_size": 56}})
    export_sequence(prepared.parent / "recordings", tmp_path / "three_bins", "day_test", num_bins=3, progress=False)
    scored = _fuse("eval", "--checkpoint", str(checkpoint), "--split", str(tmp_path / "three_bins/day_test.txt"),
                   "--no-progress", cwd=tmp_path)
    assert scored.returncode == 2
    assert "3 bins, expected 5" in scored.stderr and "voxels" in scored.stderr
