"""Errors for bad input a user can fix: the CLI prints their message, without a traceback."""


class TrainerInputError(ValueError):
    """Bad input found before any long work starts; the message names the problem and the file."""


class DataError(TrainerInputError):
    """The training or evaluation data is missing, empty, binary or malformed."""


class VocabularyTooSmallError(TrainerInputError):
    """The requested vocabulary cannot hold the symbols the data needs."""


class ContextTooLongError(TrainerInputError):
    """The model's context is longer than a data split, so not one training window fits."""


class CheckpointError(TrainerInputError):
    """A checkpoint or model directory is missing or corrupt."""


class ConfigError(TrainerInputError):
    """A setting is out of its range (a non-positive size, fractions that do not add up, ...)."""
