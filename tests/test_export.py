"""``python -m fuse export``: ONNX / TorchScript files for one input size, verified against PyTorch.

The acceptance cases: ``fuse`` vits at 266x266 with both heads and ``depth_anything_v2``, each
matching the eager model within 1e-4 relative L2 under onnxruntime, also at a second size
(210x280) exported separately; a size that is not a multiple of 14 exits with code 2.
"""
from __future__ import annotations

import contextlib
import io
import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import onnx  # noqa: E402

import fuse  # noqa: E402
from fuse.checkpoint import save_checkpoint  # noqa: E402
from fuse.cli import main  # noqa: E402
from fuse.errors import UsageError  # noqa: E402
from fuse.evaluate.inference import predict  # noqa: E402
from fuse.export import ExportError, FixedSizeModel  # noqa: E402
from fuse.export.onnx import export_onnx, read_metadata  # noqa: E402
from fuse.export.runtime import OnnxModel  # noqa: E402
from fuse.export.verify import TOLERANCE, Signature, random_inputs, relative_l2  # noqa: E402
from fuse.layers.vit import DinoVisionTransformer  # noqa: E402
from fuse.weights import load_model  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def lively(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random heads are flat (the relative head's ReLU gives zeros everywhere): scale and shift the
    last convolution so that, on random 70x70 inputs, what enters the final ReLU / Sigmoid has median 0
    and standard deviation 1; the output then varies across the image and the comparison means something."""
    model.eval()
    last = model.depth_head.scratch.output_conv2[2]
    seen = []
    handle = last.register_forward_hook(lambda module, args, out: seen.append(out))
    with torch.no_grad():
        model(*random_inputs(Signature.of(model, 70, 70), 1, seed=seed))
        handle.remove()
        scale = seen[0].std().clamp_min(1e-12)
        last.weight.div_(scale)
        last.bias.copy_((last.bias - seen[0].median()) / scale)
    return model


def build(kind: str, head: str, encoder: str = "vits", seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return lively(fuse.build_model(kind, encoder=encoder, head=head), seed)


def check_against_torch(model: nn.Module, exported: OnnxModel, batch: int = 2, seed: int = 7) -> float:
    """Fresh inputs (not the verification's): onnxruntime vs eager, and the output is not flat."""
    inputs = random_inputs(exported.signature, batch, seed=seed)
    with torch.inference_mode():
        reference = model(*inputs)
    output = exported(*inputs)
    assert output.shape == reference.shape == (batch, exported.signature.height, exported.signature.width)
    assert reference.std() > 1e-3 * reference.abs().mean()
    error = relative_l2(output, reference)
    assert error <= TOLERANCE
    return error


@pytest.fixture(scope="module")
def fuse_metric(tmp_path_factory) -> dict:
    """The acceptance export through the command line: fuse vits, metric head, 266x266."""
    root = tmp_path_factory.mktemp("export")
    checkpoint, out = root / "fuse_vits.pth", root / "onnx" / "fuse_vits_266.onnx"
    save_checkpoint(checkpoint, build("fuse", "metric"))
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["export", "--checkpoint", str(checkpoint), "--size", "266", "266", "--out", str(out)])
    return {"code": code, "stdout": stdout.getvalue(), "checkpoint": checkpoint, "out": out,
            "model": load_model(checkpoint)[0].eval(), "onnx": OnnxModel(out) if code == 0 else None}


def test_export_command_fuse_vits_266_metric_matches_pytorch(fuse_metric):
    assert fuse_metric["code"] == 0
    assert "relative L2 batch 1:" in fuse_metric["stdout"] and "batch 2:" in fuse_metric["stdout"]
    out = fuse_metric["out"]
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # written atomically: no temp file left
    check_against_torch(fuse_metric["model"], fuse_metric["onnx"], batch=1)

    meta = read_metadata(out)
    assert meta["fuse.kind"] == "fuse" and meta["fuse.size"] == "266x266"
    assert json.loads(meta["fuse.model"])["head"] == "metric"
    inputs = json.loads(meta["fuse.inputs"])
    assert [(i["name"], i["shape"], i["dtype"]) for i in inputs] == [
        ("image", ["batch", 3, 266, 266], "float32"), ("events", ["batch", 3, 266, 266], "float32")]
    assert "ImageNet-normalized" in inputs[0]["expects"] and "standardized" in inputs[1]["expects"]
    assert json.loads(meta["fuse.outputs"])[0]["name"] == "metric_depth"
    verified = json.loads(meta["fuse.verified"])
    assert max(verified["relative_l2"].values()) <= TOLERANCE
    assert len(meta["fuse.checkpoint_sha256"]) == 64

    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ["image", "events"] and [o.name for o in graph.output] == ["metric_depth"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    # The position tables are constants: no bicubic resize is left in the graph.
    modes = [a.s for n in graph.node if n.op_type == "Resize" for a in n.attribute if a.name == "mode"]
    assert b"cubic" not in modes


def test_export_fuse_vits_266_relative_head(tmp_path):
    model = build("fuse", "relative", seed=1)
    result = export_onnx(model, tmp_path / "fuse_relative.onnx", 266, 266)
    assert max(result.errors.values()) <= TOLERANCE and not result.constant  # eager vs onnxruntime, batches 1, 3
    assert result.signature.output["name"] == "relative_inverse_depth"


def test_export_depth_anything_v2_vits_266(tmp_path):
    model = build("depth_anything_v2", "relative", seed=2)
    result = export_onnx(model, tmp_path / "depth_anything_v2.onnx", 266, 266)
    assert [spec["name"] for spec in result.signature.inputs] == ["image"]
    assert max(result.errors.values()) <= TOLERANCE and not result.constant
    check_against_torch(model, OnnxModel(result.path), batch=1)


@pytest.mark.parametrize("kind", ["fuse", "depth_anything_v2"])
def test_second_size_exported_separately(tmp_path, fuse_metric, kind):
    """A non-square second size (small, to keep the test short: 10x14 patches)."""
    model = build(kind, "metric", seed=3)
    result = export_onnx(model, tmp_path / f"{kind}_140x196.onnx", 140, 196)
    assert (result.signature.height, result.signature.width) == (140, 196)
    assert max(result.errors.values()) <= TOLERANCE and not result.constant
    if kind == "fuse":  # the 266x266 file takes 266x266 inputs only, with one message
        with pytest.raises(UsageError, match="exported for 266x266 inputs.*--size 140 196"):
            fuse_metric["onnx"](*random_inputs(result.signature, 1))


def test_size_not_multiple_of_14_exits_2_with_one_message(fuse_metric, tmp_path, capsys):
    out = tmp_path / "bad.onnx"
    code = main(["export", "--checkpoint", str(fuse_metric["checkpoint"]), "--size", "265", "280", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: export size 265x280 is not a multiple of 14") and "--size 266 280" in err[0]
    assert not out.exists()


def test_existing_out_needs_overwrite(fuse_metric, capsys):
    code = main(["export", "--checkpoint", str(fuse_metric["checkpoint"]), "--size", "266", "--out",
                 str(fuse_metric["out"])])
    assert code == 2 and "pass --overwrite" in capsys.readouterr().err


def test_onnx_model_drives_predict_like_the_torch_model(fuse_metric):
    """``OnnxModel`` in ``fuse.evaluate.inference.predict``: frames whose network input is 266x266."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (1, 200, 200, 3), dtype=np.uint8)
    voxels = rng.normal(size=(1, 3, 200, 200)).astype(np.float32)
    exported = predict(fuse_metric["onnx"], images, voxels, size=266)
    assert exported.shape == (1, 200, 200)
    assert relative_l2(exported, predict(fuse_metric["model"], images, voxels, size=266)) <= TOLERANCE
    with pytest.raises(UsageError, match="CPU in float32"):
        predict(fuse_metric["onnx"], images, voxels, size=266, precision="bf16")


def test_fixed_size_model_is_the_eager_model_and_leaves_it_unchanged():
    model = build("fuse", "metric", encoder="vitt", seed=4)
    fixed = FixedSizeModel(model, 70, 98)
    inputs = random_inputs(Signature.of(model, 70, 98), 2)
    with torch.no_grad():
        assert torch.equal(fixed(*inputs), model(*inputs))
        encoder = next(m for m in model.modules() if isinstance(m, DinoVisionTransformer))
        assert torch.equal(fixed.pos_embed_0, encoder.interpolated_pos_embed(5, 7, torch.float32))
    leftovers = [m for m in model.modules() if {"interpolated_pos_embed", "blur"} & set(vars(m))]
    assert not leftovers
    with pytest.raises(UsageError, match="fixed to 70x98"):
        fixed(*random_inputs(Signature.of(model, 84, 98), 1))


def test_failed_verification_writes_nothing(tmp_path, monkeypatch):
    import fuse.export.onnx as exporter

    run = exporter.run_session
    monkeypatch.setattr(exporter, "run_session", lambda *args: run(*args) * 1.01)
    out = tmp_path / "model.onnx"
    with pytest.raises(ExportError, match="relative L2 error 0.01"):
        export_onnx(build("depth_anything_v2", "metric", encoder="vitt"), out, 56, 70)
    assert list(tmp_path.iterdir()) == []


def test_torchscript_export(tmp_path, capsys):
    checkpoint, out = tmp_path / "dav2.pth", tmp_path / "dav2.pt"
    save_checkpoint(checkpoint, build("depth_anything_v2", "relative", encoder="vitt", seed=5))
    code = main(["export", "--checkpoint", str(checkpoint), "--size", "56", "84", "--out", str(out),
                 "--format", "torchscript"])
    assert code == 0 and "torchscript" in capsys.readouterr().out
    extra = {"fuse.json": ""}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 deprecates torch.jit
        loaded = torch.jit.load(str(out), _extra_files=extra)
    signature = Signature.from_metadata(json.loads(extra["fuse.json"]), str(out))
    model, _ = load_model(checkpoint)
    inputs = random_inputs(signature, 3, seed=9)
    with torch.inference_mode():
        assert relative_l2(loaded(*inputs), model.eval()(*inputs)) <= TOLERANCE


def test_infer_runtime_onnx_matches_torch(tmp_path, capsys):
    """``infer --runtime onnx``: exported in memory for the run's input size, outputs as the torch runtime's."""
    from tests.test_inference import SIZE, tiny_model, write_split

    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint, tiny_model())
    split = write_split(tmp_path / "data")
    common = ["infer", "--checkpoint", str(checkpoint), "--split", str(split), "--dataset", "mvsec", "--size",
              str(SIZE), "--device", "cpu", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "torch")]) == 0
    assert main([*common, "--out", str(tmp_path / "onnx"), "--runtime", "onnx", "--batch-size", "2"]) == 0
    assert "onnx: exported fuse for 70x98 inputs" in capsys.readouterr().err
    for path in sorted((tmp_path / "torch" / "depth").glob("*.npy")):
        assert relative_l2(np.load(tmp_path / "onnx" / "depth" / path.name), np.load(path)) <= TOLERANCE
    assert main([*common, "--out", str(tmp_path / "bf16"), "--runtime", "onnx", "--precision", "bf16"]) == 2
    assert "--runtime onnx runs on the CPU in float32" in capsys.readouterr().err
    assert not (tmp_path / "bf16").exists()


def test_infer_runtime_compile_compiles_the_bf16_copy(tmp_path, monkeypatch, capsys):
    """``infer --runtime compile``: the model ``predict`` runs is the compiled one, for bf16 the compiled
    bfloat16 copy (dynamo's eager backend here: inductor's compilation takes a minute on this CPU)."""
    import fuse.export.runtime as runtime
    from tests.test_inference import SIZE, tiny_model, write_split

    compiled_dtypes = []

    def compiled(model):
        compiled_dtypes.append(next(model.parameters()).dtype)
        return torch.compile(model, backend="eager")

    monkeypatch.setattr(runtime, "compiled", compiled)
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint, tiny_model("depth_anything_v2"))  # one thread of work: quick to trace
    split = write_split(tmp_path / "data")
    common = ["infer", "--checkpoint", str(checkpoint), "--split", str(split), "--dataset", "mvsec", "--size",
              str(SIZE), "--device", "cpu", "--no-progress", "--precision", "bf16"]
    assert main([*common, "--out", str(tmp_path / "torch")]) == 0
    assert main([*common, "--out", str(tmp_path / "compile"), "--runtime", "compile"]) == 0
    assert compiled_dtypes == [torch.bfloat16]
    for path in sorted((tmp_path / "torch" / "depth").glob("*.npy")):
        np.testing.assert_allclose(np.load(tmp_path / "compile" / "depth" / path.name), np.load(path), rtol=1e-3)
