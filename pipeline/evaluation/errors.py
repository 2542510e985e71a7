"""The evaluation stages' known errors, importable without torch (every stage's error handling needs them)."""
from __future__ import annotations


class BackboneLoadError(ValueError):
    """A backbone file that is missing, unreadable, or does not fit the configured architecture."""
