"""What made an output folder, so that a restartable command reuses its files only when it would
write the same ones.

A command that skips finished outputs on a rerun (``infer``, ``eval --checkpoint``, the
preparation scripts) first writes ``provenance.json`` into its output folder: the identity of
what produces the files (checkpoint content hash, model and input settings, data source). A
rerun into the same folder reuses files only when the identity matches; otherwise it stops with
one message naming what differs, before anything is written, unless ``--overwrite`` asks it to
start over (the old outputs are deleted first).
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fuse.atomic import write_text_atomic
from fuse.errors import ProvenanceError

MANIFEST = "provenance.json"
# The files of one prepared sequence (``fuse.prep.common`` layout).
SAMPLE_PATTERNS = ("images/*.png", "depths/*.npy", "voxels/*.npy", "events/*.npy")
FORMAT = "fuse-output/1"
_CHUNK = 1 << 22
_ENDS = 1 << 20
_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | os.PathLike) -> str:
    """Content hash of a file (cached per path, size and modification time within a process)."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _HASHES:
        digest = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        _HASHES[key] = digest.hexdigest()
    return _HASHES[key]


def file_identity(path: str | os.PathLike, content: bool = True) -> dict[str, Any]:
    """A file as a data source, independent of where it lies: its name and content hash, or
    (``content=False``, for recordings of many GB) its size and a hash of its first and last MiB."""
    path = Path(path)
    if content:
        return {"name": path.name, "sha256": file_sha256(path)}
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read(_ENDS))
        handle.seek(max(size - _ENDS, 0))
        digest.update(handle.read(_ENDS))
    return {"name": path.name, "bytes": size, "sha256_ends": digest.hexdigest()}


def files_identity(paths: Iterable[str | os.PathLike]) -> dict[str, Any]:
    """Many source files at once (a sequence folder of images, depths and event windows): their
    count and a hash of their names and sizes."""
    digest, count = hashlib.sha256(), 0
    for path in paths:
        path = Path(path)
        digest.update(f"{path.parent.name}/{path.name}:{path.stat().st_size}\n".encode())
        count += 1
    return {"files": count, "sha256_names_sizes": digest.hexdigest()}


def identity_key(identity: dict[str, Any]) -> str:
    """A short stable hash of an identity, for default output folder names."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:10]


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(old.keys() | new.keys()):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    return [] if old == new else [f"{prefix.rstrip('.')}: {_short(old)} there, {_short(new)} now"]


def _short(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def read_manifest(manifest: str | os.PathLike) -> dict[str, Any] | None:
    """The identity a manifest records, None when there is none; a damaged one is a ``ProvenanceError``."""
    manifest = Path(manifest)
    if not manifest.is_file():
        return None
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        data = None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("made_by"), dict):
        raise ProvenanceError(f"{manifest} is damaged or not this project's; delete it, choose another "
                              "output folder or pass --overwrite to start over")
    return data["made_by"]


class OutputFolder:
    """A restartable output folder whose files are ``patterns`` (globs relative to it).

    ``check()`` (before any work) says whether existing files may be reused and raises
    ``ProvenanceError`` when they were made by something else; ``start()`` (when the work
    begins) deletes old files on ``overwrite`` and records the identity.
    """

    def __init__(self, folder: str | os.PathLike, command: str, identity: dict[str, Any],
                 patterns: Iterable[str], overwrite: bool = False, manifest: str = MANIFEST) -> None:
        self.folder = Path(folder)
        self.manifest = self.folder / manifest
        self.command = command
        self.identity = json.loads(json.dumps(identity))  # as it reads back (tuples become lists)
        self.patterns = tuple(patterns)
        self.overwrite = overwrite

    def outputs(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(path for pattern in self.patterns for path in self.folder.glob(pattern) if path.is_file())

    def recorded(self) -> dict[str, Any] | None:
        """The identity recorded in the folder, or None when there is no manifest."""
        return read_manifest(self.manifest)

    def complete(self) -> bool:
        """Every file of ``patterns`` (taken as plain names) exists and was made with this identity."""
        return (not self.overwrite and self.recorded() == self.identity
                and all((self.folder / name).is_file() for name in self.patterns))

    def check(self) -> None:
        """Raise ``ProvenanceError`` when the folder holds files this run would not have made."""
        if self.overwrite:
            return
        recorded = self.recorded()
        if recorded is None:
            existing = self.outputs()
            if existing:
                raise ProvenanceError(
                    f"{self.folder} already holds {len(existing)} output files (e.g. {existing[0]}) but no "
                    f"{self.manifest.name} saying what made them, so they cannot be reused safely; choose another output "
                    "folder or pass --overwrite to delete them and start over")
            return
        differences = _differences(recorded, self.identity)
        if differences:
            listed = "; ".join(differences[:4]) + (f"; and {len(differences) - 4} more" if len(differences) > 4 else "")
            raise ProvenanceError(
                f"{self.folder} holds outputs of another {self.command} run ({listed}); choose another output "
                "folder or pass --overwrite to delete them and start over")

    def start(self) -> None:
        """Delete old outputs on ``overwrite``, then record this run's identity."""
        if self.overwrite:
            for path in self.outputs():
                path.unlink()
        elif self.recorded() == self.identity:
            return
        write_text_atomic(self.manifest, json.dumps({"format": FORMAT, "command": self.command,
                                                     "made_by": self.identity}, indent=2) + "\n")
