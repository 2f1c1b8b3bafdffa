"""Every command on zero-byte, truncated and wrong-kind versions of each file it reads.

One case per (command, file it reads, breakage):

* ``zero-byte``: the file exists but is empty (a copy or download that never started);
* ``truncated``: the first half of its bytes (a copy cut short);
* ``wrong-kind``: a valid file of another kind under its name (a PNG where a checkpoint belongs,
  a checkpoint where an ``.npy`` belongs, an ``.npy`` where a PNG or an HDF5 recording belongs,
  binary bytes where a YAML config, split list or timestamps file belongs).

Each must end with exit code 2 and exactly one ``error:`` line naming the broken file, no
traceback, and nothing created by the failed run. A truncated text file may parse into
something else; there the file need not be named. Training commands meet a bad data file only
when its batch is loaded: they stop with the file's name after saving ``latest.pth``, so their
output folder legitimately exists.
"""
from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import fuse
from fuse.cli import main as fuse_main
from fuse.checkpoint import save_checkpoint
from fuse.testing.fixtures import write_split, write_teacher
from tests import mvsec_fixtures
from tests.test_dense_eventscape_prep import (
    change_bins,
    make_dense_sequence,
    make_eventscape_sequence,
    process_dense,
    process_eventscape,
)

REPO = Path(__file__).resolve().parents[1]
BREAKAGES = ("zero-byte", "truncated", "wrong-kind")
TRAIN_SETTINGS = {"model.encoder": "vitt", "data.input_size": 56, "data.workers": 0, "optim.batch_size": 2,
                  "optim.max_steps": 1, "data.dataset": "mvsec"}
# The kind of file put where each kind belongs, for the wrong-kind breakage.
WRONG_KIND = {"checkpoint": "png", "npy": "checkpoint", "png": "npy", "hdf5": "npy", "npz": "npy",
              "text": "png"}


def _load_mvsec_script():
    spec = importlib.util.spec_from_file_location("fuzz_process_mvsec_hdf5", REPO / "scripts" / "process_mvsec_hdf5.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


process_mvsec = _load_mvsec_script()


# ----------------------------------------------------------------------------- shared inputs


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> dict[str, Path]:
    """Valid inputs of every command; a case copies the one file it breaks."""
    root = tmp_path_factory.mktemp("fuzz_files")
    data = root / "data"
    # Two frames: a batch of 2 holds both, so training meets a broken frame in its first batch.
    pair = write_split(data, name="seq", frames=2)
    # Three frames: half of the list ends inside a line (two equal lines would cut at a line end).
    triple = write_split(data, name="tri", frames=3, seed=1)
    rng = np.random.default_rng(0)
    (data / "tri" / "events").mkdir()
    for stem in ("000000", "000001", "000002"):
        n = 50
        events = np.stack([np.sort(rng.uniform(0.0, 0.05, n)), rng.integers(0, 56, n), rng.integers(0, 42, n),
                           rng.choice([-1.0, 1.0], n)], axis=1).astype(np.float64)
        np.save(data / "tri" / "events" / f"{stem}.npy", events)

    dav2 = write_teacher(root / "dav2_vitt.pth")
    torch.manual_seed(0)
    student = save_checkpoint(root / "align_vitt.pth", fuse.build_model("event_student", encoder="vitt"))
    foundation = save_checkpoint(root / "fuse_vitt.pth", fuse.build_model("fuse", encoder="vitt"))

    config = root / "run.yaml"
    config.write_text("# tiny run\nmodel:\n  encoder: vitt\n  lora_rank: 8\ndata:\n  dataset: mvsec\n"
                      "  input_size: 56\noptim:\n  batch_size: 2\n  max_steps: 1\n")

    raw = root / "raw"
    raw.mkdir()
    mvsec_fixtures.write_recording(raw, "rec", num_depth=4, height=12, width=16, events_per_frame=40,
                                   no_image_frames=(), image_offsets={}, empty_window_frames=(), edge_frame=1)

    pred, target = root / "pred", root / "target"
    pred.mkdir()
    target.mkdir()
    for i in range(2):
        depth = rng.uniform(2.0, 60.0, (6, 8)).astype(np.float32)
        np.save(pred / f"pred_{i}.npy", depth * rng.uniform(0.9, 1.1, depth.shape).astype(np.float32))
        np.save(target / f"gt_{i}.npy", depth)

    dense = root / "DENSE"
    make_dense_sequence(dense / "test", 2, np.random.default_rng(1))
    eventscape = root / "EventScape"
    make_eventscape_sequence(eventscape / "Town05_test" / "Town05" / "sequence_0", "05_000", 2,
                             np.random.default_rng(2), log_depth=True)

    return {
        "root": root, "data": data, "pair": pair, "triple": triple, "dav2": dav2, "student": student,
        "foundation": foundation, "config": config, "raw": raw, "pred": pred, "target": target, "dense": dense,
        "eventscape": eventscape,
        # valid files of each kind, for the wrong-kind breakage
        "png": data / "seq" / "images" / "000000.png", "npy": data / "seq" / "depths" / "000000.npy",
        "checkpoint": student,
    }


def break_file(path: Path, breakage: str, kind: str, ws: dict[str, Path]) -> None:
    """Replace ``path``'s content in place (its name stays)."""
    content = path.read_bytes()
    if breakage == "zero-byte":
        path.write_bytes(b"")
    elif breakage == "truncated":
        path.write_bytes(content[: len(content) // 2])
    else:
        path.write_bytes(ws[WRONG_KIND[kind]].read_bytes())


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


# ----------------------------------------------------------------------------- cases


@dataclass
class Case:
    """How one command is run on valid inputs copied under ``tmp``, and which file is broken.

    ``prepare(ws, tmp)`` copies what the case breaks and returns (argv, the file to break,
    the outputs that must not exist afterwards).
    """

    command: str
    target: str  # the file, in words
    kind: str  # checkpoint | npy | png | hdf5 | npz | text
    prepare: Callable[[dict, Path], tuple[list[str], Path, list[Path]]]
    main: Callable[[list[str]], int] = fuse_main
    data_mid_training: bool = False  # a data file training only meets in a batch (output legitimately kept)
    ambiguous_name: bool = False  # basename shared with another input: the message must name its folder too


def _train_argv(stage: str, out: Path, config: Path | None = None, **settings) -> list[str]:
    items = {**TRAIN_SETTINGS, "run.output_dir": out, **settings}
    argv = [stage, *sum((["--set", f"{key}={value}"] for key, value in items.items()), [])]
    return argv + (["--config", str(config)] if config is not None else [])


TRAIN_INITS = {
    "align": {"init.depth_anything": "dav2"},
    "fuse": {"init.depth_anything": "dav2", "init.event_encoder": "student"},
    "adapt": {"init.foundation": "foundation"},
    "teacher": {"init.depth_anything": "dav2"},
}


def _train_case(stage: str, target: str) -> Case:
    """``target``: config, an ``init.*`` key, split, image, depth or voxel."""
    frame_file = {"image": "images/000000.png", "depth": "depths/000000.npy", "voxel": "voxels/000000.npy"}

    def prepare(ws: dict, tmp: Path):
        inits = {key: ws[name] for key, name in TRAIN_INITS[stage].items()}
        config, split = ws["config"], ws["pair"]
        if target == "config":
            config = broken = Path(shutil.copy(ws["config"], tmp / "run.yaml"))
        elif target.startswith("init."):
            inits[target] = broken = Path(shutil.copy(inits[target], tmp / inits[target].name))
        elif target == "split":
            split = broken = Path(shutil.copy(ws["triple"], tmp / "train.txt"))
            shutil.copytree(ws["data"] / "tri", tmp / "tri")
        else:
            copy_tree(ws["data"] / "seq", tmp / "seq")
            split = Path(shutil.copy(ws["pair"], tmp / "seq.txt"))
            broken = tmp / "seq" / frame_file[target]
        out = tmp / "run"
        return _train_argv(stage, out, config, **{"data.train_split": split, **inits}), broken, [out]

    kind = {"config": "text", "split": "text", "image": "png", "depth": "npy", "voxel": "npy"}.get(target, "checkpoint")
    return Case(stage, target, kind, prepare, data_mid_training=target in frame_file,
                ambiguous_name=target in ("depth", "voxel"))


def _split_frame_case(command: str, target: str, argv: Callable[[dict, Path, Path, Path], list[str]]) -> Case:
    """infer / eval on a split list whose frame ``target`` (image, depth, voxel) is broken."""
    frame_file = {"image": "images/000000.png", "depth": "depths/000000.npy", "voxel": "voxels/000000.npy"}

    def prepare(ws: dict, tmp: Path):
        copy_tree(ws["data"] / "seq", tmp / "seq")
        split = Path(shutil.copy(ws["pair"], tmp / "seq.txt"))
        out = tmp / "out"
        return argv(ws, tmp, split, out), tmp / "seq" / frame_file[target], [out]

    return Case(command, target, "png" if target == "image" else "npy", prepare, ambiguous_name=target != "image")


def _infer_argv(checkpoint: Path, out: Path, *source: str) -> list[str]:
    return ["infer", "--checkpoint", str(checkpoint), *source, "--dataset", "mvsec", "--out", str(out),
            "--no-progress"]


def _infer_cases() -> list[Case]:
    def checkpoint(ws, tmp):
        broken = Path(shutil.copy(ws["dav2"], tmp / "model.pth"))
        return _infer_argv(broken, tmp / "out", "--split", str(ws["pair"])), broken, [tmp / "out"]

    def split(ws, tmp):
        broken = Path(shutil.copy(ws["triple"], tmp / "frames.txt"))
        shutil.copytree(ws["data"] / "tri", tmp / "tri")
        return _infer_argv(ws["dav2"], tmp / "out", "--split", str(broken)), broken, [tmp / "out"]

    def recording(part: str):
        def prepare(ws, tmp):
            raw = copy_tree(ws["raw"], tmp / "raw")
            out = tmp / "out"
            return _infer_argv(ws["dav2"], out, "--recording", str(raw / "rec")), raw / f"rec_{part}.hdf5", [out]
        return prepare

    frames = [_split_frame_case("infer", target, lambda ws, tmp, split, out: _infer_argv(
        ws["dav2"], out, "--split", str(split))) for target in ("image", "depth", "voxel")]
    return [Case("infer", "checkpoint", "checkpoint", checkpoint), Case("infer", "split", "text", split), *frames,
            Case("infer", "recording data", "hdf5", recording("data")),
            Case("infer", "recording gt", "hdf5", recording("gt"))]


def _eval_cases() -> list[Case]:
    def folder(which: str):
        def prepare(ws, tmp):
            pred = copy_tree(ws["pred"], tmp / "pred")
            target = copy_tree(ws["target"], tmp / "target")
            report = tmp / "report.json"
            broken = pred / "pred_0.npy" if which == "pred" else target / "gt_0.npy"
            return (["eval", "--pred", str(pred), "--target", str(target), "--dataset", "mvsec", "--no-progress",
                     "--json", str(report)], broken, [report])
        return prepare

    def model_argv(checkpoint: Path, split: Path, pred: Path) -> list[str]:
        return ["eval", "--checkpoint", str(checkpoint), "--split", str(split), "--dataset", "mvsec",
                "--pred-format", "disparity", "--pred", str(pred), "--no-progress"]

    def checkpoint(ws, tmp):
        broken = Path(shutil.copy(ws["dav2"], tmp / "model.pth"))
        return model_argv(broken, ws["pair"], tmp / "pred"), broken, [tmp / "pred"]

    def split(ws, tmp):
        broken = Path(shutil.copy(ws["triple"], tmp / "frames.txt"))
        shutil.copytree(ws["data"] / "tri", tmp / "tri")
        return model_argv(ws["dav2"], broken, tmp / "pred"), broken, [tmp / "pred"]

    return [Case("eval", "pred file", "npy", folder("pred")), Case("eval", "target file", "npy", folder("target")),
            Case("eval", "checkpoint", "checkpoint", checkpoint), Case("eval", "split", "text", split)]


def _convert_case() -> Case:
    def prepare(ws, tmp):
        source = Path(shutil.copy(ws["dav2"], tmp / "upstream.pth"))
        return ["convert", str(source), str(tmp / "converted.pth")], source, [tmp / "converted.pth"]

    return Case("convert", "source", "checkpoint", prepare)


def _mvsec_cases() -> list[Case]:
    def recording(part: str):
        def prepare(ws, tmp):
            raw = copy_tree(ws["raw"], tmp / "raw")
            out = tmp / "out"
            return ["--root", str(raw), "--out", str(out), "rec"], raw / f"rec_{part}.hdf5", [out]
        return prepare

    return [Case("process_mvsec_hdf5", f"{part} hdf5", "hdf5", recording(part), main=process_mvsec.main)
            for part in ("data", "gt")]


def _change_bins_cases() -> list[Case]:
    def prepare(target: str):
        def run(ws, tmp):
            copy_tree(ws["data"] / "tri", tmp / "tri")
            split = Path(shutil.copy(ws["triple"], tmp / "tri.txt"))
            broken = split if target == "split" else tmp / "tri" / "events" / "000000.npy"
            return [str(split), "--numbins", "5"], broken, [tmp / "tri_5bins.txt", tmp / "tri" / "voxels_5bins"]
        return run

    return [Case("change_bins", "split", "text", prepare("split"), main=change_bins.main),
            Case("change_bins", "events", "npy", prepare("events"), main=change_bins.main)]


def _prep_cases() -> list[Case]:
    """DENSE / EventScape: the second frame is broken, so the first one's files are written and must go again."""
    dense_files = {"image": ("rgb/frames/frame_0000000001.png", "png"),
                   "depth": ("depth/data/depth_0000000001.npy", "npy"),
                   "events": ("events/data/events_0000000001.npy", "npy"),
                   "timestamps": ("events/data/timestamps.txt", "text")}
    eventscape_files = {"image": ("rgb/data/05_000_0001_image.png", "png"),
                        "depth": ("depth/data/05_000_0001_depth.npy", "npy"),
                        "events": ("events/data/05_000_0001_events.npz", "npz"),
                        "timestamps": ("depth/data/timestamps.txt", "text")}

    def prepare(dataset: str, sequence: str, relative: str):
        def run(ws, tmp):
            root = copy_tree(ws[dataset], tmp / dataset)
            out = tmp / "out"
            return ["--root", str(root), "--out", str(out)], root / sequence / relative, [out]
        return run

    cases = [Case("process_dense", target, kind, prepare("dense", "test", relative), main=process_dense.main)
             for target, (relative, kind) in dense_files.items()]
    cases += [Case("process_eventscape", target, kind,
                   prepare("eventscape", "Town05_test/Town05/sequence_0", relative), main=process_eventscape.main)
              for target, (relative, kind) in eventscape_files.items()]
    return cases


CASES = [
    *[_train_case(stage, target) for stage in ("align", "fuse", "adapt", "teacher")
      for target in ("config", *TRAIN_INITS[stage], "split", "image", "depth", "voxel")],
    *_infer_cases(), *_eval_cases(), _convert_case(), *_mvsec_cases(), *_change_bins_cases(), *_prep_cases(),
]

def _params():
    for case in CASES:
        for breakage in BREAKAGES:
            yield pytest.param(case, breakage, id=f"{case.command}-{case.target.replace(' ', '_')}-{breakage}")


def _call(main: Callable[[list[str]], int], argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse
        return exit_.code


@pytest.mark.parametrize("case, breakage", list(_params()))
def test_broken_input_file_exits_2_naming_it(ws, tmp_path, capsys, case: Case, breakage: str):
    argv, broken, outputs = case.prepare(ws, tmp_path)
    assert broken.is_file()
    break_file(broken, breakage, case.kind, ws)
    before = {path for path in tmp_path.rglob("*")}

    code = _call(case.main, argv)

    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err, captured.err
    assert code == 2, f"exit code {code}; stderr:\n{captured.err[-2000:]}"
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, captured.err
    text_may_parse = breakage == "truncated" and case.kind == "text"
    if not text_may_parse:
        name = f"{broken.parent.name}/{broken.name}" if case.ambiguous_name else broken.name
        assert name in errors[0], errors[0]
    if case.data_mid_training:
        assert "training stopped at step 0" in captured.err, captured.err
        return
    for path in outputs:
        assert not path.exists(), f"{path} was created by the failed run"
    created = {path for path in tmp_path.rglob("*")} - before
    assert not created, f"the failed run created {sorted(map(str, created))}"
