"""Shared machinery of the deep baselines: per-preset budgets, seeded training loop, batched scoring.

Every deep baseline is built as ``Cls(in_channels, preset="quick", seed=0, progress=True)``. The
preset picks a *budget* (epochs, width, cap on training images, ...) from the class's ``BUDGETS``
dict; keyword overrides replace single budget entries (handy for tests and experiments)::

    VAEDetector(1, preset="quick", seed=0, epochs=1)
"""
from __future__ import annotations

import time

import numpy as np
import torch
from tqdm.auto import tqdm

from ..training import pick_device, seed_everything
from ..validation import InputError
from .base import BudgetedDetector, subsample


class DeepBaseline(BudgetedDetector):
    """A torch model trained with Adam on in-distribution images; subclasses define the model,
    the per-batch training loss and the per-image score.

    Subclass contract: ``BUDGETS`` (preset name -> dict with at least ``epochs``, ``batch_size``,
    ``lr`` and ``train_limit``), ``_build() -> nn.Module``, ``_loss(batch, generator) -> scalar``
    and ``_score_batch(batch, generator) -> tensor (B,)``.
    """

    name = "deep baseline"

    def __init__(self, in_channels: int, preset="quick", seed: int = 0, progress: bool = True, device=None,
                 **overrides):
        super().__init__(in_channels, preset, seed, progress, **overrides)
        self.device = pick_device(device)
        self.history_: dict = {}
        self.model = None

    # -- subclass hooks ---------------------------------------------------------------------------
    def _build(self) -> torch.nn.Module:
        raise NotImplementedError

    def _loss(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def _score_batch(self, batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    score_needs_grad = False

    # -- training and scoring ---------------------------------------------------------------------
    def _fit(self, images: torch.Tensor):
        images = subsample(images, self.budget["train_limit"], self.seed)
        if len(images) < 2:
            raise InputError(f"train_images: expected at least 2 images to fit, got {len(images)}.")
        generator = seed_everything(self.seed)
        self.model = self._build().to(self.device)
        optimizer = torch.optim.Adam(self.model.parameters(), lr=self.budget["lr"])
        epochs, batch_size = self.budget["epochs"], self.budget["batch_size"]
        losses, start = [], time.perf_counter()
        for epoch in range(epochs):
            self.model.train()
            order = torch.randperm(len(images), generator=generator)
            batches = [order[i:i + batch_size] for i in range(0, len(images), batch_size)
                       if len(order[i:i + batch_size]) > 1]
            total = 0.0
            bar = tqdm(batches, desc=f"{self.name} epoch {epoch + 1}/{epochs}", leave=False, disable=not self.progress)
            for index in bar:
                optimizer.zero_grad(set_to_none=True)
                loss = self._loss(images[index].to(self.device), generator)
                loss.backward()
                optimizer.step()
                total += loss.item()
                bar.set_postfix(loss=f"{loss.item():.4g}", refresh=False)
            losses.append(total / max(1, len(batches)))
        self.model.eval()
        self.history_ = {"loss": losses, "train_seconds": time.perf_counter() - start, "n_images": len(images),
                         "budget": dict(self.budget)}

    def _score(self, images: torch.Tensor) -> np.ndarray:
        self.model.eval()
        generator = torch.Generator().manual_seed(self.seed + 1)
        batch_size = self.budget.get("score_batch_size", 256)
        scores = []
        with torch.set_grad_enabled(self.score_needs_grad):
            for start in range(0, len(images), batch_size):
                batch = images[start:start + batch_size].to(self.device)
                scores.append(self._score_batch(batch, generator).detach().double().cpu())
        return torch.cat(scores).numpy()
