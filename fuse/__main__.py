"""``python -m fuse <command> ...``: one entry point for every stage, inference and evaluation."""
from fuse.cli import main

raise SystemExit(main())
