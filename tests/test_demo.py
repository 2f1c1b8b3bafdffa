"""A reduced run of demo.sh (fewer frames and steps): every file it promises, every method in the
comparison, and learning that beats the constant baseline."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_reduced_demo_compares_every_method_and_fuse_beats_the_constant_baseline(tmp_path):
    out = tmp_path / "demo"
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT), "OUT": str(out), "FRAMES": "32",
           "TEST_FRAMES": "6", "EPOCHS": "4"}
    result = subprocess.run(["bash", "demo.sh"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "STAND-IN" in result.stdout and "| FUSE |" in result.stdout
    compare = out / "compare"
    for name in ("results.md", "results.json", "chart.png", "robustness.png", "panels/day.mp4", "panels/night.mp4"):
        assert (compare / name).is_file(), name
    assert len(list((compare / "panels" / "day" / "clean").glob("*.png"))) == 6
    assert list((compare / "panels" / "room" / "clean").glob("*.png"))  # DERD-Net's semi-dense maps
    methods = json.loads((compare / "results.json").read_text())["methods"]
    assert set(methods) == {"constant", "FUSE", "image only", "events only", "DERD-Net", "DERD-Net + NN fill"}
    day = {name: method["scores"]["day"]["clean"]["e2depth"] for name, method in methods.items()
           if "day" in method["scores"]}
    assert day["FUSE"]["abs_rel"] < day["constant"]["abs_rel"]
    assert set(methods["FUSE"]["scores"]["day"]) == {"clean", "image:low_light@2", "image:low_light@4",
                                                     "events:dropout@2", "events:dropout@4"}
    room = methods["DERD-Net"]["scores"]["room"]["clean"]
    assert room["derdnet_points"]["points"] > 0 and "derdnet_points (common pixels)" in room
    assert len(list((out / "predictions" / "fuse_night_test" / "panels").glob("*.png"))) == 6  # run.sh, eval.sh
    assert (out / "eval" / "fuse_night_test" / "metrics.json").is_file()
