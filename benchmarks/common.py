"""Shared pieces of the benchmark scripts: machine facts, interleaved timing, reference rates,
Markdown tables and the section writer for BENCHMARKS.md.

Timing rule: implementations that are compared are timed inside one process, interleaved
round by round (A, B, A, B, ...), and each is reported by its best and its median round.
The machines this project runs on are shared and their speed drifts by 2x or more between
minutes; interleaving exposes every implementation to the same drift.
"""
from __future__ import annotations

import os
import platform
import re
import resource
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from fuse.atomic import atomic_write

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS_MD = ROOT / "BENCHMARKS.md"


@dataclass
class Timing:
    """Wall-clock and process-CPU seconds of every round of one implementation.

    CPU time (all threads of this process) is the second view for shared machines: it counts
    the work done, not the time spent descheduled while other processes ran.
    """

    rounds: list[float]
    cpu_rounds: list[float]

    @property
    def best(self) -> float:
        return min(self.rounds)

    @property
    def median(self) -> float:
        return statistics.median(self.rounds)

    @property
    def cpu_best(self) -> float:
        return min(self.cpu_rounds)


def interleaved(candidates: dict[str, Callable[[], object]], rounds: int, warmup: int = 1,
                sync: Callable[[], None] | None = None) -> dict[str, Timing]:
    """Time each callable ``rounds`` times, alternating between them every round."""
    for _ in range(warmup):
        for fn in candidates.values():
            fn()
    if sync:
        sync()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    cpu: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, fn in candidates.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            fn()
            if sync:
                sync()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - cpu_start)
    return {name: Timing(times[name], cpu[name]) for name in candidates}


def matmul_candidate(size: int = 4096, dtype=None) -> tuple[Callable[[], object], float]:
    """A float32 ``size``-square matmul (torch, current thread setting) and its FLOP count."""
    import torch

    a = torch.randn(size, size, dtype=dtype or torch.float32)
    b = torch.randn(size, size, dtype=dtype or torch.float32)
    out = torch.empty(size, size, dtype=dtype or torch.float32)
    return (lambda: torch.matmul(a, b, out=out)), 2.0 * size ** 3


def count_flops(fn: Callable[[], object]) -> float:
    """FLOPs of one call (torch.utils.flop_counter; a multiply-add counts 2).

    Counted with one intra-op thread: the counter is a per-thread dispatch mode, so it would
    miss work that fuse.layers.parallel hands to other threads (the FLOPs are the same).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with FlopCounterMode(display=False) as counter:
            fn()
    finally:
        torch.set_num_threads(threads)
    return float(counter.get_total_flops())


def copy_candidate(nbytes: int = 1 << 28) -> tuple[Callable[[], object], int]:
    """A large memory copy (numpy) and the bytes it moves (read + written): bandwidth = bytes / time."""
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    return (lambda: np.copyto(dst, src)), 2 * nbytes


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load_average() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def cpu_name() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", text, re.M)
    features = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if flags and f in flags.group(1).split()]
    return f"{match.group(1).strip() if match else 'unknown'} ({', '.join(features) or 'no AVX-512'})"


def versions(*modules: str) -> str:
    parts = [f"python {platform.python_version()}"]
    for name in modules:
        try:
            module = __import__(name)
            parts.append(f"{name} {module.__version__}")
        except ImportError:
            parts.append(f"{name} (not installed)")
    return ", ".join(parts)


def machine_lines(*modules: str) -> list[str]:
    """Bullet lines describing where and with what a section was measured."""
    return [
        f"- machine: {cpu_name()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}",
        f"- versions: {versions('numpy', *modules)}",
        f"- load average (1/5/15 min) at the start: {load_average()}",
    ]


def table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A Markdown table; floats are printed with 3 significant digits."""
    def cell(value: object) -> str:
        if isinstance(value, float):
            if value == 0 or 0.01 <= abs(value) < 1e5:
                return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
            return f"{value:.2e}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_section(name: str, title: str, body: str, command: str) -> None:
    """Replace (or append) the section ``name`` of BENCHMARKS.md, keeping the other sections."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = f"{start}\n## {title}\n\nCommand: `{command}`\n\n{body.strip()}\n{end}"
    text = BENCHMARKS_MD.read_text() if BENCHMARKS_MD.exists() else HEADER
    if start in text and end in text:
        text = text[:text.index(start)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    atomic_write(BENCHMARKS_MD, lambda handle: handle.write(text.encode()))


HEADER = """# Benchmarks

Written by the scripts in `benchmarks/` (`python benchmarks/run_all.py` runs every one;
each script also runs alone and rewrites only its own section). Every comparison is timed
in one process with the implementations interleaved round by round; "best" is the fastest
round, "median" the median round. The machine, versions and load average are given per
section: the benchmark machines are shared, so absolute numbers vary between runs while
the interleaved ratios are what the conclusions rest on.
"""
