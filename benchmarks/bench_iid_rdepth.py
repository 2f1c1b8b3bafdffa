"""IID-RDepth's restoration cost on the CPU: images/s against the number of diffusion steps T, so a
user can choose T.

    python benchmarks/bench_iid_rdepth.py [--threads 2] [--rounds 5] [--steps 0 1 2 4 8 16] [--write]
    python benchmarks/bench_iid_rdepth.py --quick        # tiny model and input, one round, to check the script

One table, timed in one process with every configuration interleaved round by round
(``common.interleaved``, one warm-up call each); batch 1, fp32, ``inference_mode``, random weights.
The base is DA-V2 vits with a metric head at 266 x 350 (MVSEC's 260 x 346 resized to multiples of
14, as FUSE's evaluation does) and FUSE vits on the same input with a 3-bin voxel grid. Rows: the
base alone; IID-RDepth with T = 0 (the invertible fine stages only) and each T of ``--steps`` (the
restorer's default width 64, restoring the deepest two taps, plus the invertible stages); and at
T = 4 the two auxiliary views (AV-LFE with the right camera, which runs the frozen encoder a second
time, and with the event voxel grid). GFLOP: ``torch.utils.flop_counter`` (a multiply-add counts 2).
"""
from __future__ import annotations

import argparse

import torch

from common import count_flops, interleaved, load_average, machine_lines, table, write_section

import fuse

INPUT = (266, 350)
QUICK_INPUT = (56, 70)
BINS = 3


def _candidates(encoder: str, steps: list[int], size: tuple[int, int]) -> dict[str, tuple[torch.nn.Module, tuple]]:
    """(model, arguments) per row; every model in eval mode under fixed seeds."""
    torch.manual_seed(0)
    image = torch.randn(1, 3, *size)
    events = torch.randn(1, BINS, *size)
    dav2 = fuse.build_model("depth_anything_v2", encoder=encoder, head="metric").eval()
    fuse_base = fuse.build_model("fuse", encoder=encoder, head="metric").eval()
    rows: dict[str, tuple[torch.nn.Module, tuple]] = {f"DA-V2 {encoder} (base)": (dav2, (image,))}
    for t in steps:
        model = fuse.build_model("iid_rdepth", base=dav2, diffusion_steps=t).eval()
        rows[f"IID-RDepth on DA-V2, T = {t}"] = (model, (image,))
    rows["IID-RDepth on DA-V2, T = 4, AV-LFE right camera"] = (
        fuse.build_model("iid_rdepth", base=dav2, diffusion_steps=4, aux_view="right").eval(), (image, None, image))
    rows["IID-RDepth on DA-V2, T = 4, AV-LFE events"] = (
        fuse.build_model("iid_rdepth", base=dav2, diffusion_steps=4, aux_view="events").eval(), (image, events))
    rows[f"FUSE {encoder} (base)"] = (fuse_base, (image, events))
    rows["IID-RDepth on FUSE, T = 4"] = (fuse.build_model("iid_rdepth", base=fuse_base, diffusion_steps=4).eval(),
                                         (image, events))
    return rows


def measure(encoder: str, steps: list[int], size: tuple[int, int], rounds: int) -> str:
    rows = _candidates(encoder, steps, size)

    def call(model, args):
        with torch.inference_mode():
            return model(*args)

    timings = interleaved({name: (lambda m=model, a=args: call(m, a)) for name, (model, args) in rows.items()}, rounds)
    out = []
    for name, (model, args) in rows.items():
        params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("base.")) / 1e6
        gflop = count_flops(lambda m=model, a=args: call(m, a)) / 1e9
        timing = timings[name]
        out.append((name, f"{size[0]}x{size[1]}", params, gflop, timing.best * 1e3, timing.median * 1e3,
                    timing.cpu_best * 1e3, 1 / timing.best))
    return table(("model", "input", "params (M)", "GFLOP", "latency ms (best)", "latency ms (median)",
                  "CPU ms (best, all threads)", "images/s (best)"), out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 1, 2, 4, 8, 16], help="diffusion steps T")
    parser.add_argument("--quick", action="store_true", help="vitt at 56 x 70, one round (a check)")
    parser.add_argument("--write", action="store_true", help="update the IID-RDepth section of BENCHMARKS.md")
    args = parser.parse_args()
    if args.quick and args.write:
        parser.error("--quick measures another model and input than the section describes; run without it to --write")
    torch.set_num_threads(args.threads)
    encoder, size, rounds = ("vitt", QUICK_INPUT, 1) if args.quick else ("vits", INPUT, args.rounds)
    head = machine_lines("torch") + [
        f"- CPU, {torch.get_num_threads()} threads (torch.set_num_threads), batch 1, fp32, `inference_mode`, random "
        "weights and inputs",
    ]
    print("\n".join(head), flush=True)
    result = measure(encoder, args.steps, size, rounds)
    print(result, flush=True)
    end = f"- load average (1/5/15 min) at the end: {load_average()}"
    print(end, flush=True)
    body = "\n".join(head + [
        end,
        "",
        f"Images/s against the restorer's diffusion steps T, {rounds} rounds after one warm-up call each, all rows "
        f"interleaved. The base is DA-V2 {encoder} with a metric head at {size[0]}x{size[1]} (MVSEC's 260x346 resized "
        "to multiples of 14, as FUSE's evaluation does); IID-RDepth wraps it with the default plug-in (restorer width "
        "64 on the deepest two taps, two invertible fine stages of one affine coupling each); T = 0 is the "
        "invertible stages alone. 'params' are the plug-in's own (the whole model's for the base rows). Each DDIM "
        "step runs the conditional U-Net once on the token grid, so the cost grows linearly in T; the right camera "
        "adds a second pass of the frozen encoder. On a shared machine the wall-clock columns drift with the other "
        "processes' load; the GFLOP and CPU-time columns (the work this process did) are the steadier guide:",
        "",
        result,
    ])
    if args.write:
        write_section("iid_rdepth", "IID-RDepth", body, "python benchmarks/bench_iid_rdepth.py --write")


if __name__ == "__main__":
    main()
