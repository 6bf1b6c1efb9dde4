"""Errors that a user can fix. The CLI prints them as one line and exits non-zero."""


class EBNNError(Exception):
    """A problem with the user's input, configuration or environment; the message names the fix."""


class DataError(EBNNError):
    pass


class ConfigError(EBNNError):
    pass


class TrainingError(EBNNError):
    pass


class RunBusyError(EBNNError):
    """Another process is writing the run directory."""
