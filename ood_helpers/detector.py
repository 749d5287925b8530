"""``OODDetector``: the paper's detector behind a scikit-learn style fit / score interface."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from . import metrics
from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .models import AutoEncoder, DifferenceClassifier
from .noise import NoiseAugment
from .outliers import apply_family, families_for
from .presets import Preset, get_preset
from .training import difference_image, pick_device, seed_everything, train_autoencoder, train_classifier
from .validation import InputError, as_image_batch

DETECTOR_FORMAT = "ood_helpers.detector"
MIN_TRAIN_IMAGES = 20


class NotFittedError(RuntimeError):
    """A detector was asked to score before ``fit`` (or ``load``)."""


def _as_training_images(images, channels: int) -> torch.Tensor:
    if isinstance(images, torch.utils.data.Dataset) and not isinstance(images, torch.Tensor):
        if len(images) == 0:
            raise InputError("train_images: the dataset is empty; pass at least one image.")
        items = [images[i] for i in range(len(images))]
        items = [item[0] if isinstance(item, (tuple, list)) else item for item in items]
        images = torch.stack([torch.as_tensor(item) for item in items])
    return as_image_batch(images, channels, "train_images")


def _timed(seconds: list, on_epoch_end=None):
    """An epoch callback that appends each epoch's wall seconds to ``seconds`` (epochs resumed from
    a saved state are not timed), then calls ``on_epoch_end``."""
    last = [time.perf_counter()]

    def callback(epoch, loss):
        now = time.perf_counter()
        seconds.append(now - last[0])
        last[0] = now
        if on_epoch_end is not None:
            on_epoch_end(epoch, loss)
    return callback


class OODDetector:
    """Autoencoder + difference-image classifier with the latent z as auxiliary input.

    Parameters
    ----------
    in_channels : 1 (MNIST-like) or 3 (CIFAR-like); images are (N, in_channels, 32, 32) in [0, 1].
    preset : "quick", "classroom", "paper", a :class:`Preset`, or None for ``$OOD_PRESET`` / auto.
    seed : seeds weights, data order, outliers and noise; same seed + preset + machine = same scores.
    latent_input : feed z into the classifier and use the latent density (False = the ablation).
    noise_augment : noise-addition augmentation on both classes (False = the ablation).
    inject_stage : the classifier stage (1-4) after which z is added.
    outlier_families : names from ``outliers.OUTLIER_FAMILIES`` used as the "out" class
        (default: every family that applies to ``in_channels``).

    Score: higher = more out-of-distribution. It is the classifier's logit, plus (with
    ``latent_input``) the Mahalanobis distance of z to the training latents, each standardised by
    its mean and spread on held-out in-distribution training images so the two add on one scale.
    """

    def __init__(self, in_channels: int = 1, preset="quick", seed: int = 0, latent_input: bool = True,
                 noise_augment: bool = True, inject_stage: int = 2, outlier_families=None, device=None,
                 progress: bool = True):
        if in_channels not in (1, 3):
            raise InputError(f"in_channels: expected 1 (grayscale) or 3 (RGB), got {in_channels!r}.")
        if inject_stage not in (1, 2, 3, 4):
            raise InputError(f"inject_stage: expected 1, 2, 3 or 4, got {inject_stage!r}.")
        self.in_channels, self.seed = in_channels, int(seed)
        available = families_for(in_channels)
        self.outlier_families = tuple(outlier_families) if outlier_families is not None else available
        unknown = [f for f in self.outlier_families if f not in available]
        if unknown or not self.outlier_families:
            raise InputError(f"outlier_families: expected a non-empty selection of {available} for "
                             f"{in_channels} channel(s), got {outlier_families!r}.")
        self.preset: Preset = get_preset(preset)
        self.latent_input, self.noise_augment, self.inject_stage = bool(latent_input), bool(noise_augment), inject_stage
        self.device, self.progress = pick_device(device), progress
        self.fitted_ = False
        self.history_: dict = {}
        self.validation_: dict = {}
        self._build()

    # -- construction -------------------------------------------------------------------------
    def _build(self):
        torch.manual_seed(self.seed)
        p = self.preset
        self.autoencoder = AutoEncoder(self.in_channels, p.width, p.latent_dim, p.stem).to(self.device)
        self.classifier = DifferenceClassifier(self.in_channels, p.width, p.latent_dim, p.stem,
                                               self.latent_input, self.inject_stage).to(self.device)
        self.latent_mean = torch.zeros(p.latent_dim)
        self.latent_precision = torch.eye(p.latent_dim)
        self.calibration = torch.tensor([0.0, 1.0, 0.0, 1.0])  # classifier mean, std, latent mean, std

    def config(self) -> dict:
        return {"in_channels": self.in_channels, "seed": self.seed, "preset": self.preset.as_dict(),
                "latent_input": self.latent_input, "noise_augment": self.noise_augment,
                "inject_stage": self.inject_stage, "outlier_families": list(self.outlier_families)}

    def __repr__(self):
        return (f"OODDetector(in_channels={self.in_channels}, preset={self.preset.name!r}, seed={self.seed}, "
                f"latent_input={self.latent_input}, noise_augment={self.noise_augment}, fitted={self.fitted_})")

    # -- training -----------------------------------------------------------------------------
    def fit(self, train_images, work_dir=None, on_epoch_end=None) -> "OODDetector":
        """Train on in-distribution images only: float (N, C, 32, 32) in [0, 1] or a Dataset of them.

        The images are split three ways (seeded): 45% train the autoencoder, 45% the classifier
        and the latent density (disjoint, so the classifier never sees images the autoencoder
        memorised), 10% are held out to standardise scores and validate on synthetic outliers.
        ``work_dir`` keeps per-epoch training state there and resumes from it after a restart.
        """
        images = _as_training_images(train_images, self.in_channels)
        if len(images) < MIN_TRAIN_IMAGES:
            raise InputError(f"train_images: expected at least {MIN_TRAIN_IMAGES} images to fit, got {len(images)}.")
        if self.preset.train_limit is not None and len(images) > self.preset.train_limit:
            keep = torch.randperm(len(images), generator=torch.Generator().manual_seed(self.seed))
            images = images[keep[: self.preset.train_limit].sort().values]
        generator = seed_everything(self.seed)
        self._build()
        order = torch.randperm(len(images), generator=generator)
        n_val = max(4, len(images) // 10)
        n_ae = (len(images) - n_val) // 2
        val, ae_part, clf_part = images[order[:n_val]], images[order[n_val:n_val + n_ae]], images[order[n_val + n_ae:]]
        noise = NoiseAugment(self.preset.noise_max_severity) if self.noise_augment else None
        state = Path(work_dir) if work_dir is not None and self.preset.checkpoint_every_epoch else None

        start = time.perf_counter()
        epoch_seconds = {"autoencoder": [], "classifier": []}
        ae_loss = train_autoencoder(self.autoencoder, ae_part, self.preset, generator, self.device, noise,
                                    state / "autoencoder_state.pt" if state else None, self.progress,
                                    _timed(epoch_seconds["autoencoder"], on_epoch_end))
        clf_loss = train_classifier(self.classifier, self.autoencoder, clf_part, self.preset, generator,
                                    self.device, noise, self.outlier_families,
                                    state / "classifier_state.pt" if state else None, self.progress,
                                    _timed(epoch_seconds["classifier"], on_epoch_end))
        self._fit_latent_density(clf_part)
        self.fitted_ = True
        self._calibrate(val)
        self.history_ = {"autoencoder_l1": ae_loss, "classifier_ce": clf_loss,
                         "train_seconds": time.perf_counter() - start, "epoch_seconds": epoch_seconds,
                         "n_images": {"autoencoder": len(ae_part), "classifier": len(clf_part), "validation": len(val)}}
        self.validation_ = self._validate(val, generator)
        return self

    def _fit_latent_density(self, images: torch.Tensor):
        from sklearn.covariance import LedoitWolf

        z = self._forward(images)["z"].double().numpy()
        estimate = LedoitWolf().fit(z)
        self.latent_mean = torch.from_numpy(estimate.location_).float()
        self.latent_precision = torch.from_numpy(estimate.precision_).float()

    def _calibrate(self, val: torch.Tensor):
        parts = self._forward(val)
        c, l = parts["classifier"], parts["latent"]
        self.calibration = torch.tensor([c.mean(), c.std().clamp_min(1e-6), l.mean(), l.std().clamp_min(1e-6)])

    def _validate(self, val: torch.Tensor, generator: torch.Generator) -> dict:
        """AUROC of held-out in-distribution images against each synthetic outlier family."""
        in_scores = self.score(val)
        return {family: metrics.auroc(in_scores, self.score(apply_family(val, family, generator)))
                for family in families_for(self.in_channels)}

    # -- scoring ------------------------------------------------------------------------------
    def _check_fitted(self, method: str):
        if not self.fitted_:
            raise NotFittedError(f"{method}: this OODDetector is not fitted yet; call fit(train_images) "
                                 f"or OODDetector.load(path) first.")

    @torch.no_grad()
    def _forward(self, images: torch.Tensor, batch_size: int = 256) -> dict:
        """Per-image pieces: reconstruction, difference, z, classifier logit, latent distance."""
        self.autoencoder.eval()
        self.classifier.eval()
        pieces = {key: [] for key in ("reconstruction", "difference", "z", "classifier", "latent")}
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size].to(self.device)
            reconstruction, z = self.autoencoder(batch)
            difference = difference_image(batch, reconstruction)
            logits = self.classifier(difference, z)
            centred = z.cpu() - self.latent_mean
            pieces["latent"].append(((centred @ self.latent_precision) * centred).sum(1))
            for key, value in (("reconstruction", reconstruction), ("difference", difference), ("z", z),
                               ("classifier", logits)):
                pieces[key].append(value.float().cpu())
        return {key: torch.cat(value) for key, value in pieces.items()}

    def _combine(self, parts: dict) -> np.ndarray:
        c_mean, c_std, l_mean, l_std = self.calibration.tolist()
        score = (parts["classifier"] - c_mean) / c_std
        if self.latent_input:
            score = score + (parts["latent"] - l_mean) / l_std
        return score.double().numpy()

    def score(self, images, batch_size: int = 256) -> np.ndarray:
        """Out-of-distribution score per image, numpy float64 (N,): higher = more out-of-distribution."""
        self._check_fitted("score")
        return self._combine(self._forward(as_image_batch(images, self.in_channels), batch_size))

    def score_components(self, images, batch_size: int = 256) -> dict:
        """Every score from one pass through the networks, each numpy (N,), higher = more OOD:
        ``score`` (what :meth:`score` returns), ``classifier`` (the logit), ``latent`` (Mahalanobis
        distance of z), ``difference_l1`` / ``difference_l2`` (mean absolute / squared difference
        image); plus ``z``, the latent tensor (N, latent_dim)."""
        self._check_fitted("score_components")
        parts = self._forward(as_image_batch(images, self.in_channels), batch_size)
        return {"score": self._combine(parts),
                "classifier": parts["classifier"].double().numpy(), "latent": parts["latent"].double().numpy(),
                "difference_l1": parts["difference"].mean(dim=(1, 2, 3)).double().numpy(),
                "difference_l2": parts["difference"].pow(2).mean(dim=(1, 2, 3)).double().numpy(),
                "z": parts["z"]}

    def explain(self, images, batch_size: int = 256) -> dict:
        """Everything behind the score, for pictures: ``reconstruction`` and ``difference``
        (tensors N x C x 32 x 32), ``z`` (N x latent_dim) and ``score`` (numpy N)."""
        self._check_fitted("explain")
        parts = self._forward(as_image_batch(images, self.in_channels), batch_size)
        return {"reconstruction": parts["reconstruction"], "difference": parts["difference"],
                "z": parts["z"], "score": self._combine(parts)}

    # -- persistence --------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Save weights, latent density, calibration and config in one file (atomic write)."""
        self._check_fitted("save")
        return save_checkpoint({
            "format": DETECTOR_FORMAT, "version": 1, "config": self.config(),
            "autoencoder": self.autoencoder.state_dict(), "classifier": self.classifier.state_dict(),
            "latent_mean": self.latent_mean, "latent_precision": self.latent_precision,
            "calibration": self.calibration, "history": self.history_, "validation": self.validation_}, path)

    @classmethod
    def load(cls, path, in_channels: int | None = None, preset=None, device=None, progress: bool = True) -> "OODDetector":
        """Load a saved detector. ``in_channels`` / ``preset``, when given, must match the file."""
        payload = load_checkpoint(path, DETECTOR_FORMAT)
        config = payload["config"]
        if in_channels is not None and config["in_channels"] != in_channels:
            raise CheckpointError(f"'{path}' was saved for {config['in_channels']} channel(s); expected {in_channels}.")
        if preset is not None and config["preset"]["name"] != get_preset(preset).name:
            raise CheckpointError(f"'{path}' was saved with preset {config['preset']['name']!r}; expected "
                                  f"{get_preset(preset).name!r}.")
        fields = dict(config["preset"])
        fields["betas"], fields["milestones"] = tuple(fields["betas"]), tuple(fields["milestones"])
        detector = cls(config["in_channels"], Preset(**fields), config["seed"], config["latent_input"],
                       config["noise_augment"], config["inject_stage"], config["outlier_families"], device, progress)
        try:
            detector.autoencoder.load_state_dict(payload["autoencoder"])
            detector.classifier.load_state_dict(payload["classifier"])
        except RuntimeError as err:
            raise CheckpointError(f"'{path}': the weights do not fit the configuration stored with them "
                                  f"({str(err).splitlines()[0][:200]}).") from err
        detector.latent_mean, detector.latent_precision = payload["latent_mean"], payload["latent_precision"]
        detector.calibration = payload["calibration"]
        detector.history_, detector.validation_ = payload["history"], payload["validation"]
        detector.fitted_ = True
        return detector
