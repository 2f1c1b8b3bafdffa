"""Convert DENSE into the processed layout (``fuse.prep.dense``; ``--help`` tells the input it expects).

    python scripts/process_dense.py --root /data/DENSE --out /data/DENSE_processed
"""
import sys

from fuse.prep.dense import main

if __name__ == "__main__":
    sys.exit(main())
