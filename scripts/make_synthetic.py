"""Write a synthetic MVSEC-layout recording (``<name>_data.hdf5`` + ``<name>_gt.hdf5``).

Example: ``python scripts/make_synthetic.py --out data/synthetic --name day --frames 200``
and ``... --name night --seed 1 --night``. See ``fuse/demo/synthetic.py`` for the content.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import h5py

from fuse.cli.ranges import non_negative_int, positive_int
from fuse.cli import run_command
from fuse.provenance import OutputFolder
from fuse.demo.synthetic import MVSEC_HEIGHT, MVSEC_WIDTH, write_recording


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--name", required=True, help="recording name: writes <name>_data.hdf5, <name>_gt.hdf5")
    parser.add_argument("--frames", type=positive_int, default=200, help="number of depth frames (20 Hz)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="scene layout, trajectory and noise seed")
    parser.add_argument("--night", action="store_true", help="dark, noisy, blurred images (same scene)")
    parser.add_argument("--height", type=positive_int, default=MVSEC_HEIGHT)
    parser.add_argument("--width", type=positive_int, default=MVSEC_WIDTH)
    parser.add_argument("--workers", type=positive_int, default=2, help="render threads (output does not depend on it)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a recording of this name made with other settings")


def run(args: argparse.Namespace) -> int:
    """Write the recording, or keep the existing one when ``<name>.provenance.json`` says it was
    made with the same settings; one made with other settings is refused (exit 2) unless ``--overwrite``."""
    settings = {key: getattr(args, key) for key in ("frames", "seed", "night", "height", "width")}
    folder = OutputFolder(args.out, "make_synthetic", settings, (f"{args.name}_data.hdf5", f"{args.name}_gt.hdf5"),
                          overwrite=args.overwrite, manifest=f"{args.name}.provenance.json")
    if folder.complete():
        print(f"{args.name}: exists in {args.out} with the same settings")
        return 0
    folder.check()
    folder.start()
    start = time.perf_counter()
    data_path, gt_path = write_recording(args.out, args.name, frames=args.frames, seed=args.seed, night=args.night,
                                         height=args.height, width=args.width, workers=args.workers, progress=True)
    with h5py.File(data_path, "r") as f:
        left = f["davis/left"]
        n_events, n_images = len(left["events"]), len(left["image_raw"])
    size_mb = (data_path.stat().st_size + gt_path.stat().st_size) / 2**20
    print(f"wrote {data_path} and {gt_path}: {args.frames} depth frames, {n_images} images, "
          f"{n_events} events, {size_mb:.0f} MiB, {time.perf_counter() - start:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run_command(run, parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
