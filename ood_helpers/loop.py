"""The one training loop: Adam, MultiStepLR, shuffled mini-batches, a stop on divergence.

Everything else plugs in through hooks (:class:`Hooks`): progress bars, saving and resuming the
training state, torchrun's share of each batch (see :mod:`ood_helpers.runtime`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .validation import InputError


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; nothing was fitted."""


@dataclass
class TrainingRun:
    """What hooks see of a run: the network, optimiser, scheduler, generator and losses so far."""

    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    generator: torch.Generator
    epochs: int
    epoch: int = 0                                 # epochs done
    losses: list = field(default_factory=list)     # mean loss of each epoch done


class Hooks:
    """No-op hooks; subclass and override what you need."""

    def on_start(self, run: TrainingRun) -> None:
        """Before the first epoch (resume may set ``run.epoch`` and ``run.losses`` here)."""

    def on_batches(self, run: TrainingRun, batches: list) -> list:
        """This process's mini-batches of the epoch (torchrun keeps its share of each)."""
        return batches

    def on_step_end(self, run: TrainingRun, step: int, total: torch.Tensor) -> None:
        """After each step; ``total`` is the epoch's loss summed so far, on the device."""

    def epoch_loss(self, run: TrainingRun, mean: torch.Tensor) -> torch.Tensor:
        """The epoch's mean loss as recorded (torchrun averages it over processes)."""
        return mean

    def on_epoch_end(self, run: TrainingRun) -> None:
        """After each epoch, ``run.losses[-1]`` being its mean loss."""


def run_epochs(model, step, n_items: int, *, epochs: int, batch_size: int, lr: float, generator: torch.Generator,
               betas=(0.9, 0.999), milestones=(), gamma: float = 0.1, name: str = "training",
               hooks=(), min_batch: int = 2) -> list[float]:
    """Train ``model`` for ``epochs``: each mini-batch is ``loss = step(index)``, then backward and Adam.

    ``index`` holds the positions (int64, on ``generator``'s device) of at least ``min_batch`` of
    ``n_items`` items; the learning rate drops by ``gamma`` after each epoch in ``milestones``.
    Returns the mean loss of every epoch. Raises TrainingDivergedError on a non-finite loss and
    InputError when no mini-batch of ``min_batch`` items fits.
    """
    if n_items < min_batch or batch_size < min_batch:
        raise InputError(f"{name}: nothing would be trained: {n_items} training item(s) in batches of batch_size="
                         f"{batch_size} give no mini-batch of at least {min_batch}. Fix: batch_size >= {min_batch} "
                         f"and at least {min_batch} training images (a larger train_limit, or more images).")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=tuple(betas))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(milestones), gamma=gamma)
    run = TrainingRun(name, model, optimizer, scheduler, generator, epochs)
    for hook in hooks:
        hook.on_start(run)
    for epoch in range(run.epoch, epochs):
        model.train()
        order = torch.randperm(n_items, generator=generator, device=generator.device)
        batches = [order[i:i + batch_size] for i in range(0, n_items - min_batch + 1, batch_size)]
        for hook in hooks:
            batches = hook.on_batches(run, batches)
        total = torch.zeros(())   # on the loss's device after the first step: no wait per step
        for count, index in enumerate(batches, start=1):
            optimizer.zero_grad(set_to_none=True)
            loss = step(index)
            loss.backward()
            optimizer.step()
            total = total.to(loss.device) + loss.detach().float()
            for hook in hooks:
                hook.on_step_end(run, count, total)
        scheduler.step()
        mean = total / max(1, len(batches))
        for hook in hooks:
            mean = hook.epoch_loss(run, mean)
        if not torch.isfinite(mean):
            raise TrainingDivergedError(f"{name} training diverged: the mean loss of epoch {epoch + 1} is "
                                        f"{float(mean)}; nothing was fitted. Fix: lower the learning rate "
                                        f"(lr={lr:g}), or check the training images for extreme values.")
        run.epoch, run.losses = epoch + 1, run.losses + [float(mean)]
        for hook in hooks:
            hook.on_epoch_end(run)
    model.eval()
    return run.losses
