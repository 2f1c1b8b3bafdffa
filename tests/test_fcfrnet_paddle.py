"""The Paddle port's weight files (spec fcfrnet.md §4, §7): written as Paddle writes them, read back
strictly without running code, converted into this project's checkpoints."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import fuse
from fuse.cli import main
from fuse.errors import CheckpointError
from fuse.methods.fcfrnet import load_paddle_model, load_pdparams
from fuse.methods.fcfrnet.paddle import NAME_TABLE, paddle_state, read_pdparams, save_pdparams
from fuse.weights import load_model
from tests import test_fcfrnet_model as model_tests

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py: small inputs, one thread


def outputs(model: torch.nn.Module) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(*model_tests.inputs())


@pytest.fixture(scope="module")
def std() -> torch.nn.Module:
    return model_tests.randomize(fuse.build_model("std"), seed=1).eval()


def write_pickle(path: Path, state: dict) -> Path:
    with open(path, "wb") as handle:
        pickle.dump(state, handle, protocol=4)
    return path


@pytest.mark.parametrize("kind, prefix", [("fcfrnet", ""), ("std", "_layers.")])
def test_paddle_file_round_trips_with_equal_outputs(tmp_path, kind, prefix):
    model = model_tests.randomize(fuse.build_model(kind), seed=2).eval()
    path = tmp_path / f"{kind}.pdparams"
    save_pdparams(model, path, prefix=prefix)
    raw = read_pdparams(path)
    assert NAME_TABLE in raw and all(isinstance(value, np.ndarray) for key, value in raw.items() if key != NAME_TABLE)
    assert f"{prefix}conv2.0.bn1._mean" in raw and f"{prefix}conv2.0.bn1.running_mean" not in raw

    loaded, report = load_paddle_model(path)
    assert not report.ignored.keys() - {NAME_TABLE}
    assert all(key.endswith("num_batches_tracked") for key in report.initialized)
    assert torch.allclose(outputs(loaded), outputs(model), rtol=0, atol=1e-6)
    into = fuse.build_model(kind)
    load_pdparams(into, path)
    assert torch.allclose(outputs(into), outputs(model), rtol=0, atol=1e-6)
    generic = fuse.build_model(kind)  # the core's reader hands .pdparams files to this family's reader
    fuse.load_weights(generic, path)
    rebuilt, _ = load_model(path)
    assert torch.allclose(outputs(generic), outputs(model), rtol=0, atol=1e-6)
    assert torch.allclose(outputs(rebuilt), outputs(model), rtol=0, atol=1e-6)


class RunsCode:
    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_naming_another_callable_is_refused_without_running_it(tmp_path):
    RunsCode.marker = tmp_path / "ran"
    path = write_pickle(tmp_path / "evil.pdparams", {"conv1_d.0.weight": RunsCode()})
    with pytest.raises(CheckpointError, match=r"refers to (posix|os)\.system"):
        read_pdparams(path)
    assert not RunsCode.marker.exists()


@pytest.mark.parametrize("change, named", [("drop", "conv3.0.downsample.1._variance"), ("add", "conv9.0.weight")])
def test_a_missing_or_extra_key_is_refused_by_name(tmp_path, std, change, named):
    state = paddle_state(std)
    if change == "drop":
        del state[named]
    else:
        state[named] = np.zeros((1, 1, 1, 1), np.float32)
    path = write_pickle(tmp_path / "changed.pdparams", state)
    with pytest.raises(CheckpointError, match=named.replace(".", r"\.")):
        load_pdparams(fuse.build_model("std"), path)


def test_a_file_of_another_input_mode_is_refused_with_the_fix(tmp_path, std):
    path = write_pickle(tmp_path / "std.pdparams", paddle_state(std))
    with pytest.raises(CheckpointError, match="input_mode='rgbd'"):
        load_pdparams(fuse.build_model("std", input_mode="gd"), path)


def test_converter_writes_a_checkpoint_load_model_rebuilds(tmp_path, std, capsys):
    source, out = tmp_path / "std.pdparams", tmp_path / "std.pth"
    save_pdparams(std, source)
    assert main(["fcfrnet-convert", "--pdparams", str(source), "--kind", "fcfrnet", "--out", str(out)]) == 2
    assert "pass --kind std" in capsys.readouterr().err and not out.exists()
    assert main(["fcfrnet-convert", "--pdparams", str(source), "--kind", "std", "--out", str(out)]) == 0
    model, report = load_model(out)
    assert model.config == std.config and not report.ignored and not report.initialized
    assert torch.allclose(outputs(model), outputs(std), rtol=0, atol=1e-6)
    again = fuse.build_model("std")
    fuse.load_weights(again, out)
    assert torch.allclose(outputs(again), outputs(std), rtol=0, atol=1e-6)
    assert main(["fcfrnet-convert", "--pdparams", str(source), "--kind", "std", "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
