"""The project's errors: one base for everything a user can fix, one class per domain.

Every command reports a ``FuseError`` as one ``error: <message>`` line and exits with code 2
(``fuse.cli.run_command``; ``--debug`` shows the traceback); any other exception is a bug and
keeps its traceback. Messages name the file, key or option at fault and how to fix it. The
classes also derive from the built-in type a caller would expect (``ValueError``, ``OSError``,
``FileNotFoundError``), so library code can catch them either way.
"""
from __future__ import annotations

EXIT_BAD_INPUT = 2


class FuseError(Exception):
    """Input, settings or an output location the user can fix."""


class UsageError(FuseError, ValueError):
    """Command-line options that do not go together or do not fit the input."""


class ConfigError(FuseError, ValueError):
    """A configuration key or value that is not allowed."""


class CheckpointError(FuseError, ValueError):
    """A checkpoint file that is missing, unreadable, or does not fit the model asked for."""


class DataFormatError(FuseError, ValueError):
    """A data file exists but does not hold what the processed layout promises."""


class MissingDataError(FuseError, FileNotFoundError):
    """Data files (a split list, the files it names) that do not exist."""


class RecordingError(FuseError, ValueError):
    """An input recording is missing, unreadable or inconsistent; the message names the file."""


class PrepError(FuseError, ValueError):
    """Bad input for a preparation script."""


class EvalInputError(FuseError, ValueError):
    """Input folders or files that cannot be evaluated; the message names the culprit."""


class ProvenanceError(FuseError, ValueError):
    """An output folder that holds files made by something else."""


class WriteError(FuseError, OSError):
    """The file system refused a write; ``str()`` is one line naming the file, the cause and a remedy."""

    def __str__(self) -> str:
        return self.strerror
