"""The suite's user-facing errors, all AppError: a command line prints the message and exits 2, no traceback."""

from __future__ import annotations


class AppError(Exception):
    """A problem the user can fix (a bad flag, a missing file, an unsupported command)."""


class ConfigError(AppError, ValueError):
    """A config key or value that does not fit the config's dataclass (the message names both)."""


class NotSupported(AppError):
    """The task does not implement this command."""


class TrainingDiverged(AppError):
    """The loss became NaN or infinite; the message names the epoch and step and the last good checkpoint."""
