"""Data preparation: turning MVSEC, DENSE and EventScape recordings into the prepared layout
(``fuse.data.layout``); ``scripts/process_*.py`` are thin command-line wrappers over it."""
