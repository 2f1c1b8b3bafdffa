"""Convert DSEC into the processed layout (``fuse.prep.dsec``; ``--help`` tells the input it expects).

    python scripts/process_dsec.py --root /data/DSEC/train --out /data/DSEC_processed
"""
import sys

from fuse.prep.dsec import main

if __name__ == "__main__":
    sys.exit(main())
