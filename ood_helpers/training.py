"""Training loops: the autoencoder (L1) and the in/out classifier (cross-entropy).

Both use the paper's optimiser (Adam with the preset's lr and betas) and schedule (MultiStepLR,
gamma 0.2 at 40% and 80% of the epochs). With ``state_path`` the full training state is saved
atomically after every epoch and a restarted run resumes from it.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .noise import NoiseAugment
from .outliers import make_outliers
from .presets import Preset

STATE_FORMAT = "ood_helpers.training_state"


def pick_device(device=None) -> torch.device:
    """``device`` if given, else CUDA, else Apple MPS, else CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch.Generator for the data pipeline."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def difference_image(images: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """The paper's difference image |I - D(E(I))|, same shape as the images."""
    return (images - reconstruction).abs()


class EpochTrainer:
    """Adam + MultiStepLR over epochs of shuffled index batches, with progress bars and resume."""

    def __init__(self, model: torch.nn.Module, preset: Preset, epochs: int, name: str,
                 generator: torch.Generator, state_path=None, progress: bool = True):
        self.model, self.preset, self.epochs, self.name = model, preset, epochs, name
        self.generator, self.progress = generator, progress
        self.state_path = Path(state_path) if state_path else None
        self.optimizer = torch.optim.Adam(model.parameters(), lr=preset.lr, betas=tuple(preset.betas))
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, preset.milestone_epochs(epochs),
                                                              gamma=preset.gamma)

    def _fingerprint(self, n_items: int) -> dict:
        return {"name": self.name, "epochs": self.epochs, "n_items": n_items, "preset": self.preset.name,
                "batch_size": self.preset.batch_size, "width": self.preset.width}

    def _save(self, epoch: int, losses: list, n_items: int):
        save_checkpoint({"format": STATE_FORMAT, "version": 1, "config": self._fingerprint(n_items),
                         "epoch": epoch, "losses": losses, "model": self.model.state_dict(),
                         "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                         "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state()},
                        self.state_path)

    def _resume(self, n_items: int) -> tuple[int, list]:
        if self.state_path is None or not self.state_path.exists():
            return 0, []
        state = load_checkpoint(self.state_path, STATE_FORMAT)
        if state["config"] != self._fingerprint(n_items):
            raise CheckpointError(f"'{self.state_path}' holds a training run with other settings "
                                  f"({state['config']}) than this one ({self._fingerprint(n_items)}); "
                                  f"use another output folder or delete that file.")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        return int(state["epoch"]), list(state["losses"])

    def run(self, n_items: int, step, on_epoch_end=None) -> list[float]:
        """Train; ``step(index_tensor) -> loss``. Returns the mean loss of every epoch."""
        start, losses = self._resume(n_items)
        batch = self.preset.batch_size
        for epoch in range(start, self.epochs):
            self.model.train()
            order = torch.randperm(n_items, generator=self.generator)
            batches = [order[i:i + batch] for i in range(0, n_items, batch) if len(order[i:i + batch]) > 1]
            total = 0.0
            bar = tqdm(batches, desc=f"{self.name} epoch {epoch + 1}/{self.epochs}", leave=False,
                       disable=not self.progress)
            for index in bar:
                self.optimizer.zero_grad(set_to_none=True)
                loss = step(index)
                loss.backward()
                self.optimizer.step()
                total += loss.item()
                bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
            self.scheduler.step()
            losses.append(total / max(1, len(batches)))
            if self.state_path is not None:
                self._save(epoch + 1, losses, n_items)
            if on_epoch_end is not None:
                on_epoch_end(epoch + 1, losses[-1])
        self.model.eval()
        return losses


def train_autoencoder(autoencoder, images: torch.Tensor, preset: Preset, generator: torch.Generator,
                      device, noise: NoiseAugment | None = None, state_path=None, progress=True,
                      on_epoch_end=None) -> list[float]:
    """Train E and D with the L1 reconstruction loss (equation 1 of the paper).

    With ``noise`` the input is corrupted and the target stays clean (a denoising autoencoder), so
    a noisy in-distribution image is still reconstructed as its clean self.
    """
    def step(index):
        clean = images[index]
        corrupted = noise(clean, generator) if noise is not None else clean
        reconstruction, _ = autoencoder(corrupted.to(device))
        return F.l1_loss(reconstruction, clean.to(device))

    trainer = EpochTrainer(autoencoder, preset, preset.ae_epochs, "autoencoder", generator, state_path, progress)
    return trainer.run(len(images), step, on_epoch_end)


def train_classifier(classifier, autoencoder, images: torch.Tensor, preset: Preset, generator: torch.Generator,
                     device, noise: NoiseAugment | None = None, families=None, state_path=None, progress=True,
                     on_epoch_end=None) -> list[float]:
    """Train the in/out classifier with cross-entropy (equation 2 of the paper).

    Every batch holds ``batch_size`` in-distribution images (label 0) and as many synthetic
    outliers made from other in-distribution images (label 1). Noise augmentation, when on, hits
    both halves alike, so noise never tells the classes apart. The autoencoder stays frozen.
    """
    autoencoder.eval()
    for parameter in autoencoder.parameters():
        parameter.requires_grad_(False)

    def step(index):
        partners = torch.randint(len(images), (len(index),), generator=generator)
        outliers, _ = make_outliers(images[partners], families, generator)
        batch = torch.cat([images[index], outliers])
        if noise is not None:
            batch = noise(batch, generator)
        labels = torch.cat([torch.zeros(len(index)), torch.ones(len(index))]).to(device)
        batch = batch.to(device)
        with torch.no_grad():
            reconstruction, z = autoencoder(batch)
        logits = classifier(difference_image(batch, reconstruction), z)
        return F.binary_cross_entropy_with_logits(logits, labels)

    trainer = EpochTrainer(classifier, preset, preset.clf_epochs, "classifier", generator, state_path, progress)
    return trainer.run(len(images), step, on_epoch_end)
