"""Learning-rate schedule of the paper: ``lr = initial_lr * gamma ** (epoch // step_size)`` (x0.95 every 5 epochs).

Stepped the nnU-Net way (``scheduler.step(current_epoch)`` at the start of every epoch), so the rate is a pure function
of the epoch and a resumed run gets the same rate as an uninterrupted one; the state dict is still saved and restored
with the checkpoint.
"""

from __future__ import annotations

from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


class StepDecayLRScheduler(LRScheduler):
    """Step decay by ``gamma`` every ``step_size`` epochs; ``gamma = 1`` gives a constant rate."""

    def __init__(
        self, optimizer: Optimizer, initial_lr: float, step_size: int, gamma: float, current_step: int | None = None
    ):
        if initial_lr <= 0:
            raise ValueError(f"initial_lr must be > 0, got {initial_lr}")
        if step_size < 1:
            raise ValueError(f"step_size must be >= 1 epoch, got {step_size}")
        if not 0 < gamma <= 1:
            raise ValueError(f"gamma must be in (0, 1], got {gamma}")
        self.optimizer = optimizer
        self.initial_lr = float(initial_lr)
        self.step_size = int(step_size)
        self.gamma = float(gamma)
        self.ctr = 0
        super().__init__(optimizer, current_step if current_step is not None else -1)

    def lr_at(self, epoch: int) -> float:
        """Learning rate used during ``epoch`` (0-based)."""
        return self.initial_lr * self.gamma ** (int(epoch) // self.step_size)

    def step(self, current_step: int | None = None) -> None:  # noqa: D102 (nnU-Net calls step(epoch))
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        new_lr = self.lr_at(current_step)
        for group in self.optimizer.param_groups:
            group["lr"] = new_lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float | Tensor]:  # the signature of torch's LRScheduler
        return self._last_lr
