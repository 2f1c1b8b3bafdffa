"""Model inference speed: latency, images/s and achieved GFLOP/s against the measured matmul rate.

    python benchmarks/bench_model.py [--threads 2] [--rounds 5] [--write]
    python benchmarks/bench_model.py --device cuda [--write]     # GPU table, where a GPU exists

CPU: `fuse` (vits, vitb) and `depth_anything_v2` (vits, vitb) at 266x266 and 252x336, batch 1,
fp32 and bf16 autocast, interleaved round by round with (a) a float32 4096x4096 matmul, whose
rate is the reference for "fraction of matmul rate", and (b) the functional re-statement of
the spec in fuse/testing/reference_fuse.py: plain PyTorch ops in the upstream code's structure
(explicit attention, NCHW convolutions, encoders one after the other), standing in for the
original code. FLOPs come from torch.utils.flop_counter (a multiply-add counts as 2). The bf16
accuracy cost is the relative L2 error of the depth map against fp32 on the same input.

GPU: vits/vitb/vitl in fp32, bf16 and fp16 (autocast), eager and torch.compile, images/s at
batch 8 with peak GPU memory.
"""
from __future__ import annotations

import argparse
from contextlib import nullcontext

from common import count_flops, interleaved, machine_lines, matmul_candidate, table, write_section

SIZES = [(266, 266), (252, 336)]
LABELS = {"fp32": "ours fp32", "in_turn": "ours fp32, encoders in turn", "bf16": "ours bf16 (bf16 weights)",
          "autocast": "bf16 autocast (fp32 weights)", "reference": "reference (upstream-style) fp32"}


def one_after_another(tasks, device):
    """fuse.layers.parallel.run_side_by_side without the threads: the encoders run in turn."""
    return [task() for task in tasks]


def _inputs(kind: str, height: int, width: int, batch: int = 1, device: str = "cpu"):
    import torch

    from fuse.data.constants import IMAGENET_MEAN, IMAGENET_STD

    g = torch.Generator().manual_seed(0)
    image = torch.rand(batch, 3, height, width, generator=g)
    image = (image - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
    image = image.to(device)
    if kind == "fuse":
        events = torch.randn(batch, 3, height, width, generator=g).to(device)
        return image, events
    return (image,)


def _model(kind: str, encoder: str, device: str = "cpu"):
    import torch

    import fuse

    torch.manual_seed(0)
    model = fuse.build_model(kind, encoder=encoder)
    with torch.no_grad():  # a live ending, so the depth maps compared below are not all zero
        model.depth_head.scratch.output_conv2[2].bias.fill_(0.5 if kind == "depth_anything_v2" else 0.0)
    return model.eval().to(device)


def _reference(kind: str, encoder: str, model):
    """The spec's functional re-statement on the same weights (LoRA B is zero, so merged == weight)."""
    from fuse.testing import reference_fuse

    state = model.state_dict()
    if kind == "fuse":
        return lambda image, events: reference_fuse.fuse_forward(state, image, events, encoder)
    return lambda image: reference_fuse.depth_anything(state, image, encoder)


def cpu_table(threads: int, rounds: int) -> str:
    import torch

    from fuse.evaluate.inference import bfloat16_copy
    from fuse.methods.fuse import models as depth_models

    side_by_side = depth_models.run_side_by_side
    torch.set_num_threads(threads)
    matmul, matmul_flops = matmul_candidate()
    rows, notes = [], []
    for kind, encoder in (("fuse", "vits"), ("fuse", "vitb"), ("depth_anything_v2", "vits"), ("depth_anything_v2", "vitb")):
        model = _model(kind, encoder)
        low_model = bfloat16_copy(model)
        reference = _reference(kind, encoder, model)
        for height, width in SIZES:
            inputs = _inputs(kind, height, width)
            low_inputs = [x.bfloat16() for x in inputs]

            def fp32():
                with torch.inference_mode():
                    return model(*inputs)

            def bf16():  # what predict(precision="bf16") runs
                with torch.inference_mode():
                    return low_model(*low_inputs)

            def autocast():
                with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                    return model(*inputs)

            def ref():
                with torch.inference_mode():
                    return reference(*inputs)

            def in_turn():
                depth_models.run_side_by_side = one_after_another
                try:
                    return fp32()
                finally:
                    depth_models.run_side_by_side = side_by_side

            exact, upstream = fp32(), ref()
            errors = {name: f"{float((fn().float() - exact).norm() / exact.norm()):.1e}"
                      for name, fn in (("bf16", bf16), ("autocast", autocast))}
            errors["reference"] = f"{float((upstream - exact).norm() / exact.norm()):.1e}"
            flops = count_flops(fp32)
            candidates = {"fp32": fp32, "bf16": bf16, "autocast": autocast, "reference": ref, "matmul": matmul}
            if kind == "fuse":
                candidates["in_turn"] = in_turn
            t = interleaved(candidates, rounds=rounds)
            matmul_rate = matmul_flops / t["matmul"].best / 1e9
            matmul_cpu_rate = matmul_flops / t["matmul"].cpu_best
            for name in [c for c in LABELS if c in t]:
                rate = flops / t[name].best / 1e9
                cpu_fraction = flops / t[name].cpu_best / matmul_cpu_rate
                label = LABELS[name]
                rows.append([kind, encoder, f"{height}x{width}", label, t[name].best * 1e3, t[name].median * 1e3,
                             1.0 / t[name].best, flops / 1e9, rate, matmul_rate, rate / matmul_rate, cpu_fraction,
                             t["reference"].best / t[name].best, t["fp32"].best / t[name].best,
                             errors.get(name, "-")])
                print(rows[-1], flush=True)
    header = ["model", "encoder", "input", "path", "latency ms (best)", "latency ms (median)", "images/s", "GFLOP",
              "GFLOP/s", "matmul GFLOP/s (same run)", "fraction of matmul", "fraction of matmul (CPU time)",
              "speed-up vs reference",
              "speed-up vs ours fp32", "rel. L2 diff vs ours fp32"]
    lines = machine_lines("torch", "timm") + [
        f"- CPU, {threads} threads (torch.set_num_threads), batch 1, random weights, inference_mode",
        "- 'ours fp32' is the default path: FUSE's two encoders side by side, one core each",
        "  (fuse/layers/parallel.py); 'encoders in turn' is the same model with that switched off",
        "- 'ours bf16' is what `predict(precision=\"bf16\")` runs: a bfloat16 copy of the weights",
        "  (fuse.evaluate.inference.bfloat16_copy), bf16 inputs; 'bf16 autocast' keeps float32 weights and",
        "  runs under torch.autocast, which converts every weight on every call",
        "- the last column: relative L2 difference of the depth map against ours fp32 (for the reference,",
        "  the agreement of the two fp32 implementations)",
        "- matmul reference: float32 4096x4096 @ 4096x4096, timed in the same rounds",
        "- fraction of matmul: GFLOP/s over the matmul's GFLOP/s (best rounds, wall clock); the CPU-time",
        "  column divides FLOPs per process-CPU-second instead, which descheduling by other processes",
        "  on a shared machine does not distort",
        "",
        table(header, rows),
    ] + notes
    return "\n".join(lines)


def parts_table(threads: int, rounds: int) -> str:
    """Where `fuse` vits at 266x266 spends its time: encoders, fusion and head timed on their own,
    fp32 and bf16, against the same-run matmul rate (per core for the one-thread rows)."""
    import torch

    from fuse.evaluate.inference import bfloat16_copy

    torch.set_num_threads(threads)
    matmul, matmul_flops = matmul_candidate()
    model = _model("fuse", "vits")
    nets = {"fp32": (model, _inputs("fuse", 266, 266)),
            "bf16": (bfloat16_copy(model), [x.bfloat16() for x in _inputs("fuse", 266, 266)])}
    grid = 266 // 14
    candidates, flops = {"matmul": matmul}, {}
    for precision, (net, (image, events)) in nets.items():
        with torch.inference_mode():
            image_taps, event_taps = net.encode(image, events)
            features = net.fuse_taps(image_taps, event_taps, grid, grid)

        def inference(fn):
            def run():
                with torch.inference_mode():
                    return fn()
            return run

        def one_thread(fn):
            def run():
                torch.set_num_threads(1)
                try:
                    return fn()
                finally:
                    torch.set_num_threads(threads)
            return run

        parts = {
            "whole model": lambda net=net, image=image, events=events: net(image, events),
            "both encoders, side by side": lambda net=net, image=image, events=events: net.encode(image, events),
            "one encoder alone, 1 thread": one_thread(lambda net=net, image=image: net.image_encoder.tapped_tokens(image)),
            "4 FreDFuse blocks + norm, side by side": lambda net=net, taps=(image_taps, event_taps): net.fuse_taps(
                *taps, grid, grid),
            "DPT head": lambda net=net, features=features: net.depth_head(features, grid, grid),
        }
        for name, fn in parts.items():
            candidates[(precision, name)] = inference(fn)
            if precision == "fp32":
                flops[name] = count_flops(inference(fn))
    t = interleaved(candidates, rounds=rounds)
    matmul_rate = matmul_flops / t["matmul"].best / 1e9
    rows = []
    for (precision, name), timing in ((k, v) for k, v in t.items() if k != "matmul"):
        rate = flops[name] / timing.best / 1e9
        reference = matmul_rate / threads if "1 thread" in name else matmul_rate
        rows.append([name, precision, timing.best * 1e3, flops[name] / 1e9, rate, rate / reference,
                     t[("fp32", name)].best / timing.best])
        print(rows[-1], flush=True)
    lines = machine_lines("torch", "timm") + [
        f"- `fuse` vits, 266x266, batch 1, {threads} threads, random weights; each part timed on its own,",
        "  interleaved with a float32 4096x4096 matmul "
        f"({matmul_rate:.0f} GFLOP/s with {threads} threads in this run; the one-thread row is compared",
        f"  with 1/{threads} of it)",
        "",
        table(["part", "precision", "ms (best)", "GFLOP", "GFLOP/s", "fraction of matmul", "speed-up vs fp32"], rows),
    ]
    return "\n".join(lines)


def ops_table(rounds: int) -> str:
    """fp32 vs bf16 speed of the encoder's operator kinds, one thread: what bounds the bf16 speed-up."""
    import torch
    import torch.nn.functional as F

    from fuse.layers.attention import attention

    torch.set_num_threads(1)
    tokens, dim = 362, 384
    g = torch.Generator().manual_seed(0)
    x, w1, w2 = (torch.randn(tokens, dim, generator=g), torch.randn(4 * dim, dim, generator=g),
                 torch.randn(dim, 4 * dim, generator=g))
    h = torch.randn(tokens, 4 * dim, generator=g)
    q = torch.randn(1, 6, tokens, 64, generator=g)
    q_fuse = torch.randn(1, 6, tokens - 1, 32, generator=g)
    ops = {
        "linear 362x384 -> 1536 (mlp.fc1)": (lambda a, b: F.linear(a, b), (x, w1), 2 * tokens * dim * 4 * dim),
        "linear 362x1536 -> 384 (mlp.fc2)": (lambda a, b: F.linear(a, b), (h, w2), 2 * tokens * dim * 4 * dim),
        "attention, 6 heads of 362x64 (SDPA)": (lambda a: F.scaled_dot_product_attention(a, a, a), (q,),
                                                 4 * 6 * tokens * tokens * 64),
        "attention, 6 heads of 362x64 (fuse.layers.attention: SDPA in fp32, bmm in bf16)":
            (lambda a: attention(a, a, a), (q,), 4 * 6 * tokens * tokens * 64),
        "FreDFuse attention, 6 heads of 361x32 (SDPA)": (lambda a: F.scaled_dot_product_attention(a, a, a),
                                                          (q_fuse,), 4 * 6 * (tokens - 1) ** 2 * 32),
        "FreDFuse attention, 6 heads of 361x32 (fuse.layers.attention)": (lambda a: attention(a, a, a), (q_fuse,),
                                                                          4 * 6 * (tokens - 1) ** 2 * 32),
        "layer norm 362x384": (lambda a: F.layer_norm(a, (dim,)), (x,), 0),
        "GELU 362x1536": (F.gelu, (h,), 0),
    }
    rows = []
    for name, (fn, args, flops) in ops.items():
        low = tuple(a.bfloat16() for a in args)
        t = interleaved({"fp32": lambda: fn(*args), "bf16": lambda: fn(*low)}, rounds=rounds * 4)
        rows.append([name, t["fp32"].cpu_best * 1e3, t["bf16"].cpu_best * 1e3, t["fp32"].cpu_best / t["bf16"].cpu_best,
                     flops / t["fp32"].cpu_best / 1e9 if flops else "-", flops / t["bf16"].cpu_best / 1e9 if flops else "-"])
        print(rows[-1], flush=True)
    lines = machine_lines("torch") + [
        "- one thread, process CPU time of the best round, inputs in bf16 for the bf16 column",
        "",
        table(["operator", "fp32 ms", "bf16 ms", "bf16 speed-up", "fp32 GFLOP/s", "bf16 GFLOP/s"], rows),
    ]
    return "\n".join(lines)


def gpu_table(rounds: int) -> str:
    import torch

    device = "cuda"
    rows = []
    batch = 8
    for kind in ("fuse", "depth_anything_v2"):
        for encoder in ("vits", "vitb", "vitl"):
            base = _model(kind, encoder, device)
            inputs = _inputs(kind, 266, 266, batch=batch, device=device)
            for compiled in (False, True):
                model = torch.compile(base) if compiled else base
                for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
                    def run():
                        context = torch.autocast("cuda", dtype=dtype) if dtype else nullcontext()
                        with torch.inference_mode(), context:
                            return model(*inputs)

                    torch.cuda.reset_peak_memory_stats()
                    t = interleaved({"run": run}, rounds=rounds, warmup=3, sync=torch.cuda.synchronize)
                    rows.append([kind, encoder, "compile" if compiled else "eager", precision, batch / t["run"].best,
                                 t["run"].best * 1e3, torch.cuda.max_memory_allocated() / 2**20])
                    print(rows[-1], flush=True)
    header = ["model", "encoder", "mode", "precision", "images/s", "batch latency ms", "peak GPU MiB"]
    lines = machine_lines("torch", "timm") + [
        f"- GPU: {torch.cuda.get_device_name()}, batch {batch}, 266x266, autocast for bf16/fp16",
        "",
        table(header, rows),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--ops", action="store_true", help="only the fp32 vs bf16 operator table")
    parser.add_argument("--parts", action="store_true", help="only the encoders / fusion / head breakdown of fuse vits")
    parser.add_argument("--write", action="store_true", help="update the model section of BENCHMARKS.md")
    args = parser.parse_args()
    if args.ops:
        body = ops_table(args.rounds)
        print(body)
        if args.write:
            write_section("model_ops", "Operators, fp32 vs bf16 (CPU)", body, "python benchmarks/bench_model.py --ops --write")
        return
    if args.parts:
        body = parts_table(args.threads, args.rounds)
        print(body)
        if args.write:
            write_section("model_parts", "Where `fuse` spends its time (CPU)", body,
                          "python benchmarks/bench_model.py --parts --write")
        return
    if args.device == "cuda":
        body = gpu_table(args.rounds)
        print(body)
        if args.write:
            write_section("model_gpu", "Model inference, GPU", body, "python benchmarks/bench_model.py --device cuda --write")
        return
    body = cpu_table(args.threads, args.rounds)
    print(body)
    if args.write:
        write_section("model_cpu", "Model inference, CPU", body, "python benchmarks/bench_model.py --write")


if __name__ == "__main__":
    main()
