"""Published numbers as data: methods register the rows of their papers' tables.

``python -m fuse eval --compare-published`` and the demo put a run beside the paper from these
rows, so nobody retypes numbers. Each row names the protocol its numbers were computed with;
only rows of the protocol being run are shown beside a run.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fuse.errors import UsageError
from fuse.registry import load_methods

SIZES: tuple[str, ...] = ("small", "base", "large")


@dataclass(frozen=True)
class PublishedRow:
    """One row of a published table.

    ``size`` is None where the paper's row does not say which encoder size it used; ``source``
    says which paper table the row was read from.
    """

    method: str
    dataset: str
    sequence: str
    size: str | None
    metrics: Mapping[str, float]
    protocol: str = "e2depth"
    source: str = ""

    @property
    def label(self) -> str:
        """Row label for tables, naming the size only when the source states it."""
        if self.size is None and self.method in _SIZED_METHODS:
            return f"{self.method} (published, size not stated)"
        name = f"{self.method}-{self.size.capitalize()}" if self.size else self.method
        return f"{name} (published)"


_ROWS: list[PublishedRow] = []
_SIZED_METHODS: set[str] = set()  # methods whose other rows name an encoder size


def register_rows(rows: Iterable[PublishedRow]) -> None:
    """Add a method's published rows (called when its package is imported)."""
    for row in rows:
        if row not in _ROWS:
            _ROWS.append(row)
            if row.size is not None:
                _SIZED_METHODS.add(row.method)


def all_rows(protocol: str | None = None) -> tuple[PublishedRow, ...]:
    """Every registered row, or those computed with ``protocol``."""
    load_methods()
    return tuple(row for row in _ROWS if protocol is None or row.protocol == protocol)


def sequences(dataset: str, protocol: str = "e2depth") -> tuple[str, ...]:
    """The test sequences with published rows for a dataset."""
    return tuple(sorted({row.sequence for row in all_rows(protocol) if row.dataset == dataset}))


def default_sequence(dataset: str, protocol: str = "e2depth") -> str | None:
    """The sequence a dataset's published rows refer to when it has only one."""
    found = sequences(dataset, protocol)
    return found[0] if len(found) == 1 else None


def method_row(method: str, dataset: str, size: str, sequence: str | None = None,
               protocol: str = "e2depth") -> PublishedRow:
    """The published row of ``method`` for a dataset, sequence and encoder size.

    Falls back to the row whose size the source does not state (FUSE on MVSEC outdoor_day1),
    whose label says so. Raises ``UsageError`` naming what exists when nothing matches.
    """
    if size not in SIZES:
        raise UsageError(f"unknown size {size!r}; expected one of {list(SIZES)}")
    sequence = sequence or default_sequence(dataset, protocol)
    if sequence is None:
        choices = sequences(dataset, protocol)
        if not choices:
            raise UsageError(f"no published numbers for {dataset!r} with the {protocol} protocol")
        raise UsageError(f"{dataset} has published rows for several sequences; choose one of {list(choices)}")
    rows = [r for r in all_rows(protocol) if r.method == method and r.dataset == dataset and r.sequence == sequence]
    for wanted in (size, None):
        for row in rows:
            if row.size == wanted:
                return row
    known = sorted({(r.dataset, r.sequence) for r in all_rows(protocol) if r.method == method})
    raise UsageError(f"no published {method} row for {dataset}/{sequence}; known: {known}")


def peer_rows(method: str, dataset: str, sequence: str | None = None, protocol: str = "e2depth") -> list[PublishedRow]:
    """Published rows of the other methods on the same dataset, sequence and protocol."""
    sequence = sequence or default_sequence(dataset, protocol)
    return [r for r in all_rows(protocol) if r.method != method and r.dataset == dataset and r.sequence == sequence]
