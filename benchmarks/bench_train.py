"""Training speed: step time of each stage, peak memory, the share of time spent waiting for
data, and stage 2 with the frozen event encoder's LoRA merged against unmerged.

    python benchmarks/bench_train.py [--steps 6] [--threads 2] [--write]

Data: a processed split at MVSEC resolution (346x260 images, depth maps and 3-bin voxels,
fuse/testing/fixtures.write_split) read through the real dataset and DataLoader with the
default worker count (``data.workers``), input 266x266, batch 2. Teacher and stage inputs
are random-weight checkpoints of the right layout. Each (stage, encoder) runs in its own child
process, so its peak resident memory is its own. A step is timed as fit() runs it: the wait
for the next batch from the loader, then ``train_step``; the first two steps (worker start-up,
first-call allocations) are not counted.

Stage 2, merged vs unmerged LoRA: trainers on the same fixed batch, ``train_step`` interleaved.
"Unmerged, factored" is our unmerged path (x·Aᵀ·Bᵀ, rank 8). "Straightforward" is the issue's
baseline, an implementation that keeps LoRA unmerged and computes x·ΔWᵀ separately with the
full ΔW = s·B·A (LoRALinear.forward replaced for that trainer only), and runs the two encoders
one after the other (the side-by-side encoder path replaced by a plain loop).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from common import count_flops, interleaved, machine_lines, table, write_section

HERE = Path(__file__).resolve().parent
STAGES = ("align", "fuse", "adapt")
ENCODERS = ("vitt", "vits")


def _prepare(root: Path, encoder: str) -> dict[str, str]:
    """Split, DA-V2 checkpoint and a FUSE foundation checkpoint for ``encoder``, written once."""
    import torch

    import fuse
    from fuse.checkpoint import save_checkpoint
    from fuse.testing.fixtures import write_split, write_teacher

    split = root / "data" / "seq.txt"
    if not split.exists():
        write_split(root / "data", frames=24, height=260, width=346)
    teacher = root / f"dav2_{encoder}.pth"
    if not teacher.exists():
        write_teacher(teacher, encoder=encoder)
    foundation = root / f"foundation_{encoder}.pth"
    if not foundation.exists():
        torch.manual_seed(0)
        save_checkpoint(foundation, fuse.build_model("fuse", encoder=encoder, head="relative"))
    return {"split": str(split), "teacher": str(teacher), "foundation": str(foundation)}


def _config(stage: str, encoder: str, files: dict[str, str], out: Path, **extra):
    from fuse.train.config import TrainConfig, load_config

    items = {"model.encoder": encoder, "data.dataset": "mvsec", "data.train_split": files["split"],
             "optim.batch_size": 2, "optim.epochs": 1000, "run.output_dir": str(out), "run.log_every": 1000,
             "run.image_every_steps": 0, "run.checkpoint_every_steps": 0, "run.device": "cpu",
             "init.depth_anything": files["teacher"], "init.event_encoder": files["teacher"],
             "init.foundation": files["foundation"]}
    if stage == "fuse":
        items["data.degradation"] = "fuse_stage2"
    items.update(extra)
    return TrainConfig.from_dict(load_config(None, [f"{k}={v}" for k, v in items.items()], stage=stage))


def measure_stage(stage: str, encoder: str, root: Path, steps: int) -> dict:
    """In this process: step time, data wait and peak RSS of ``steps`` steps (after two warm-up steps)."""
    import resource

    from fuse.train.trainer import Trainer

    files = _prepare(root, encoder)
    trainer = Trainer(_config(stage, encoder, files, root / f"run_{stage}_{encoder}"))
    trainer.student.train()
    trainer.train_set.set_epoch(0)
    trainer.sampler.set_epoch(0)
    loader = iter(trainer._loader(trainer.train_set, sampler=trainer.sampler))
    waits, computes = [], []
    for step in range(steps + 2):
        start = time.perf_counter()
        batch = next(loader)
        ready = time.perf_counter()
        trainer.train_step(batch)
        done = time.perf_counter()
        if step >= 2:
            waits.append(ready - start)
            computes.append(done - ready)
    return {"stage": stage, "encoder": encoder, "workers": trainer.config.data.workers,
            "step": (sum(waits) + sum(computes)) / steps, "wait": sum(waits) / steps, "compute": sum(computes) / steps,
            "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def dense_delta_forward(self, x):
    """LoRALinear without merging and without the rank factorization: x·Wᵀ + x·ΔWᵀ + b."""
    import torch.nn.functional as F

    return F.linear(x, self.weight, self.bias) + F.linear(x, self.delta_weight())


def merge_comparison(root: Path, rounds: int) -> list[list]:
    """Stage 2 (vits): merged vs unmerged LoRA vs straightforward, same batch, interleaved."""
    import torch

    from fuse.train.trainer import Trainer
    from fuse.methods.fuse import models as depth_models
    from fuse.layers.lora import LoRALinear

    files = _prepare(root, "vits")
    trainers = {
        "merged (default)": Trainer(_config("fuse", "vits", files, root / "merged", **{"data.workers": 0})),
        "unmerged, factored (x·Aᵀ·Bᵀ)": Trainer(_config("fuse", "vits", files, root / "unmerged",
                                                         **{"data.workers": 0, "run.merge_frozen_lora": "false"})),
    }
    plain = "straightforward (unmerged, x·ΔWᵀ with dense ΔW, encoders in turn)"
    trainers[plain] = Trainer(_config(
        "fuse", "vits", files, root / "plain", **{"data.workers": 0, "run.merge_frozen_lora": "false"}))
    batch = next(iter(trainers[plain]._loader(trainers[plain].train_set)))
    side_by_side, lora_forward = depth_models.run_side_by_side, LoRALinear.forward

    def one_after_another(tasks, device):
        return [task() for task in tasks]

    @contextmanager
    def variant(name: str):
        if name == plain:
            depth_models.run_side_by_side, LoRALinear.forward = one_after_another, dense_delta_forward
        try:
            yield
        finally:
            depth_models.run_side_by_side, LoRALinear.forward = side_by_side, lora_forward

    def step(name: str):
        with variant(name):
            return trainers[name].train_step(batch)

    losses, flops = {}, {}
    for name, trainer in trainers.items():
        trainer.student.train()
        torch.manual_seed(0)
        with torch.no_grad():
            with variant(name):
                losses[name] = float(trainer.compute_losses(batch)[0])
        flops[name] = count_flops(lambda: step(name))
    t = interleaved({name: (lambda n=name: step(n)) for name in trainers}, rounds=rounds)
    base = t[plain].best
    return [[name, t[name].best, t[name].median, flops[name] / 1e9, losses[name], base / t[name].best] for name in trainers]


# Run with the benchmarks folder as working directory, where ``python -c`` finds bench_train.
CHILD = """
import json, sys
import torch
torch.set_num_threads(int(sys.argv[4]))
from bench_train import measure_stage
from pathlib import Path
print(json.dumps(measure_stage(sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[5]))))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the stage-2 comparison")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--write", action="store_true", help="update the training section of BENCHMARKS.md")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory(prefix="fuse_bench_train_") as tmp:
        root = Path(tmp)
        for encoder in ENCODERS:
            _prepare(root, encoder)
            for stage in STAGES:
                out = subprocess.run([sys.executable, "-c", CHILD, stage, encoder, str(root), str(args.threads),
                                      str(args.steps)], cwd=HERE, capture_output=True, text=True)
                if out.returncode:
                    raise RuntimeError(f"{stage}/{encoder} failed:\n{out.stderr[-3000:]}")
                r = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append([r["stage"], r["encoder"], r["workers"], r["step"], r["compute"], r["wait"],
                             f"{100 * r['wait'] / r['step']:.1f}%", r["rss"]])
                print(rows[-1], flush=True)
        merge_rows = merge_comparison(root, args.rounds)
        for row in merge_rows:
            print(row, flush=True)

    body = "\n".join(machine_lines("torch", "timm") + [
        f"- CPU, {args.threads} threads, batch 2, input 266x266, {args.steps} timed steps after 2 warm-up steps",
        "",
        table(["stage", "encoder", "loader workers", "step s", "train_step s", "waiting for data s",
               "data share", "peak RSS MiB"], rows),
        "",
        "Stage 2 (fuse), vits, one fixed batch, forward + backward, interleaved:",
        "",
        table(["variant", "step s (best)", "step s (median)", "GFLOP (forward + backward + update)", "loss",
               "speed-up vs straightforward"], merge_rows),
    ])
    print(body)
    if args.write:
        write_section("train", "Training", body, "python benchmarks/bench_train.py --write")


if __name__ == "__main__":
    main()
