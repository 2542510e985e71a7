"""Thin DVC stage entry points: `python -m pipeline.stages.<name>` (see dvc.yaml)."""
