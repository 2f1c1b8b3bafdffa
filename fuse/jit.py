"""numba kernels compiled on first use: one place for how the project compiles them."""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache


@lru_cache(maxsize=None)
def compiled(function: Callable) -> Callable | None:
    """``function`` compiled by numba (cached on disk, releasing the GIL so threads can share the
    work, no bounds checks), or None where numba is not installed (callers fall back to numpy/torch)."""
    try:
        import numba
    except ImportError:
        return None
    return numba.njit(cache=True, nogil=True, boundscheck=False)(function)
