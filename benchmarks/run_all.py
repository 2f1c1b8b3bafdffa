"""Run every benchmark script and rewrite BENCHMARKS.md.

    python benchmarks/run_all.py [--only voxel model ...]

Each script runs in its own process (so its memory and thread settings are its own) and
rewrites its own section of BENCHMARKS.md; the GPU table is added when torch sees a GPU.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = {
    "voxel": ["bench_voxel.py"],
    "prep": ["bench_prep.py"],
    "model": ["bench_model.py"],
    "model_ops": ["bench_model.py", "--ops"],
    "model_parts": ["bench_model.py", "--parts"],
    "train": ["bench_train.py"],
    "derdnet": ["bench_derdnet.py"],
    "aimdepth": ["bench_aimdepth.py"],
    "iid_rdepth": ["bench_iid_rdepth.py"],
    "export": ["bench_export.py"],
    "gpu": ["bench_model.py", "--device", "cuda"],
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=sorted(SCRIPTS), help="run only these")
    args = parser.parse_args()
    names = args.only or [name for name in SCRIPTS if name != "gpu"]
    if args.only is None:
        import torch

        if torch.cuda.is_available():
            names.append("gpu")
        else:
            print("no GPU: the GPU table is not measured", flush=True)
    failed = []
    for name in names:
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        result = subprocess.run([sys.executable, str(HERE / SCRIPTS[name][0]), *SCRIPTS[name][1:], "--write"], cwd=HERE.parent)
        print(f"== {name}: exit {result.returncode} after {time.perf_counter() - start:.0f} s", flush=True)
        if result.returncode:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
