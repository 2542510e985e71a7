"""Errors raised when a dataset on disk does not have the expected layout."""


class DatasetLayoutError(ValueError):
    """A dataset folder or file is missing or malformed; the message names the path and what was expected."""
