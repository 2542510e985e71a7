"""Learning-rate schedule: linear warm-up from `start_ratio * lr`, then cosine decay to zero."""
import math


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, base_lr: float,
                  start_ratio: float = 1e-4) -> float:
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (start_ratio + (1 - start_ratio) * step / warmup_steps)
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))
