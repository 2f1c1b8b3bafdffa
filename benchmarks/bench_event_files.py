"""Read speed of event files per format: fuse's readers against the maintained libraries.

    python benchmarks/bench_event_files.py [--samples ../shared/samples] [--rounds 5]

Files: the real recordings of ``../shared/samples`` (Prophesee RAW EVT 3.0 and EVT 2.0, iniVation
AEDAT 4.0), and the EVT 2.0 sample's events rewritten as Prophesee DAT and as ``.npy``. For each
file: fuse reading it whole (``read_events``, which includes building a RAW file's chunk index),
fuse streaming it in 50 ms windows as ``infer --events`` does (open, index, every window), and
every library of the comparison that is installed in this interpreter (expelliarmus, evlib,
aedat, dv-processing) reading it whole. Timings are interleaved round by round
(``common.interleaved``); the table gives each candidate's best round and events per second.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from common import interleaved, machine_lines, table
from fuse.events import open_events, read_events

ROOT = Path(__file__).resolve().parents[1]
WINDOW_US = 50_000


def stream(path: Path) -> int:
    """Every 50 ms window of the file, as ``infer --events`` reads them; returns the event count."""
    total = 0
    with open_events(path) as reader:
        first, last = reader.time_range()
        for start in range(first, last + 1, WINDOW_US):
            total += len(reader.window(start, start + WINDOW_US))
    return total


def library_readers(path: Path) -> dict[str, Callable[[], int]]:
    """Whole-file reads of ``path`` by each installed library that reads its format."""
    suffix = path.suffix.lower()
    readers: dict[str, Callable[[], int]] = {}
    if importlib.util.find_spec("expelliarmus") and suffix in (".raw", ".dat"):
        from expelliarmus import Wizard

        encoding = "dat" if suffix == ".dat" else open_events(path).encoding
        readers["expelliarmus"] = lambda: len(Wizard(encoding=encoding).read(path))
    if importlib.util.find_spec("evlib") and suffix in (".raw", ".dat", ".aedat4"):
        import evlib

        readers["evlib"] = lambda: evlib.load_events(str(path), sort=False).collect().height
    if importlib.util.find_spec("aedat") and suffix == ".aedat4":
        import aedat

        readers["aedat (packets only)"] = lambda: sum(len(p["events"]) for p in aedat.Decoder(str(path))
                                                      if "events" in p)
    if importlib.util.find_spec("dv_processing") and suffix == ".aedat4":
        import dv_processing as dv

        def dv_read() -> int:
            recording = dv.io.MonoCameraRecording(str(path))
            first, last = recording.getTimeRange()
            return len(recording.getEventsTimeRange(first, last + 1))

        readers["dv-processing"] = dv_read
    return readers


def library_versions() -> str:
    """Installed versions of the compared libraries (aedat has no ``__version__``)."""
    def version(name: str) -> str:
        try:
            return f"{name} {importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            return f"{name} (not installed)"

    return ", ".join(version(name) for name in ("aedat", "expelliarmus", "evlib", "dv-processing"))


def write_dat(path: Path, events: np.ndarray, height: int, width: int) -> Path:
    """Events as a Prophesee DAT file (8-byte CD records)."""
    records = np.empty(len(events), [("t", "<u4"), ("data", "<u4")])
    records["t"] = events["t"]
    records["data"] = (events["x"].astype(np.uint32) | (events["y"].astype(np.uint32) << 14)
                       | ((events["p"] > 0).astype(np.uint32) << 28))
    path.write_bytes(f"% Version 2\n% Width {width}\n% Height {height}\n".encode() + bytes([0, 8]) + records.tobytes())
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=Path, default=ROOT.parent / "shared" / "samples")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    if not args.samples.is_dir():
        parser.error(f"{args.samples} is absent: it holds the real recordings (see its README)")
    with tempfile.TemporaryDirectory() as tmp:
        evt2 = read_events(args.samples / "evt2_sample.raw")
        files = {
            "EVT 3.0 RAW (Gen4.1)": args.samples / "evt3_sample.raw",
            "EVT 2.0 RAW (Gen3)": args.samples / "evt2_sample.raw",
            "AEDAT 4.0 (DVXplorer)": args.samples / "sample.aedat4",
            "DAT (EVT 2.0 sample)": write_dat(Path(tmp) / "evt2_sample.dat", evt2, 480, 640),
            "npy (EVT 2.0 sample)": Path(tmp) / "evt2_sample.npy",
        }
        np.save(files["npy (EVT 2.0 sample)"], evt2)
        rows = []
        for name, path in files.items():
            candidates = {"fuse read_events": lambda path=path: len(read_events(path)),
                          "fuse 50 ms windows": lambda path=path: stream(path), **library_readers(path)}
            counts = {label: fn() for label, fn in candidates.items()}
            timings = interleaved(candidates, args.rounds)
            for label, timing in timings.items():
                rows.append((name, label, counts[label], timing.best * 1e3, counts[label] / timing.best / 1e6,
                             path.stat().st_size / timing.best / 1e6))
    print("\n".join(machine_lines()))
    print(f"- libraries: {library_versions()}")
    print()
    print(table(("file", "reader", "events", "best ms", "M events/s", "MB/s"), rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
