"""A train loader made of batches held in memory: what `Pretrainer` needs of one (len, set_epoch, iteration)."""
from __future__ import annotations


class InMemoryLoader:
    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)

    def set_epoch(self, epoch):
        pass
