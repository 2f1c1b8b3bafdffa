"""Convert EventScape into the processed layout (``fuse.prep.eventscape``; ``--help`` tells the input it expects).

    python scripts/process_eventscape.py --root /data/EventScape --out /data/EventScape_processed
"""
import sys

from fuse.prep.eventscape import main

if __name__ == "__main__":
    sys.exit(main())
