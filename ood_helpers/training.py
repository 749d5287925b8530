"""Training: one epoch loop for every network in the package, and the paper's two training stages.

:func:`run_epochs` is the only training loop: the detector's autoencoder and classifier, the deep
baselines and notebook 04's cheating demo all call it. It uses Adam and MultiStepLR (the paper:
lr 1e-4, betas (0.9, 0.99), gamma 0.2 at epochs 40 and 80 of 100), shows a progress bar per epoch,
stops with :class:`TrainingDivergedError` when the loss stops being finite, and with ``state_path``
saves the whole training state after every epoch so that a restarted run resumes where it stopped.
A saved state is reused only by a run with the same identity (every setting that shapes the
result); anything else starts afresh.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .api import fingerprint
from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .noise import NoiseAugment
from .outliers import make_outliers
from .presets import Preset

STATE_FORMAT = "ood_helpers.training_state"


class TrainingDivergedError(RuntimeError):
    """The training loss became NaN or infinite; nothing was fitted."""


def pick_device(device=None) -> torch.device:
    """The device to train on: ``device`` if given, else CUDA, else Apple MPS, else the CPU.

    Raises
    ------
    ood_helpers.validation.InputError
        When ``device`` is not a valid torch device string or object.
    """
    from .validation import InputError

    if device is not None:
        try:
            return torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise InputError(f"device: expected a torch device such as 'cpu' or 'cuda', got {device!r}.") from err
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def difference_image(images: torch.Tensor, reconstruction: torch.Tensor) -> torch.Tensor:
    """The paper's difference image :math:`|I - D(E(I))|` (Section 3.2, Figure 2).

    Parameters
    ----------
    images, reconstruction : torch.Tensor (N, C, 32, 32), values in [0, 1]

    Returns
    -------
    torch.Tensor (N, C, 32, 32), values in [0, 1]
    """
    return (images - reconstruction).abs()


def state_file(work_dir, stage: str, identity: dict) -> Path:
    """Where :func:`run_epochs` keeps one stage's state: a name unique to the run's identity, so
    runs that differ in anything (seed, preset field, data) never share a state file."""
    return Path(work_dir) / f"{stage}_state_{fingerprint(identity)}.pt"


def run_epochs(model: torch.nn.Module, step, n_items: int, *, epochs: int, batch_size: int,
               generator: torch.Generator, lr: float, betas=(0.9, 0.999), milestones=(), gamma: float = 0.1,
               name: str = "training", progress: bool = True, state_path=None, identity: dict | None = None,
               on_epoch_end=None) -> list[float]:
    """Train ``model`` with Adam (+ MultiStepLR) over shuffled mini-batches; the package's one loop.

    Parameters
    ----------
    model : torch.nn.Module
        Its parameters are optimised; it is in train mode during epochs and eval mode after.
    step : callable
        ``step(index) -> loss``: ``index`` is an int64 tensor of item positions (one mini-batch,
        at least 2 items; a last batch of one is dropped), ``loss`` a scalar tensor.
    n_items : int
        Number of training items the indices refer to.
    epochs, batch_size : int
    generator : torch.Generator
        Draws the epoch orders (and, through ``step``, anything else random), so a fixed seed
        reproduces the run.
    lr, betas : Adam's learning rate and betas.
    milestones : sequence of int
        Epochs after which the learning rate is multiplied by ``gamma`` (MultiStepLR).
    name : str
        Shown on the progress bar and in errors.
    progress : bool
        Show a tqdm progress bar per epoch.
    state_path : path or None
        Save the training state there (atomically) after each epoch and resume from it.
    identity : dict or None
        Everything that defines the run; a saved state with another identity is ignored (and
        overwritten), never resumed.
    on_epoch_end : callable or None
        ``on_epoch_end(epoch, mean_loss)`` after each epoch (epochs count from 1).

    Returns
    -------
    list of float
        Mean training loss of every epoch (resumed epochs included).

    Raises
    ------
    TrainingDivergedError
        When an epoch's loss is NaN or infinite.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=tuple(betas))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(milestones), gamma=gamma)
    state_path = Path(state_path) if state_path is not None else None
    identity = {"name": name, "epochs": epochs, "n_items": n_items, "batch_size": batch_size, "lr": lr,
                "betas": list(betas), "milestones": list(milestones), "gamma": gamma, **(identity or {})}
    start, losses = _resume(state_path, identity, model, optimizer, scheduler, generator)
    device = next(model.parameters()).device
    for epoch in range(start, epochs):
        model.train()
        order = torch.randperm(n_items, generator=generator)
        batches = [order[i:i + batch_size] for i in range(0, n_items, batch_size) if len(order[i:i + batch_size]) > 1]
        total = torch.zeros((), device=device)  # summed on the device: no host synchronisation per step
        bar = tqdm(batches, desc=f"{name} epoch {epoch + 1}/{epochs}", leave=False, disable=not progress)
        for count, index in enumerate(bar, start=1):
            optimizer.zero_grad(set_to_none=True)
            loss = step(index)
            loss.backward()
            optimizer.step()
            total += loss.detach()
            if progress and (count % 10 == 0 or count == len(batches)):
                bar.set_postfix(loss=f"{float(total) / count:.4f}", refresh=False)
        scheduler.step()
        mean = float(total) / max(1, len(batches))
        if not torch.isfinite(torch.tensor(mean)):
            raise TrainingDivergedError(
                f"{name} training diverged: the mean loss of epoch {epoch + 1} is {mean}; nothing was fitted. "
                f"Fix: lower the learning rate (lr={lr:g}), or check the training images for extreme values.")
        losses.append(mean)
        if state_path is not None:
            save_checkpoint({"format": STATE_FORMAT, "version": 2, "config": identity, "epoch": epoch + 1,
                             "losses": losses, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "generator": generator.get_state(),
                             "torch_rng": torch.get_rng_state()}, state_path)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, losses[-1])
    model.eval()
    return losses


def _resume(state_path, identity, model, optimizer, scheduler, generator) -> tuple[int, list]:
    """(first epoch to run, losses so far) from a saved state of the same run, else (0, [])."""
    if state_path is None or not state_path.exists():
        return 0, []
    try:
        state = load_checkpoint(state_path, STATE_FORMAT)
        if json.loads(json.dumps(state.get("config"), default=str)) != json.loads(json.dumps(identity, default=str)):
            return 0, []
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
    except (CheckpointError, KeyError, RuntimeError, ValueError, TypeError):
        # an unusable state is a cache miss: the run starts from epoch 0 and overwrites it
        return 0, []
    return int(state["epoch"]), [float(x) for x in state["losses"]]


def preset_schedule(preset: Preset, epochs: int) -> dict:
    """The :func:`run_epochs` keyword arguments a preset sets (optimiser, schedule, batch size)."""
    return dict(epochs=epochs, batch_size=preset.batch_size, lr=preset.lr, betas=tuple(preset.betas),
                milestones=preset.milestone_epochs(epochs), gamma=preset.gamma)


def train_autoencoder(autoencoder, images: torch.Tensor, preset: Preset, generator: torch.Generator,
                      device, noise: NoiseAugment | None = None, state_path=None, progress=True,
                      on_epoch_end=None, identity: dict | None = None) -> list[float]:
    """Train E and D with the L1 reconstruction loss :math:`|I - D(E(I))|_1` (equation 1 of the paper).

    ``images``: float (N, C, 32, 32) in [0, 1] on the CPU (batches move to ``device``). Returns the
    mean loss per epoch. Raises :class:`TrainingDivergedError` when the loss is not finite.

    With ``noise`` the input is corrupted and the target stays clean (a denoising autoencoder), so
    a noisy in-distribution image is still reconstructed as its clean self.
    """
    def step(index):
        clean = images[index]
        corrupted = noise(clean, generator) if noise is not None else clean
        reconstruction, _ = autoencoder(corrupted.to(device))
        return F.l1_loss(reconstruction, clean.to(device))

    return run_epochs(autoencoder, step, len(images), generator=generator, name="autoencoder", progress=progress,
                      state_path=state_path, identity=identity, on_epoch_end=on_epoch_end,
                      **preset_schedule(preset, preset.ae_epochs))


def train_classifier(classifier, autoencoder, images: torch.Tensor, preset: Preset, generator: torch.Generator,
                     device, noise: NoiseAugment | None = None, families=None, state_path=None, progress=True,
                     on_epoch_end=None, identity: dict | None = None) -> list[float]:
    """Train the in/out classifier with cross-entropy (equation 2 of the paper).

    ``images``: float (N, C, 32, 32) in [0, 1], in-distribution only. Returns the mean loss per
    epoch. Raises :class:`TrainingDivergedError` when the loss is not finite.

    Every batch holds ``batch_size`` in-distribution images (label 0) and as many synthetic
    outliers made from other in-distribution images (label 1). Noise augmentation, when on, hits
    both halves alike, so noise never tells the classes apart. The autoencoder is not updated.
    """
    autoencoder.eval()  # frozen by running it under no_grad; its parameters stay trainable

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

    return run_epochs(classifier, step, len(images), generator=generator, name="classifier", progress=progress,
                      state_path=state_path, identity=identity, on_epoch_end=on_epoch_end,
                      **preset_schedule(preset, preset.clf_epochs))


# -- the anti-pattern of notebook 04: a classifier trained on the test OOD set ---------------------
class CheatingClassifier:
    """A difference-image classifier trained with *real* OOD images as its "out" class.

    DO NOT USE FOR RESULTS: it exists to show, in notebook 04, what training on the test OOD set
    would pretend. Built by :func:`train_cheating_classifier`; it scores images exactly like the
    real classifier of an :class:`~ood_helpers.OODDetector` (difference image and z from the
    detector's frozen autoencoder), without calibration or latent distance.

    Attributes
    ----------
    detector_ : ood_helpers.OODDetector
        The fitted detector whose autoencoder it reads.
    classifier_ : ood_helpers.models.DifferenceClassifier
    history_ : list of float
        Mean training loss (binary cross-entropy) per epoch.
    """

    def __init__(self, detector, classifier, history: list):
        self.detector_, self.classifier_, self.history_ = detector, classifier, history

    @torch.no_grad()
    def decision_function(self, images, batch_size: int = 256):
        """The classifier's logit per image: higher = more out-of-distribution.

        Parameters
        ----------
        images : torch.Tensor, numpy array or map-style Dataset
            (N, C, 32, 32) float in [0, 1] or uint8 0-255, C = the detector's channels.
        batch_size : int > 0

        Returns
        -------
        numpy.ndarray of float64, shape (N,)
            Unbounded logits.

        Raises
        ------
        InputError
            Bad images or batch size.
        """
        from .validation import check_batch_size, iter_image_batches

        batch_size = check_batch_size(batch_size)
        autoencoder, device = self.detector_.autoencoder_.eval(), self.detector_.device_
        self.classifier_.eval()
        logits = []
        for batch in iter_image_batches(images, self.detector_.in_channels_, "images", batch_size):
            batch = batch.to(device)
            reconstruction, z = autoencoder(batch)
            logits.append(self.classifier_(difference_image(batch, reconstruction), z).float().cpu())
        return torch.cat(logits).double().numpy()

    def __repr__(self):
        return f"CheatingClassifier(trained {len(self.history_)} epochs on real OOD images; do not do this)"


def train_cheating_classifier(detector, in_images, ood_images, epochs: int | None = None, seed: int = 0,
                              progress: bool = True) -> CheatingClassifier:
    """DO NOT USE FOR RESULTS: the anti-pattern notebook 04 warns about.

    Trains a fresh classifier of the detector's architecture (difference image + z, on the
    detector's frozen autoencoder) with ``in_images`` as class 0 and *real* out-of-distribution
    images ``ood_images`` as class 1, instead of synthetic outliers. Each step pairs a mini-batch
    of in images with as many OOD images drawn at random. Same optimiser, schedule and loop
    (:func:`run_epochs`) as the real classifier, no noise augmentation.

    Parameters
    ----------
    detector : ood_helpers.OODDetector
        A fitted detector; its autoencoder is used, never changed.
    in_images, ood_images : (N, C, 32, 32) and (M, C, 32, 32)
        Float in [0, 1] or uint8 0-255, C = the detector's channels; N >= 2, M >= 1.
    epochs : int or None
        Defaults to the detector preset's classifier epochs.
    seed : int >= 0
        Seeds weights, batch order and OOD partners; the global random state is restored after.
    progress : bool
        Show a progress bar per epoch.

    Returns
    -------
    CheatingClassifier

    Raises
    ------
    NotFittedError
        When ``detector`` is not fitted.
    InputError
        Bad images, seed or epochs.
    TrainingDivergedError
        When the loss becomes NaN or infinite.
    """
    from .api import check_seed, seeded
    from .detector import OODDetector
    from .models import DifferenceClassifier
    from .validation import InputError, as_image_batch, check_positive_int

    if not isinstance(detector, OODDetector):
        raise InputError(f"detector: expected a fitted OODDetector, got {type(detector).__name__}.")
    detector._check_fitted("train_cheating_classifier")
    seed = check_seed(seed)
    channels, preset, device = detector.in_channels_, detector.preset_, detector.device_
    epochs = preset.clf_epochs if epochs is None else check_positive_int(epochs, "epochs")
    in_images = as_image_batch(in_images, channels, "in_images")
    ood_images = as_image_batch(ood_images, channels, "ood_images")
    if len(in_images) < 2:
        raise InputError(f"in_images: expected at least 2 images, got {len(in_images)}.")
    autoencoder = detector.autoencoder_.eval()
    with torch.enable_grad(), seeded(seed) as generator:
        classifier = DifferenceClassifier(channels, preset.width, preset.latent_dim, preset.stem, True,
                                          detector.inject_stage).to(device)

        def step(index):
            partners = torch.randint(len(ood_images), (len(index),), generator=generator)
            batch = torch.cat([in_images[index], ood_images[partners]]).to(device)
            labels = torch.cat([torch.zeros(len(index)), torch.ones(len(index))]).to(device)
            with torch.no_grad():
                reconstruction, z = autoencoder(batch)
            logits = classifier(difference_image(batch, reconstruction), z)
            return F.binary_cross_entropy_with_logits(logits, labels)

        history = run_epochs(classifier, step, len(in_images), generator=generator, name="cheating classifier",
                             progress=progress, **preset_schedule(preset, epochs))
    return CheatingClassifier(detector, classifier, history)
