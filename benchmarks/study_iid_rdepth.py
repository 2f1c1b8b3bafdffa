"""IID-RDepth acceptance study: does feature restoration lower a frozen baseline's error on degraded
frames, does AV-LFE with the right camera lower it further, and how does an event auxiliary view
compare with FUSE (issue 16)?

    python benchmarks/study_iid_rdepth.py [--out outputs/study_iid_rdepth] [--seeds 0 1 2] [--quick]

Data: two synthetic stereo rooms (``fuse.demo.room``: MVSEC's two DAVIS lenses, events, exact
depth), one to train on and another (other boxes, textures and motion) to test on, at 84 x 112 px.
Per depth frame: the left and right frames nearest in time, the left depth, and a 3-bin voxel grid of
the left events of the 50 ms before. Test frames are degraded two ways, each frame with its own
seeded draw, the right frame independently of the left: ``night`` (``fuse.data.degradations``'s night
exposure applied always: dim, photon and read noise, motion blur of 1-15 px) and ``blur`` (motion
blur of 5-11 px). Events stay clean (the synthetic sensor has no night mode).

1. The frozen baseline: a tiny DA-V2 (vitt encoder, metric head, 10 m) trained from scratch on the
   clean training frames (SILog, AdamW, random flips); trained once, as the paper's frozen
   pretrained model is one fixed model.
2. Per seed, on the training frames degraded like the test frames (night or blur, drawn per
   sample), each plug-in variant trains the same number of steps on the same batches and draws
   (SILog on every pixel; the baseline frozen): the invertible fine stages alone (T = 0, a control
   for "any trainable layer helps"), + the restorer (T = 4), + the clean-feature matching term,
   + AV-LFE with the right camera, + AV-LFE with the event voxel grid (event-conditioned
   restoration); and FUSE initialized from the baseline (its event encoder a clone of the image
   encoder, as FUSE starts), training FreDFuse, the event encoder's LoRA and the head on the same
   batches with events.
3. RMSE and Abs.Rel (E2Depth per-frame protocol, 0.5-10 m) on the degraded test frames; mean and
   sample standard deviation over seeds, and the paired differences that the acceptance names.
   The trained couplings' empirical bi-Lipschitz bounds are probed against the configured ones.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import torch
import torch.nn.functional as F

import fuse
from fuse.checkpoint import save_checkpoint
from fuse.data.degradations import Degradation, build_degradation
from fuse.data.transforms import normalize_image
from fuse.demo.room import write_room
from fuse.evaluate.metrics import frame_metrics
from fuse.events import normalize_voxel, voxel_grid
from fuse.methods.iid_rdepth import lipschitz_bounds
from fuse.train.losses import silog_loss

HEIGHT, WIDTH = 84, 112
MIN_DEPTH, MAX_DEPTH = 0.5, 10.0
BINS = 3
EVENT_WINDOW = 0.05  # seconds of events before each depth frame
TRAIN_ROOM, TEST_ROOM, TEST_DRAWS = 11, 12, 1000
CONDITIONS: dict[str, Callable[[], Degradation]] = {
    "night": lambda: build_degradation("night", p=1.0),
    "blur": lambda: build_degradation("motion_blur", length=(5, 11)),
}


@dataclass
class Frames:
    """One recording's frames: uint8 RGB left / right (N, H, W, 3), voxels (N, bins, H, W), depth (N, H, W)."""

    left: np.ndarray
    right: np.ndarray
    voxel: torch.Tensor
    depth: torch.Tensor

    def __len__(self) -> int:
        return len(self.depth)


def read_room(folder: Path, name: str) -> Frames:
    """The frames of a ``fuse.demo.room`` recording, paired at the depth timestamps."""
    with h5py.File(folder / f"{name}_data.hdf5", "r") as data, h5py.File(folder / f"{name}_gt.hdf5", "r") as gt:
        depth = gt["davis/left/depth_image_raw"][()]
        depth_ts = gt["davis/left/depth_image_raw_ts"][()]
        images = {side: data[f"davis/{side}/image_raw"][()] for side in ("left", "right")}
        image_ts = data["davis/left/image_raw_ts"][()]
        events = data["davis/left/events"][()][:, [2, 0, 1, 3]]  # (x, y, t, p) -> (t, x, y, p)
    nearest = np.abs(image_ts[None] - depth_ts[:, None]).argmin(1)
    starts = np.searchsorted(events[:, 0], depth_ts - EVENT_WINDOW)
    stops = np.searchsorted(events[:, 0], depth_ts)
    voxels = np.stack([normalize_voxel(voxel_grid(events[a:b], BINS, HEIGHT, WIDTH)) for a, b in zip(starts, stops)])
    rgb = {side: np.repeat(frames[nearest][..., None], 3, axis=-1) for side, frames in images.items()}
    return Frames(rgb["left"], rgb["right"], torch.from_numpy(voxels).float(), torch.from_numpy(depth).float())


def recordings(folder: Path, train_frames: int, test_frames: int) -> tuple[Frames, Frames]:
    """Write the two rooms once (reused when present) and read them."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, seed, frames in (("train", TRAIN_ROOM, train_frames), ("test", TEST_ROOM, test_frames)):
        if not (folder / f"{name}_gt.hdf5").is_file():
            write_room(folder, name, frames=frames, seed=seed, height=HEIGHT, width=WIDTH, workers=1)
    return read_room(folder, "train"), read_room(folder, "test")


def network_images(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> ImageNet-normalized (N, 3, H, W)."""
    return torch.from_numpy(np.stack([normalize_image(image.astype(np.float32) / 255) for image in images]))


def degraded(images: np.ndarray, conditions: list[str], draws: list[np.random.Generator]) -> torch.Tensor:
    return network_images(np.stack([CONDITIONS[c]()(image, np.zeros((1, 1, 1), np.float32), rng)[0]
                                    for image, c, rng in zip(images, conditions, draws)]))


def test_set(frames: Frames, condition: str) -> dict[str, torch.Tensor]:
    """Degraded test inputs: one seeded draw per frame and camera, the same for every model and seed."""
    n = len(frames)
    left = degraded(frames.left, [condition] * n, [np.random.default_rng([TEST_DRAWS, 0, i]) for i in range(n)])
    right = degraded(frames.right, [condition] * n, [np.random.default_rng([TEST_DRAWS, 1, i]) for i in range(n)])
    return {"image": left, "right": right, "voxel": frames.voxel, "depth": frames.depth}


def training_batch(frames: Frames, rng: np.random.Generator, size: int, clean: bool = False) -> dict[str, torch.Tensor]:
    """A random batch: clean, or each sample degraded by a random condition (its own draws)."""
    index = rng.choice(len(frames), size=size, replace=False)
    batch = {"voxel": frames.voxel[index], "depth": frames.depth[index], "clean": network_images(frames.left[index])}
    if clean:
        batch["image"], batch["right"] = batch["clean"], network_images(frames.right[index])
        return batch
    conditions = [str(c) for c in rng.choice(list(CONDITIONS), size=size)]
    seeds = rng.integers(0, 2**31, size=size)
    batch["image"] = degraded(frames.left[index], conditions, [np.random.default_rng([s, 0]) for s in seeds])
    batch["right"] = degraded(frames.right[index], conditions, [np.random.default_rng([s, 1]) for s in seeds])
    return batch


def depth_loss(prediction: torch.Tensor, depth: torch.Tensor) -> torch.Tensor:
    valid = (depth >= MIN_DEPTH) & (depth <= MAX_DEPTH)
    return silog_loss(prediction.clamp_min(1e-3), depth, valid)


def fit(model: torch.nn.Module, call: Callable, batches: Callable[[int], dict], steps: int, lr: float,
        extra: Callable[[dict, tuple], torch.Tensor] | None = None) -> float:
    """AdamW with a linear decay on the model's trainable parameters; returns the last loss."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / steps)
    model.train()
    loss = torch.zeros(())
    for step in range(steps):
        batch = batches(step)
        out = call(model, batch)
        prediction = out[0] if isinstance(out, tuple) else out
        loss = depth_loss(prediction, batch["depth"])
        if extra is not None:
            loss = loss + extra(batch, out)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    model.eval()
    return float(loss.detach())


@torch.no_grad()
def evaluate(model: torch.nn.Module, call: Callable, inputs: dict[str, torch.Tensor], batch: int = 8) -> dict:
    """Mean per-frame RMSE and Abs.Rel (E2Depth protocol, 0.5-10 m) over the test frames."""
    model.eval()
    rows = []
    for start in range(0, len(inputs["depth"]), batch):
        part = {key: value[start:start + batch] for key, value in inputs.items()}
        prediction = call(model, part)
        for pred, target in zip(prediction.numpy(), part["depth"].numpy()):
            rows.append(frame_metrics(pred, target, MIN_DEPTH, MAX_DEPTH, cutoffs=()))
    return {key: float(np.mean([row[key] for row in rows])) for key in ("rmse", "abs_rel")}


def train_baseline(train: Frames, steps: int, batch: int, out: Path) -> Path:
    """The frozen baseline: tiny DA-V2 (metric, 10 m) on clean frames with random flips; a file made
    with the same settings in ``out`` is reused (``baseline.json`` records them)."""
    path, record = out / "baseline.pth", out / "baseline.json"
    settings = {"steps": steps, "batch": batch, "frames": len(train), "size": [HEIGHT, WIDTH]}
    if path.is_file() and record.is_file() and json.loads(record.read_text()) == settings:
        print(f"baseline: reusing {path}", flush=True)
        return path
    torch.manual_seed(0)
    model = fuse.build_model("depth_anything_v2", encoder="vitt", head="metric", max_depth=MAX_DEPTH)
    with torch.no_grad():
        model.depth_head.scratch.output_conv2[2].bias.fill_(-1.0)  # start near 2.7 m, inside the room

    rng = np.random.default_rng(0)

    def batches(step: int) -> dict:
        sample = training_batch(train, rng, batch, clean=True)
        if rng.random() < 0.5:
            sample = {key: value.flip(-1) for key, value in sample.items()}
        return sample

    loss = fit(model, lambda m, b: m(b["image"]), batches, steps, lr=5e-4)
    print(f"baseline: {steps} steps, last SILog {loss:.3f}", flush=True)
    save_checkpoint(path, model)
    record.write_text(json.dumps(settings))
    return path


def load_baseline(path: Path) -> torch.nn.Module:
    model = fuse.build_model("depth_anything_v2", encoder="vitt", head="metric", max_depth=MAX_DEPTH)
    fuse.load_weights(model, path)
    return model.eval()


def load_fuse(path: Path) -> torch.nn.Module:
    """FUSE from the baseline file (image and event encoder, head; FreDFuse fresh), FUSE's way."""
    model = fuse.build_model("fuse", encoder="vitt", head="metric", max_depth=MAX_DEPTH, event_bins=BINS)
    fuse.load_weights(model, path)
    for name, param in model.named_parameters():
        param.requires_grad_(name.startswith(("prompt_fuse.", "depth_head.")) or ".lora_" in name)
    return model


# The comparisons the acceptance names (indices into ``variants``): restorer vs baseline and vs the
# invertible stages alone, clean-feature matching, each auxiliary view vs the restorer, events vs FUSE.
PAIRS = ((0, 2), (1, 2), (2, 3), (2, 4), (2, 5), (6, 5))


@dataclass(frozen=True)
class Variant:
    name: str
    build: Callable[[Path], torch.nn.Module]
    call: Callable[[torch.nn.Module, dict], torch.Tensor]
    feature_match: float = 0.0


def variants(steps: int, width: int) -> list[Variant]:
    def plug_in(**options) -> Callable[[Path], torch.nn.Module]:
        return lambda path: fuse.build_model("iid_rdepth", base=load_baseline(path), restorer_width=width, **options)

    image_only = lambda model, batch: model(batch["image"])  # noqa: E731
    return [
        Variant("frozen baseline (DA-V2 vitt)", lambda path: load_baseline(path), image_only),
        Variant("+ invertible fine stages only (T = 0)", plug_in(diffusion_steps=0), image_only),
        Variant(f"+ restorer (T = {steps})", plug_in(diffusion_steps=steps), image_only),
        Variant(f"+ restorer (T = {steps}) + clean-feature matching", plug_in(diffusion_steps=steps),
                lambda model, batch: model(batch["image"], return_features=True), feature_match=1.0),
        Variant(f"+ restorer (T = {steps}) + AV-LFE, right camera", plug_in(diffusion_steps=steps, aux_view="right"),
                lambda model, batch: model(batch["image"], aux=batch["right"])),
        Variant(f"+ restorer (T = {steps}) + AV-LFE, events", plug_in(diffusion_steps=steps, aux_view="events"),
                lambda model, batch: model(batch["image"], batch["voxel"])),
        Variant("FUSE (image + events, from the baseline)", load_fuse,
                lambda model, batch: model(batch["image"], batch["voxel"])),
    ]


def feature_match_term(model: torch.nn.Module, weight: float) -> Callable[[dict, tuple], torch.Tensor]:
    def term(batch: dict, out: tuple) -> torch.Tensor:
        clean = model.base_features(batch["clean"], None)
        levels = model.config.restore_levels
        return weight * torch.stack([F.mse_loss(out[1][level], clean[level]) for level in levels]).mean()

    return term


def probe_couplings(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> list[str]:
    """Empirical vs configured bi-Lipschitz bounds of each trained fine stage, on its test-time inputs."""
    captured = {}
    hooks = [stack.register_forward_pre_hook(lambda module, args, i=i: captured.setdefault(i, args[0]))
             for i, stack in enumerate(model.fine)]
    with torch.no_grad():
        model(inputs["image"][:4])
    for hook in hooks:
        hook.remove()
    lines = []
    for i, stack in enumerate(model.fine):
        probe = lipschitz_bounds(stack, captured[i], rounds=2)
        low, high = stack.configured_bounds(probe.radius)
        lines.append(f"refinenet{i + 1}: measured [{probe.lower:.4f}, {probe.upper:.4f}] within configured "
                     f"[{low:.3g}, {high:.3g}] (inputs within ±{probe.radius:.3g}): {probe.within((low, high))}")
    return lines


def summary(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("outputs/study_iid_rdepth"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-frames", type=int, default=120)
    parser.add_argument("--test-frames", type=int, default=32)
    parser.add_argument("--base-steps", type=int, default=400, help="baseline training steps")
    parser.add_argument("--steps", type=int, default=120, help="training steps of every plug-in variant and FUSE")
    parser.add_argument("--batch", type=int, default=6)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--diffusion-steps", type=int, default=4, help="T of the restorer variants")
    parser.add_argument("--width", type=int, default=32, help="restorer U-Net width")
    parser.add_argument("--variants", type=int, nargs="+", help="indices of the variants to run (default all; 0 is "
                        "the frozen baseline, 2 the restorer: e.g. --diffusion-steps 1 --variants 0 2)")
    parser.add_argument("--quick", action="store_true", help="a few steps and frames, to check the script")
    args = parser.parse_args()
    if args.quick:
        args.train_frames, args.test_frames, args.base_steps, args.steps, args.seeds = 16, 8, 4, 2, args.seeds[:2]
        args.out = args.out / "quick"
    torch.set_num_threads(1)
    started = time.perf_counter()
    train, test = recordings(args.out / "recordings", args.train_frames, args.test_frames)
    print(f"{len(train)} training and {len(test)} test frames at {HEIGHT}x{WIDTH} "
          f"({time.perf_counter() - started:.0f} s)", flush=True)
    baseline = train_baseline(train, args.base_steps, 8, args.out)
    tests = {condition: test_set(test, condition) for condition in CONDITIONS}
    clean_test = {"image": network_images(test.left), "right": network_images(test.right), "voxel": test.voxel,
                  "depth": test.depth}
    results: dict[str, dict[str, dict[str, list[float]]]] = {}
    probes: list[str] = []
    for index, variant in enumerate(variants(args.diffusion_steps, args.width)):
        if args.variants is not None and index not in args.variants:
            continue
        scores = results.setdefault(variant.name, {})
        for seed in args.seeds if index else [0]:  # the frozen baseline is one fixed model
            torch.manual_seed(seed)
            model = variant.build(baseline)
            if index:
                extra = feature_match_term(model, variant.feature_match) if variant.feature_match else None
                fit(model, variant.call, lambda step: training_batch(train, np.random.default_rng([seed, step]),
                                                                      args.batch), args.steps, args.lr, extra)
            call = (lambda m, b: variant.call(m, b)[0]) if variant.feature_match else variant.call
            for condition, inputs in {**tests, "clean": clean_test}.items():
                for metric, value in evaluate(model, call, inputs).items():
                    scores.setdefault(condition, {}).setdefault(metric, []).append(value)
            if index == 2:  # the restorer variant's trained couplings
                probes += [f"seed {seed}, " + line for line in probe_couplings(model, tests["night"])]
        print(f"{variant.name}: night RMSE {summary(scores['night']['rmse'])} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    name = f"results_T{args.diffusion_steps}" + ("_" + "-".join(map(str, args.variants)) if args.variants else "")
    (args.out / f"{name}.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                       "results": results, "probes": probes}, indent=1))
    print(report(results, args, probes, time.perf_counter() - started))


def report(results: dict, args: argparse.Namespace, probes: list[str], seconds: float) -> str:
    names = list(results)
    header = ("| model | night RMSE (m) | night Abs.Rel | blur RMSE (m) | blur Abs.Rel | clean RMSE (m) |",
              "|---|---|---|---|---|---|")
    rows = [f"| {name} | " + " | ".join(summary(results[name][c][m]) for c, m in
                                       (("night", "rmse"), ("night", "abs_rel"), ("blur", "rmse"),
                                        ("blur", "abs_rel"), ("clean", "rmse"))) + " |" for name in names]

    def paired(a: str, b: str, condition: str) -> str:
        first, second = results[a][condition]["rmse"], results[b][condition]["rmse"]
        diffs = [y - (first[0] if len(first) == 1 else x) for x, y in zip(first * len(second), second)]
        wins = sum(d < 0 for d in diffs)
        return f"{summary(diffs)} m ({wins}/{len(diffs)} seeds lower)"

    lines = [*header, *rows, "",
             f"Seeds {args.seeds}; {args.steps} training steps of batch {args.batch} per variant and seed (the "
             f"baseline: one model, {args.base_steps} steps); mean ± sample std over seeds; {seconds / 60:.1f} min "
             "on one CPU thread.", "", "Paired RMSE differences (second minus first, per seed):", ""]
    every = [variant.name for variant in variants(args.diffusion_steps, args.width)]
    for first, second in PAIRS:
        a, b = every[first], every[second]
        if a in results and b in results:
            lines.append(f"- {b} vs {a}: night {paired(a, b, 'night')}, blur {paired(a, b, 'blur')}")
    lines += ["", "Bi-Lipschitz probe of the trained couplings (restorer variant, night test inputs):", ""]
    lines += [f"- {line}" for line in probes]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
