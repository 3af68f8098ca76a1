"""Exceptions for mistakes a user can fix (bad flags, files, data).

The CLI prints these as one clear message and exits non-zero; anything else
is a bug and keeps its traceback.
"""


class KlmError(ValueError):
    """Base class for user-facing errors: the message names the flag, file or line."""


class ConfigError(KlmError):
    """A config value (flag) is invalid."""


class DataError(KlmError):
    """Input data is missing, malformed or unusable."""


class RunDirError(KlmError):
    """A run folder is missing, unfinished or incompatible."""


class TrainingInterrupted(KlmError):
    """Ctrl-C: training stopped; re-running the command resumes from the last backup."""


class TrainingDiverged(KlmError):
    """The loss became NaN or infinite; nothing after the last good step was saved."""


class CheckpointError(RunDirError):
    """A checkpoint cannot be found, downloaded, converted or used (a `KlmError`: exit status 2)."""
