"""Self-supervised methods (docs/methods.md).

`registry.build_method(params)` builds the configured one; `catalog` (no torch) says which loss each method
trains with, for the params schema. Adding a method is one file here (a `base.Method` subclass), one entry in
`registry.METHODS` and in `catalog.METHOD_LOSSES`, one `conf/method/<name>.yaml` and one test.
"""
from .catalog import METHOD_LOSSES, PATCH_METHODS, TAKES_LOCAL_VIEWS

__all__ = ["METHOD_LOSSES", "PATCH_METHODS", "TAKES_LOCAL_VIEWS"]
