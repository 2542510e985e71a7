"""Datasets: the embedded generator and readers for the real on-disk formats."""
