"""Truncated-triplet self-supervised learning pipeline (validate -> convert -> pretrain -> evaluate)."""
