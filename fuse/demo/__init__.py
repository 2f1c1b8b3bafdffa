"""The embedded demo: synthetic MVSEC-format recordings for running the pipeline without data."""
