"""Event-depth completion study: does STD -> FCFRNet on DERD-Net's semi-dense depth + the image beat
nearest-neighbour fill of the same depth and an image-only network (issue 15's acceptance)?

    python benchmarks/study_fcfrnet_events.py --out outputs/study_fcfrnet_events \\
        [--derdnet ../shared/derdnet/models] [--split scenes|windows] [--std-epochs 8 --fc-epochs 4]

Synthetic stereo rooms (``fuse.demo.room``) -> ``derdnet-prepare`` -> ``derdnet-infer`` (the released
indoor_flying1 stereo even/odd ensemble under ``--derdnet``, else the DSI arg-max) ->
``fcfrnet-from-events`` -> ``std`` (DERD-Net depth, and zeros for the image-only baseline) ->
``fcfrnet-predict --name`` -> ``fcfrnet`` -> ``fcfrnet-predict --out`` -> ``eval --protocol e2depth``.
``--split scenes`` trains on one room and tests on another (another seed: other boxes, textures and
motion); ``windows`` trains on the even and tests on the odd windows of one recording, which
overlap in time (what ``tests/test_fcfrnet_events.py`` does). Prints one markdown table.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from fuse.cli import main as fuse_main
from fuse.demo.room import write_room
from fuse.methods.fcfrnet.events import default_crop

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "fcfrnet"
RELEASED = "mvsec/indoor_flying1/indoor_flying1_stereo_{}_model.pth"
COLUMNS = ("abs_rel", "rmse", "mae", "a1")


def fuse(*argv: object) -> None:
    command = [str(item) for item in argv]
    if fuse_main(command) != 0:
        raise SystemExit(f"failed: python -m fuse {' '.join(command)}")


def derdnet_depth(recording: Path, out: Path, args: argparse.Namespace) -> None:
    """Prepare the recording's windows and infer DERD-Net's depth (released ensemble or arg-max)."""
    fuse("derdnet-prepare", "--recording", recording, "--out", out / "prep", "--planes", args.planes,
         "--max-confidence", args.max_confidence, "--duration", args.duration, "--step", args.step, "--no-progress")
    if args.derdnet:
        weights = [item for parity in ("even", "odd") for item in ("--checkpoint", Path(args.derdnet) /
                                                                  RELEASED.format(parity))]
    else:
        weights = ["--argmax"]
    fuse("derdnet-infer", "--prepared", out / "prep", *weights, "--out", out / "infer", "--no-progress")


def write_trees(train: Path, test: Path, work: Path, windows: tuple[str, str]) -> tuple[int, int]:
    """KITTI-layout trees: the train recording's windows -> train, the test one's -> val (+ NN fill, GT)."""
    for split, recording, parity in (("train", train, windows[0]), ("val", test, windows[1])):
        common = ["fcfrnet-from-events", "--recording", recording.parent / recording.name, "--prepared",
                  recording.parent / "prep", "--infer", recording.parent / "infer", "--root", work / "kitti",
                  "--split", split, "--windows", parity]
        scored = ["--nn-out", work / "eval" / "nn_fill", "--gt-out", work / "eval" / "gt"] if split == "val" else []
        fuse(*common, *scored)
        fuse(*common, "--sparse", "none", "--folder", "no_depth")


def settings(work: Path, crop: tuple[int, int], run: str, **keys: object) -> list[str]:
    values = {"fcfrnet.root": work / "kitti", "fcfrnet.crop": list(crop), "data.workers": 0,
              "run.output_dir": work / "runs" / run} | keys
    return [item for key, value in values.items() for item in ("--set", f"{key}={value}")]


def score(work: Path, name: str) -> dict:
    report = work / "eval" / f"{name}.json"
    fuse("eval", "--protocol", "e2depth", "--dataset", "mvsec", "--pred", work / "eval" / name, "--target",
         work / "eval" / "gt", "--json", report, "--no-progress")
    return json.loads(report.read_text())


def run(args: argparse.Namespace) -> str:
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    width, height = args.size
    crop = default_crop(height, width)
    train = out / "train_room" / "room"
    write_room(train.parent, "room", frames=args.train_frames, seed=args.seed, height=height, width=width, workers=1)
    derdnet_depth(train, train.parent, args)
    if args.split == "scenes":
        test = out / "test_room" / "room"
        write_room(test.parent, "room", frames=args.test_frames, seed=args.seed + 1, height=height, width=width,
                   workers=1)
        derdnet_depth(test, test.parent, args)
        windows = ("all", "all")
    else:
        test, windows = train, ("even", "odd")
    work = out / "work"
    write_trees(train, test, work, windows)

    started = time.perf_counter()
    fuse("std", "--config", CONFIGS / "events_std.yaml", *settings(work, crop, "std", **{
        "optim.epochs": args.std_epochs, "optim.step_epochs": max(1, 2 * args.std_epochs // 3)}))
    fuse("std", "--config", CONFIGS / "events_std.yaml", *settings(work, crop, "image_only", **{
        "fcfrnet.sparse": "no_depth", "optim.epochs": args.std_epochs,
        "optim.step_epochs": max(1, 2 * args.std_epochs // 3)}))
    std_seconds = time.perf_counter() - started
    for split in ("train", "val"):
        fuse("fcfrnet-predict", "--checkpoint", work / "runs" / "std" / "model.pth", "--root", work / "kitti",
             "--split", split, "--name", "std_coarse", "--crop", *crop, "--no-progress")
    started = time.perf_counter()
    fuse("fcfrnet", "--config", CONFIGS / "events_fcfrnet.yaml", *settings(work, crop, "fcfrnet", **{
        "fcfrnet.coarse": "std_coarse", "optim.epochs": args.fc_epochs,
        "optim.step_epochs": max(1, 3 * args.fc_epochs // 4)}))
    fc_seconds = time.perf_counter() - started
    for name, checkpoint, depth in (("completion", "fcfrnet", "std_coarse"), ("std_alone", "std", "velodyne_raw"),
                                    ("image_only", "image_only", "no_depth")):
        fuse("fcfrnet-predict", "--checkpoint", work / "runs" / checkpoint / "model.pth", "--root", work / "kitti",
             "--split", "val", "--input", depth, "--out", work / "eval" / name, "--crop", *crop, "--no-progress")

    rows = {name: score(work, name) for name in ("completion", "std_alone", "nn_fill", "image_only")}
    depth = "released flying1 stereo ensemble" if args.derdnet else "DSI arg-max"
    lines = [f"DERD-Net depth: {depth}; split: {args.split}; room {width}x{height}, crop {crop[1]}x{crop[0]}; "
             f"STD {args.std_epochs} epochs ({std_seconds / 2:.0f} s each run), FCFRNet {args.fc_epochs} epochs "
             f"({fc_seconds:.0f} s); {rows['completion']['frames']} test frames, e2depth protocol (MVSEC range)", "",
             "| prediction | " + " | ".join(COLUMNS) + " |", "|---|" + "---:|" * len(COLUMNS)]
    lines += [f"| {name} | " + " | ".join(f"{row[column]:.3f}" for column in COLUMNS) + " |"
              for name, row in rows.items()]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for recordings, trees, runs and predictions")
    parser.add_argument("--derdnet", default=None, help="DERD-Net's released models folder (mvsec/...); "
                        "default: the DSI arg-max depth")
    parser.add_argument("--split", choices=("scenes", "windows"), default="scenes")
    parser.add_argument("--size", type=int, nargs=2, default=(96, 72), metavar=("WIDTH", "HEIGHT"))
    parser.add_argument("--train-frames", type=int, default=152, help="image frames of the train room (20 per s)")
    parser.add_argument("--test-frames", type=int, default=62, help="image frames of the test room")
    parser.add_argument("--seed", type=int, default=0, help="train room seed; the test room is seed + 1")
    parser.add_argument("--planes", type=int, default=100)
    parser.add_argument("--max-confidence", type=float, default=20.0)
    parser.add_argument("--duration", type=float, default=0.5)
    parser.add_argument("--step", type=float, default=0.1)
    parser.add_argument("--std-epochs", type=int, default=8)
    parser.add_argument("--fc-epochs", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    return parser.parse_args(argv)


if __name__ == "__main__":
    print(run(parse_args()))
