"""Shared machinery of the deep baselines: build a torch model, train it with the package's one loop.

Every deep baseline is built as ``Cls(in_channels=None, preset="quick", seed=0, budget=None, ...)``.
The preset picks a *budget* (epochs, width, cap on training images, ...) from the class's
``BUDGETS`` dict; ``budget`` replaces single entries (handy for tests and experiments)::

    VAEDetector(in_channels=1, preset="quick", seed=0, budget={"epochs": 1})

Training goes through :func:`ood_helpers.loop.run_epochs` (Adam, shuffled mini-batches, a
progress bar, a stop on a non-finite loss); scoring is batched by
:meth:`ood_helpers.api.BaseDetector.decision_function`, so memory is bounded by its
``batch_size``.
"""
from __future__ import annotations

import torch

from ..loop import run_epochs
from ..runtime import Progress
from .base import BudgetedDetector

__all__ = ["DeepBaseline"]


class DeepBaseline(BudgetedDetector):
    """A torch model trained with Adam on in-distribution images (abstract).

    Parameters
    ----------
    in_channels, preset, seed, budget, threshold_quantile, held_out_fraction, device, progress
        See :class:`~ood_helpers.baselines.base.BudgetedDetector`.

    Attributes
    ----------
    model_ : torch.nn.Module
        The trained model, in eval mode, on ``device_``; its parameters stay trainable
        (``requires_grad``), scoring runs under ``torch.no_grad()``.
    history_ : dict
        ``loss`` (mean training loss per epoch), ``train_seconds``, ``n_images``, ``budget``.
    budget_, device_, threshold_, in_channels_, n_train_
        See :class:`~ood_helpers.baselines.base.BudgetedDetector`.

    Raises
    ------
    ood_helpers.loop.TrainingDivergedError
        From ``fit``, when the training loss becomes NaN or infinite.

    Notes
    -----
    Subclass contract: ``BUDGETS`` (preset name -> dict with at least ``epochs``,
    ``batch_size``, ``lr`` and ``train_limit``), ``_build() -> nn.Module`` (weights drawn from the
    global torch generator, which ``fit`` seeds), ``_loss(batch, generator) -> scalar tensor``
    (draw any noise from ``generator``) and ``_score(batch) -> tensor (B,)``, deterministic
    and computed per image, so a score does not depend on the other images in its batch.
    Optional: ``_after_training(generator)`` for state drawn once after training.
    """

    name = "deep baseline"

    # -- subclass hooks ---------------------------------------------------------------------------
    def _build(self) -> torch.nn.Module:
        raise NotImplementedError

    def _loss(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def _score(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _after_training(self, generator: torch.Generator) -> None:
        """Draw state needed for scoring once training is done (default: nothing)."""

    # -- training and scoring ---------------------------------------------------------------------
    def _train(self, images, generator):
        self.model_ = self._build().to(self.device_)
        budget = self.budget_

        def step(index):
            return self._loss(images[index].to(self.device_), generator)

        losses = run_epochs(self.model_, step, len(images), epochs=budget["epochs"], batch_size=budget["batch_size"],
                            generator=generator, lr=budget["lr"], name=self.name, hooks=[Progress(self.name)] if self.progress else [])
        self.model_.eval()
        self._after_training(generator)
        return {"loss": losses}

    @torch.no_grad()
    def _decision_batch(self, batch):
        self.model_.eval()
        return self._score(batch.detach().to(self.device_)).cpu()
