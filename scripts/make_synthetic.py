"""Write a synthetic MVSEC-layout recording (``<name>_data.hdf5`` + ``<name>_gt.hdf5``).

Example: ``python scripts/make_synthetic.py --out data/synthetic --name day --frames 200``
and ``... --name night --seed 1 --night``. See ``fuse/demo/synthetic.py`` for the content.
``--scene room`` writes an indoor stereo recording for DERD-Net instead: both DAVIS cameras'
events and frames, left depth and poses, and ``<name>_calib.yaml`` (``fuse/demo/room.py``).
"""
from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path

import h5py

from fuse.cli.ranges import non_negative_int, positive_int
from fuse.cli import run_command
from fuse.errors import UsageError
from fuse.provenance import OutputFolder
from fuse.demo.room import write_room
from fuse.demo.synthetic import MVSEC_HEIGHT, MVSEC_WIDTH, write_recording


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--name", required=True, help="recording name: writes <name>_data.hdf5, <name>_gt.hdf5")
    parser.add_argument("--scene", choices=("street", "room"), default="street",
                        help="street: driving, left camera only (FUSE); room: indoor stereo with poses and "
                             "<name>_calib.yaml (DERD-Net)")
    parser.add_argument("--frames", type=positive_int, default=200, help="number of depth frames (20 Hz)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="scene layout, trajectory and noise seed")
    parser.add_argument("--night", action="store_true", help="dark, noisy, blurred images (same scene; street only)")
    parser.add_argument("--height", type=positive_int, default=MVSEC_HEIGHT)
    parser.add_argument("--width", type=positive_int, default=MVSEC_WIDTH)
    parser.add_argument("--workers", type=positive_int, default=2, help="render threads (output does not depend on it)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a recording of this name made with other settings")


def run(args: argparse.Namespace) -> int:
    """Write the recording, or keep the existing one when ``<name>.provenance.json`` says it was
    made with the same settings; one made with other settings is refused (exit 2) unless ``--overwrite``."""
    if args.scene == "room" and args.night:
        raise UsageError("--night is for the street scene; the room scene has no night variant")
    settings = {key: getattr(args, key) for key in ("frames", "seed", "night", "height", "width")}
    files = [f"{args.name}_data.hdf5", f"{args.name}_gt.hdf5"]
    if args.scene != "street":  # street manifests predate --scene: without the key they stay valid
        settings["scene"] = args.scene
        files.append(f"{args.name}_calib.yaml")
    folder = OutputFolder(args.out, "make_synthetic", settings, files, overwrite=args.overwrite,
                          manifest=f"{args.name}.provenance.json")
    if folder.complete():
        print(f"{args.name}: exists in {args.out} with the same settings")
        return 0
    folder.check()
    folder.start()
    start = time.perf_counter()
    write = write_room if args.scene == "room" else functools.partial(write_recording, night=args.night)
    paths = write(args.out, args.name, frames=args.frames, seed=args.seed, height=args.height, width=args.width,
                  workers=args.workers, progress=True)
    with h5py.File(paths[0], "r") as f:
        n_events = [len(f[f"davis/{side}/events"]) for side in ("left", "right") if f"davis/{side}/events" in f]
        n_images = len(f["davis/left/image_raw"])
    size_mb = sum(path.stat().st_size for path in paths) / 2**20
    print(f"wrote {' and '.join(str(path) for path in paths)}: {args.frames} depth frames, {n_images} images, "
          f"{' + '.join(str(n) for n in n_events)} events, {size_mb:.0f} MiB, {time.perf_counter() - start:.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run_command(run, parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
