"""A reduced run of demo.sh (fewer frames and steps): every file it promises, and learning
that beats the constant baseline."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_reduced_demo_writes_everything_and_fuse_beats_the_constant_baseline(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT), "OUT": str(out), "FRAMES": "32",
           "TEST_FRAMES": "6", "EPOCHS": "4"}
    result = subprocess.run(["bash", "demo.sh"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "STAND-IN" in result.stdout and "| FUSE (image + events) |" in result.stdout
    for name in ("results.md", "results.png", "results.json"):
        assert (out / name).is_file()
    for test in ("day_test", "night_test"):
        assert len(list((out / "predictions" / f"fuse_{test}" / "panels").glob("*.png"))) == 6
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"constant", "image", "events", "fuse"}
    assert results["fuse"]["day_test"]["abs_rel"] < results["constant"]["day_test"]["abs_rel"]
