"""Pretraining: optimizer (LARS), schedules, checkpoints, distributed helpers and the loop."""
