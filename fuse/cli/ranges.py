"""argparse types for numeric options: a value out of range is a usage error (exit code 2) that
names the option, before any work starts."""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _bounded(convert: Callable[[str], float], low: float, inclusive: bool, kind: str) -> Callable[[str], float]:
    relation = ">=" if inclusive else ">"

    def parse(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {kind} {relation} {low:g}, got {text!r}") from None
        if not (math.isfinite(value) and (value >= low if inclusive else value > low)):
            raise argparse.ArgumentTypeError(f"must be {kind} {relation} {low:g}, got {text!r}")
        return value

    parse.__name__ = f"{kind} {relation} {low:g}"
    return parse


positive_int = _bounded(int, 1, True, "an integer")
non_negative_int = _bounded(int, 0, True, "an integer")
positive_float = _bounded(float, 0.0, False, "a finite number")
non_negative_float = _bounded(float, 0.0, True, "a finite number")
