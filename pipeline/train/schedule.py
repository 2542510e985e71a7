"""Learning-rate schedule: linear warm-up from `start_ratio * lr`, then cosine decay to zero."""
import math


def warmup_cosine(step: int, total_steps: int, warmup_steps: int, base_lr: float,
                  start_ratio: float = 1e-4) -> float:
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (start_ratio + (1 - start_ratio) * step / warmup_steps)
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return base_lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


class Budget:
    """The optimisation budget of a run in steps: `train.steps` when set (epochs derived: the last one may stop
    part-way), else `train.epochs` full epochs; the warm-up from `train.warmup_steps` when set, else
    `train.warmup_epochs` epochs. A budget in steps holds across datasets of any size (docs/own-data.md).

    `step_scale`: loader batches per step of pretraining's budget (the supervised reference, which takes one
    batch per step, passes train.accumulate, so that `train.steps` gives both the same number of images).
    """

    def __init__(self, train, steps_per_epoch: int, step_scale: int = 1):
        self.steps_per_epoch = max(1, int(steps_per_epoch))
        self.in_steps = train.steps is not None
        self.total_steps = (int(train.steps) * step_scale if self.in_steps
                            else self.steps_per_epoch * train.epochs)
        self.epochs = math.ceil(self.total_steps / self.steps_per_epoch)
        self.warmup_steps = (int(train.warmup_steps) * step_scale if train.warmup_steps is not None
                             else int(round(train.warmup_epochs * self.steps_per_epoch)))
        # A warm-up as long as the budget never reaches the peak lr: said (the stage logs it), not refused, since
        # tiny smoke-test budgets legitimately end inside it.
        self.warning = None
        if self.warmup_steps >= self.total_steps:
            source = ("train.warmup_steps" if train.warmup_steps is not None
                      else f"train.warmup_epochs = {train.warmup_epochs} epochs of {self.steps_per_epoch} steps")
            self.warning = (f"the warm-up ({self.warmup_steps} steps, from {source}) does not fit in the budget of "
                            f"{self.total_steps} steps: the learning rate never reaches train.lr; lower it "
                            "(-S train.warmup_steps=N) or raise train.steps / train.epochs")

    def steps_in_epoch(self, epoch: int) -> int:
        """Optimizer steps of epoch `epoch` (0-based): full epochs, and what is left of the budget in the last."""
        return max(0, min(self.steps_per_epoch, self.total_steps - epoch * self.steps_per_epoch))

    def describe(self) -> str:
        source = "train.steps" if self.in_steps else "train.epochs"
        return (f"{self.total_steps} steps = {self.epochs} epoch(s) of {self.steps_per_epoch} ({source}), "
                f"warm-up {self.warmup_steps} steps")
