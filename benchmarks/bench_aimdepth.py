"""AIMDepth speed on the CPU: the chunked selective scan against its sequential reference, and the
whole model next to FUSE.

    python benchmarks/bench_aimdepth.py [--threads 2] [--rounds 3] [--model-rounds 2] [--write]
    python benchmarks/bench_aimdepth.py --quick        # short sequences and small inputs, to check the script

Two tables, each timed in one process with its candidates interleaved round by round
(``common.interleaved``, one warm-up call each); "best" is the fastest round.

1. Selective scan (``fuse.methods.aimdepth.scan``): ``selective_scan`` (chunked, chunk about
   sqrt(L)) against ``selective_scan_reference`` (one time step per Python iteration) at the
   sequence length of the first encoder stage for MVSEC's 260 x 346 input: padded to multiples of
   32 it is 288 x 352, stage 1 has stride 4, so L = 72 * 88 = 6336. Shapes: the paper size's stage-1
   SS2D scan (4 directions as 4 groups, c = 4 * 192 channels, d_state 16), the tiny size's (c = 4 *
   32, d_state 4), one direction of the paper size (c = 192, one group) and the tiny size at batch 8
   (training). Forward under ``inference_mode``; forward + backward (gradients of u, delta, A, B, C
   and D from a fixed random output gradient) at the tiny shapes. Inputs as a trained layer sees them:
   delta = randn - 2 before the softplus (Δ about 0.1-0.3), A = -exp(0.5 randn), u, B, C, D randn.
   The accuracy columns compare the two implementations' outputs (and, for training, all gradients).
2. Whole model, batch 1, fp32, ``inference_mode``, random weights: AIMDepth paper and tiny against
   FUSE vits (``bench_model``'s model and inputs), at 224 x 224 (a multiple of both 32 and 14, the
   same input for all) and at each model's MVSEC input (AIMDepth: 260 x 346 padded to 288 x 352;
   FUSE: 266 x 350, what its evaluation resizes 260 x 346 to). FLOPs: ``torch.utils.flop_counter``
   (a multiply-add counts 2), which does not see the selective scan (elementwise ops only), plus the
   scan counted as VMamba counts it: 9 * b * c * L * n per call, accumulated from the arguments of
   every ``selective_scan`` call the counting run makes (``fuse.methods.aimdepth.vss.selective_scan``
   wrapped for that run). The "fvcore convention" column counts a multiply-add as 1 plus the same
   scan term, as VMamba and most Mamba papers report "FLOPs".
"""
from __future__ import annotations

import argparse
import math
from contextlib import contextmanager

import torch

from bench_model import _inputs as fuse_inputs, _model as fuse_model
from common import count_flops, interleaved, load_average, machine_lines, table, write_section

import fuse
from fuse.methods.aimdepth.scan import selective_scan, selective_scan_reference

MVSEC = (260, 346)  # MVSEC's DAVIS frames (height, width)
STRIDE = 32  # AIMDepth's input multiple
FUSE_MVSEC = (266, 350)  # fuse.data.transforms.lower_bound_size(260, 346): FUSE's evaluation input
COMMON = (224, 224)  # a multiple of 32 and of 14
PAPER_PARAMS, PAPER_GFLOPS = 45.07, 8.69  # AIMDepth's table (resolution not stated)
# VMamba-T as Sigma's encoder (dims 96-768, depths 2-2-9-2, d_state 16, 22 M), 224 x 224, fvcore (a multiply-add
# counts 1) plus 9BLDN per scan: MzeroMiko/VMamba, assets/performance_stage0.md ("4.5G" before the 9BLDN scan count)
VMAMBA_T_GFLOPS = 5.6
QUICK = dict(scan_input=(64, 96), common=COMMON, aimdepth=(64, 96), fuse=(56, 84))


def padded(height: int, width: int) -> tuple[int, int]:
    """The input AIMDepth runs on: padded up to multiples of 32."""
    return math.ceil(height / STRIDE) * STRIDE, math.ceil(width / STRIDE) * STRIDE


def stage1_length(height: int, width: int) -> int:
    """Sequence length of the first encoder stage (stride 4) for a ``height`` x ``width`` input."""
    height, width = padded(height, width)
    return (height // 4) * (width // 4)


# (label, batch, channels c, groups g, d_state n, with forward + backward)
SCAN_SHAPES = [
    ("paper, SS2D (4 directions)", 1, 4 * 192, 4, 16, False),
    ("tiny, SS2D (4 directions)", 1, 4 * 32, 4, 4, True),
    ("paper, one direction", 1, 192, 1, 16, False),
    ("tiny, SS2D, batch 8 (training)", 8, 4 * 32, 4, 4, True),
]


def scan_inputs(batch: int, channels: int, groups: int, states: int, length: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(u=torch.randn(batch, channels, length, generator=g),
                delta=torch.randn(batch, channels, length, generator=g) - 2,
                A=-torch.exp(0.5 * torch.randn(channels, states, generator=g)),
                B=torch.randn(batch, groups, states, length, generator=g),
                C=torch.randn(batch, groups, states, length, generator=g),
                D=torch.randn(channels, generator=g))


def forward_candidate(fn, inputs: dict):
    def run():
        with torch.inference_mode():
            return fn(**inputs, delta_softplus=True)
    return run


def training_candidate(fn, inputs: dict, grad: torch.Tensor):
    """Forward + backward with leaves of its own; returns the output and the gradients of every input."""
    leaves = {name: x.clone().requires_grad_(True) for name, x in inputs.items()}

    def run():
        for x in leaves.values():
            x.grad = None
        y = fn(**leaves, delta_softplus=True)
        y.backward(grad)
        return y.detach(), [x.grad for x in leaves.values()]
    return run


def scan_table(length: int, rounds: int) -> tuple[str, list[str]]:
    """Table 1 and one summary entry per forward row (the best-round ratio, against the 20x criterion)."""
    rows, summary = [], []
    for label, batch, channels, groups, states, training in SCAN_SHAPES:
        inputs = scan_inputs(batch, channels, groups, states, length)
        modes = {"forward": (forward_candidate(selective_scan_reference, inputs),
                             forward_candidate(selective_scan, inputs))}
        if training:
            grad = torch.randn(batch, channels, length, generator=torch.Generator().manual_seed(1))
            modes["forward + backward"] = (training_candidate(selective_scan_reference, inputs, grad),
                                           training_candidate(selective_scan, inputs, grad))
        for mode, (reference, chunked) in modes.items():
            expected, got = reference(), chunked()
            if mode == "forward":
                diff, scale = float((got - expected).abs().max()), float(expected.abs().max())
            else:
                pairs = [(expected[0], got[0])] + list(zip(expected[1], got[1]))
                diff = max(float((b - a).abs().max()) for a, b in pairs)
                scale = max(float(a.abs().max()) for a, _ in pairs)
            del expected, got
            t = interleaved({"reference": reference, "chunked": chunked}, rounds=rounds)
            ratio = t["reference"].best / t["chunked"].best
            rows.append([label, mode, f"{batch}x{channels}x{length}", groups, states, 1e3 * t["reference"].best,
                         1e3 * t["reference"].median, 1e3 * t["chunked"].best, 1e3 * t["chunked"].median,
                         ratio, t["reference"].median / t["chunked"].median, f"{diff:.1e}", f"{scale:.3g}"])
            print(rows[-1], flush=True)
            if mode == "forward":
                summary.append(f"{label}: {ratio:.3g}x ({'met' if ratio >= 20 else 'not met'})")
    header = ["shape", "mode", "u: b x c x L", "groups g", "d_state n", "reference ms (best)",
              "reference ms (median)", "chunked ms (best)", "chunked ms (median)", "speed-up (best)",
              "speed-up (median)", "max abs diff", "max abs value (reference)"]
    return table(header, rows), summary


# ---------------------------------------------------------------- whole models

@contextmanager
def counting_scans():
    """``fuse.methods.aimdepth.vss.selective_scan`` wrapped to add 9 * b * c * L * n per call to ``total[0]``."""
    from fuse.methods.aimdepth import vss

    total = [0]
    original = vss.selective_scan

    def counted(u, delta, A, B, C, *args, **kwargs):
        batch, channels, length = u.shape
        total[0] += 9 * batch * channels * length * A.shape[1]
        return original(u, delta, A, B, C, *args, **kwargs)

    vss.selective_scan = counted
    try:
        yield total
    finally:
        vss.selective_scan = original


def aimdepth_model(size: str):
    torch.manual_seed(0)
    return fuse.build_model("aimdepth", size=size).eval()


def aimdepth_inputs(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    image, _ = fuse_inputs("fuse", height, width)  # the same normalized random image as FUSE's
    events = torch.randn(1, 5, height, width, generator=torch.Generator().manual_seed(1))
    return image, events


def model_table(rounds: int, sizes: dict) -> str:
    """Table 2: per input set, the three models interleaved; the paper's claim as its own row."""
    models = {"AIMDepth paper": aimdepth_model("paper"), "AIMDepth tiny": aimdepth_model("tiny"),
              "FUSE vits": fuse_model("fuse", "vits")}
    params = {name: sum(p.numel() for p in model.parameters()) / 1e6 for name, model in models.items()}
    sets = [("same input", {name: sizes["common"] for name in models}),
            ("MVSEC input", {"AIMDepth paper": sizes["aimdepth"], "AIMDepth tiny": sizes["aimdepth"],
                             "FUSE vits": sizes["fuse"]})]
    rows = [["AIMDepth (paper's claim)", "not stated", "-", f"{PAPER_PARAMS:.2f}", "-", "-", "-",
             f"{PAPER_GFLOPS:.2f}", "-", "-", "-", "-"]]
    for what, inputs in sets:
        candidates, flops = {}, {}
        for name, model in models.items():
            height, width = inputs[name]
            args = aimdepth_inputs(height, width) if name.startswith("AIMDepth") else fuse_inputs("fuse", height, width)

            def run(model=model, args=args):
                with torch.inference_mode():
                    return model(*args)

            with counting_scans() as scans:
                counted = count_flops(run)
            flops[name] = (counted, float(scans[0]))
            candidates[name] = run
            print(f"{name} {height}x{width}: {counted / 1e9:.3g} GFLOP counted + {scans[0] / 1e9:.3g} scan", flush=True)
        t = interleaved(candidates, rounds=rounds)
        for name, timing in t.items():
            counted, scan = flops[name]
            total = counted + scan
            height, width = inputs[name]
            rows.append([name, f"{height}x{width}", what, params[name], counted / 1e9, scan / 1e9, total / 1e9,
                         (counted / 2 + scan) / 1e9, 1e3 * timing.best, 1e3 * timing.median, 1 / timing.best,
                         total / timing.best / 1e9])
            print(rows[-1], flush=True)
    header = ["model", "input", "input set", "params (M)", "GFLOP (flop counter, multiply-add = 2)", "scan GFLOP (9bcLn)",
              "GFLOP total", "G, fvcore convention (multiply-add = 1, + scan)", "latency ms (best)",
              "latency ms (median)", "images/s", "GFLOP/s (total / best)"]
    return table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the selective scan table")
    parser.add_argument("--model-rounds", type=int, default=2, help="rounds of the whole-model table")
    parser.add_argument("--quick", action="store_true", help="short sequences, small inputs, one round (a check)")
    parser.add_argument("--write", action="store_true", help="update the AIMDepth section of BENCHMARKS.md")
    args = parser.parse_args()
    if args.quick and args.write:
        parser.error("--quick measures other shapes than the section describes; run without it to --write")
    torch.set_num_threads(args.threads)
    scan_input = QUICK["scan_input"] if args.quick else MVSEC
    sizes = {key: QUICK[key] for key in ("common", "aimdepth", "fuse")} if args.quick else \
        {"common": COMMON, "aimdepth": padded(*MVSEC), "fuse": FUSE_MVSEC}
    rounds, model_rounds = (1, 1) if args.quick else (args.rounds, args.model_rounds)
    length = stage1_length(*scan_input)

    head = machine_lines("torch") + [
        f"- CPU, {torch.get_num_threads()} threads (torch.set_num_threads), fp32, random weights and inputs",
    ]
    print("\n".join(head), flush=True)
    scans, summary = scan_table(length, rounds)
    print(scans, flush=True)
    models = model_table(model_rounds, sizes)
    print(models, flush=True)
    end = f"- load average (1/5/15 min) at the end: {load_average()}"
    print(end, flush=True)
    height, width = scan_input
    fit = padded(height, width)
    body = "\n".join(head + [
        end,
        "",
        f"Selective scan at the first encoder stage's sequence length for a {height}x{width} input "
        f"(padded to {fit[0]}x{fit[1]}, stride 4: L = {fit[0] // 4} * {fit[1] // 4} = {length}): "
        "`selective_scan` (chunked, chunk about sqrt(L)) against `selective_scan_reference` (one step per "
        f"Python iteration), interleaved, {rounds} rounds after one warm-up call each; speed-up = reference time "
        "over chunked time; the accuracy columns compare the chunked output (and, for forward + backward, "
        "every input's gradient) with the reference's. Forward under `inference_mode`; delta = randn - 2 "
        "before the softplus, A = -exp(0.5 randn), u, B, C, D randn:",
        "",
        scans,
        "",
        f"Acceptance criterion (chunked at least 20x faster than the reference at this length, forward, "
        f"{torch.get_num_threads()} threads, one run; best rounds): " + "; ".join(summary) + ".",
        "",
        f"Whole models, batch 1, fp32, `inference_mode`, {model_rounds} rounds after one warm-up call each, the "
        "three models interleaved per input set. 'same input': all at "
        f"{sizes['common'][0]}x{sizes['common'][1]}; 'MVSEC input': AIMDepth at {sizes['aimdepth'][0]}x"
        f"{sizes['aimdepth'][1]} (260x346 padded to multiples of 32), FUSE at {sizes['fuse'][0]}x{sizes['fuse'][1]} "
        "(260x346 resized to multiples of 14, both sides at least 266, as its evaluation does). GFLOP per image: "
        "the flop counter does not see the selective scan, which is added as 9 * b * c * L * n per call "
        "(VMamba's count); the fvcore-convention column (multiply-add = 1, plus the scan) is the one to set "
        f"next to the paper's {PAPER_GFLOPS} G and VMamba-T's {VMAMBA_T_GFLOPS} G at 224x224 (its encoder alone, "
        "one modality; AIMDepth runs it on both modalities and adds a decoder). Our paper size has fewer "
        f"parameters than the paper's {PAPER_PARAMS} M (the choices the paper leaves open, docs/aimdepth.md):",
        "",
        models,
    ])
    if args.write:
        write_section("aimdepth", "AIMDepth", body, "python benchmarks/bench_aimdepth.py --write")


if __name__ == "__main__":
    main()
