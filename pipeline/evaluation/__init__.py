"""Evaluations of a backbone: kNN monitor, linear probe, SYSU-30k retrieval, COCO fine-tuning."""
