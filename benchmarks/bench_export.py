"""Runtimes for one model on the CPU: onnxruntime, torch.compile (inductor) and eager PyTorch.

    python benchmarks/bench_export.py [--threads 2] [--rounds 10] [--batch 1] [--write]

`fuse` vits at 266x266 (random weights, a live head ending), fp32 and bf16, images/s at a fixed
batch, every runtime interleaved round by round in one process (benchmarks/common.py):

* eager: the PyTorch model as `predict` runs it (fp32 weights, or the bf16 weight copy);
* torch.compile: `torch.compile(model)` (inductor, default mode) of the same module, what
  `infer --runtime compile` runs; its first call (a cold compilation: inductor's caches are
  disabled) is reported apart. FUSE runs its encoders and FreDFuse in worker threads
  (fuse.layers.parallel), which dynamo does not trace: what is compiled is the work on the
  calling thread (the DPT head, the glue); compiling every block too was measured no faster
  (one run, 120 s to compile);
* onnxruntime: the file `python -m fuse export` writes (`fuse.export.onnx`), one CPU session
  with `--threads` intra-op threads; its export + verification time is reported apart. bf16:
  the exporter is asked for a bfloat16 graph and onnxruntime for a session; what it answers
  is reported.

The accuracy column is the relative L2 error of the depth map against eager fp32 on the same
input. torch.compile "wins" where both its best round and its best round's process CPU time
are at least 5% below eager's (`compile_wins`).
"""
from __future__ import annotations

import argparse
import copy
import io
import time
import warnings

import numpy as np
import torch

from common import interleaved, load_average, machine_lines, table, write_section

KIND, ENCODER, HEIGHT, WIDTH = "fuse", "vits", 266, 266


def _model():
    import fuse
    from fuse.export.verify import Signature, random_inputs

    torch.manual_seed(0)
    model = fuse.build_model(KIND, encoder=ENCODER).eval()
    last = model.depth_head.scratch.output_conv2[2]
    seen = []
    handle = last.register_forward_hook(lambda module, args, out: seen.append(out))
    with torch.no_grad():  # a live ending: what enters the Sigmoid has median 0 and std 1
        model(*random_inputs(Signature.of(model, 70, 70), 1))
        handle.remove()
        scale = seen[0].std()
        last.weight.div_(scale)
        last.bias.copy_((last.bias - seen[0].median()) / scale)
    return model


def _onnx_session(model, dtype: torch.dtype, threads: int):
    """(session, seconds to export + verify) or (None, why not)."""
    from fuse.export.onnx import onnx_bytes, session
    from fuse.export.verify import TOLERANCE, Signature, verify
    from fuse.export.onnx import run_session

    started = time.perf_counter()
    if dtype == torch.float32:
        data, signature = onnx_bytes(model, HEIGHT, WIDTH)
        sess = session(data, threads)
        verify(model, signature, lambda inputs: run_session(sess, signature, inputs), "the ONNX export", TOLERANCE)
        return sess, time.perf_counter() - started
    try:
        from fuse.export.fixed import FixedSizeModel, one_thread
        from fuse.export.verify import random_inputs

        low = copy.deepcopy(model).to(dtype)
        signature = Signature.of(low, HEIGHT, WIDTH)
        buffer = io.BytesIO()
        with one_thread(), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(FixedSizeModel(low, HEIGHT, WIDTH), tuple(t.to(dtype) for t in random_inputs(signature, 2)),
                              buffer, dynamo=False, opset_version=17, input_names=signature.input_names,
                              output_names=["depth"], dynamic_axes={n: {0: "batch"} for n in signature.input_names})
        return session(buffer.getvalue(), threads), time.perf_counter() - started
    except Exception as error:  # what onnxruntime (or the exporter) answers is the result
        return None, f"{type(error).__name__}: {str(error).splitlines()[0][:160]}"


def _ort_runner(sess, names, inputs, dtype):
    feeds = {name: tensor.numpy() if dtype == torch.float32 else tensor.float().numpy()
             for name, tensor in zip(names, inputs)}
    if dtype != torch.float32:
        import ml_dtypes

        feeds = {name: value.astype(ml_dtypes.bfloat16) for name, value in feeds.items()}
    return lambda: sess.run(None, feeds)[0]


WIN = 1.05  # a speed-up below 5% is within what the shared machine's drift can fake


def compile_wins(compiled, eager) -> bool:
    """Faster by WIN in the best round and in the best round's CPU time: the median is too noisy on a
    shared machine, and CPU time does not count time spent descheduled."""
    return eager.best >= WIN * compiled.best and eager.cpu_best >= WIN * compiled.cpu_best


def measure(threads: int, rounds: int, batch: int) -> tuple[str, list[str]]:
    from fuse.evaluate.inference import bfloat16_copy
    from fuse.export.verify import Signature, random_inputs, relative_l2

    model = _model()
    signature = Signature.of(model, HEIGHT, WIDTH)
    inputs32 = random_inputs(signature, batch, seed=11)
    with torch.inference_mode():
        reference = model(*inputs32).float()
    notes, rows, candidates, prepare, outputs = [], [], {}, {}, {}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        eager = model if dtype == torch.float32 else bfloat16_copy(model)
        inputs = tuple(t.to(dtype) for t in inputs32)

        def call(network, inputs=inputs):
            with torch.inference_mode():
                return network(*inputs)

        candidates[("eager", precision)] = lambda network=eager, call=call: call(network)
        prepare[("eager", precision)] = 0.0

        compiled = torch.compile(eager)
        started = time.perf_counter()
        call(compiled)
        prepare[("torch.compile", precision)] = time.perf_counter() - started
        candidates[("torch.compile", precision)] = lambda network=compiled, call=call: call(network)
        print(f"compiled {precision} in {prepare[('torch.compile', precision)]:.0f} s", flush=True)

        sess, cost = _onnx_session(model, dtype, threads)
        if sess is None:
            notes.append(f"- onnxruntime {precision}: not run ({cost})")
        else:
            prepare[("onnxruntime", precision)] = cost
            candidates[("onnxruntime", precision)] = _ort_runner(sess, signature.input_names, inputs, dtype)
            print(f"exported {precision} in {cost:.0f} s", flush=True)
    for key, fn in candidates.items():
        out = fn()
        outputs[key] = np.asarray(out.float() if isinstance(out, torch.Tensor) else out, dtype=np.float32)
    timings = interleaved(candidates, rounds)
    eager_best = {p: timings[("eager", p)].best for p in ("fp32", "bf16")}
    for (runtime, precision), timing in timings.items():
        rows.append([runtime, precision, batch / timing.best, batch / timing.median, 1000 * timing.best / batch,
                     1000 * timing.cpu_best / batch, eager_best[precision] / timing.best,
                     timings[("eager", "fp32")].best / timing.best, prepare[(runtime, precision)],
                     relative_l2(outputs[(runtime, precision)], reference)])
        print(rows[-1], flush=True)
    header = ["runtime", "precision", "images/s (best)", "images/s (median)", "ms/image (best)",
              "CPU ms/image (best)", "x eager, same precision (best)", "x eager fp32 (best)",
              "first call / export s", "rel. L2 vs eager fp32"]
    wins = {p: compile_wins(timings[("torch.compile", p)], timings[("eager", p)]) for p in ("fp32", "bf16")}
    notes.append(f"- torch.compile wins (best wall time and best CPU time both at least {WIN - 1:.0%} below eager's): "
                 + ", ".join(f"{p} {'yes' if w else 'no'}" for p, w in wins.items()))
    return table(header, rows), notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="update the export section of BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.compiler.config.force_disable_caches = True  # report a cold compilation
    import onnxruntime

    head = machine_lines("torch", "onnxruntime") + [
        f"- CPU, {args.threads} threads (torch.set_num_threads; onnxruntime intra-op threads), {KIND} {ENCODER} "
        f"{HEIGHT}x{WIDTH}, batch {args.batch}, random weights, {args.rounds} rounds after one warm-up call each, "
        f"interleaved; onnxruntime {onnxruntime.__version__}, opset 17; torch.compile with inductor's caches disabled",
    ]
    print("\n".join(head), flush=True)
    results, notes = measure(args.threads, args.rounds, args.batch)
    end = f"- load average (1/5/15 min) at the end: {load_average()}"
    print(results, "\n".join(notes), end, sep="\n", flush=True)
    body = "\n".join(head + [end, "", results, "", *notes])
    if args.write:
        write_section("export", "Export runtimes (onnxruntime, torch.compile, eager)", body,
                      "python benchmarks/bench_export.py --write")


if __name__ == "__main__":
    main()
