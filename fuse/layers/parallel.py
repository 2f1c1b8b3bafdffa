"""Run independent parts of a model (FUSE's image and event encoders) side by side on CPU.

On a CPU with few cores, two encoders each running single-threaded on their own core keep
both cores busy with large matrix products, while one encoder after the other, each split
over all cores, pays a thread barrier after every operator and splits small products
(362 tokens) into smaller ones; on the 2-core benchmark machine the first is clearly faster
(BENCHMARKS.md). Each task runs in its own Python thread (torch releases the GIL inside
operators) with torch's intra-op threads divided between the tasks; grad mode, inference
mode and CPU autocast, which are per-thread in torch, are carried into the task threads.
Other per-thread state is not: a dispatch mode such as ``FlopCounterMode`` does not see the
tasks' operators, so count FLOPs with ``torch.set_num_threads(1)`` (tasks then run in turn).
"""
from __future__ import annotations

import threading
from contextlib import ExitStack
from typing import Callable, Sequence, TypeVar

import torch

T = TypeVar("T")


def split_threads(device: torch.device) -> bool:
    """Whether :func:`run_side_by_side` would run tasks concurrently for tensors on ``device``."""
    return device.type == "cpu" and torch.get_num_threads() > 1


def _thread_state() -> Callable[[], ExitStack]:
    """A factory re-entering the calling thread's grad, inference and autocast modes in another thread."""
    grad = torch.is_grad_enabled()
    inference = torch.is_inference_mode_enabled()
    autocast = torch.is_autocast_enabled("cpu")
    autocast_dtype = torch.get_autocast_dtype("cpu")

    def enter() -> ExitStack:
        stack = ExitStack()
        stack.enter_context(torch.inference_mode(inference))
        stack.enter_context(torch.set_grad_enabled(grad))
        stack.enter_context(torch.autocast("cpu", dtype=autocast_dtype, enabled=autocast))
        return stack

    return enter


def run_side_by_side(tasks: Sequence[Callable[[], T]], device: torch.device) -> list[T]:
    """Results of ``tasks`` (in order), run concurrently on CPU with the intra-op threads split.

    With more tasks than intra-op threads, each thread runs a contiguous share of the tasks.
    Runs them one after the other where that cannot help: off CPU (a GPU already runs one
    task's kernels in parallel), with a single intra-op thread, or for a single task.
    """
    total = torch.get_num_threads()
    if len(tasks) < 2 or not split_threads(device):
        return [task() for task in tasks]
    workers = min(len(tasks), total)
    per_worker = total // workers
    bounds = [round(i * len(tasks) / workers) for i in range(workers + 1)]
    state = _thread_state()
    results: list = [None] * len(tasks)
    errors: list[BaseException] = []

    def work(first: int, stop: int) -> None:
        try:
            torch.set_num_threads(per_worker)  # this thread's OpenMP team size
            with state():
                for index in range(first, stop):
                    results[index] = tasks[index]()
        except BaseException as error:  # re-raised in the calling thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(bounds[i], bounds[i + 1]), name=f"fuse-worker-{i}")
               for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    torch.set_num_threads(total)  # the setting is also process-wide (MKL, new threads): restore it
    if errors:
        raise errors[0]
    return results
