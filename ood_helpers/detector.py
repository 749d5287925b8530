r"""The paper's detector (:class:`OODDetector`) and its first ingredient alone
(:class:`AutoencoderDifferenceDetector`), both on the one interface of :mod:`ood_helpers.api`.

The paper: an autoencoder E, D is trained on in-distribution images with the L1 loss
(equation 1); the difference image :math:`|I - D(E(I))|` goes into a binary classifier (equation 2)
that also receives the latent :math:`z = E(I)` after an intermediate stage; noise augmentation
makes it robust to noisy inputs. The paper does not say where the classifier's "out" examples
come from; here they are synthetic, made from in-distribution training images
(:mod:`ood_helpers.outliers`), so no real outlier is ever seen.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from . import distributed, metrics
from .api import DEFAULT_BATCH_SIZE, BaseDetector, NotFittedError, fingerprint
from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .models import AutoEncoder, DifferenceClassifier
from .noise import NoiseAugment
from .outliers import apply_family, families_for
from .presets import Preset, get_preset
from .training import (difference_image, pick_device, state_file, train_autoencoder, train_classifier,
                       training_plan)
from .validation import InputError, check_batch_size, iter_image_batches

DETECTOR_FORMAT = "ood_helpers.detector"
DETECTOR_VERSION = 2
AE_DIFFERENCE_FORMAT = "ood_helpers.autoencoder_difference"

__all__ = ["OODDetector", "AutoencoderDifferenceDetector", "ScoreCalibration", "NotFittedError"]


@dataclass(frozen=True)
class ScoreCalibration:
    """How the two parts of the score are put on one scale: mean and standard deviation of the
    classifier logit and of the latent Mahalanobis distance on held-out in-distribution images."""

    classifier_mean: float = 0.0
    classifier_std: float = 1.0
    latent_mean: float = 0.0
    latent_std: float = 1.0

    def as_dict(self) -> dict:
        """The four numbers by name."""
        return asdict(self)


def _package_version() -> str:
    from . import __version__

    return __version__


def _check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name}: expected True or False, got {value!r}.")
    return bool(value)


def _preset_from_dict(fields: dict, path) -> Preset:
    known = set(Preset.__dataclass_fields__)
    extra, missing = sorted(set(fields) - known), sorted(known - set(fields))
    if extra or missing:
        raise CheckpointError(f"'{path}': its preset has fields {extra or ''} unknown to this ood_helpers"
                              f"{' and lacks ' + str(missing) if missing else ''}; it was written by another "
                              f"version of ood_helpers. Fix: retrain, or use the ood_helpers that wrote it.")
    fields = dict(fields, betas=tuple(fields["betas"]), milestones=tuple(fields["milestones"]))
    return Preset(**fields)


def _require(payload: dict, keys, path):
    missing = [key for key in keys if key not in payload]
    if missing:
        raise CheckpointError(f"'{path}' lacks {', '.join(map(repr, missing))}: it is not a complete detector "
                              f"file. Fix: delete it and retrain.")


class OODDetector(BaseDetector):
    r"""Autoencoder + difference-image classifier with the latent z as auxiliary input (the paper),
    plus our latent-distance term.

    Parameters
    ----------
    in_channels : {1, 3} or None
        Channels of the images (1 MNIST-like, 3 CIFAR-like); None takes them from the training
        images. Images are (N, in_channels, 32, 32), float in [0, 1] or uint8 0-255.
    preset : {"quick", "classroom", "paper"}, Preset or None
        Network sizes and training schedule (:mod:`ood_helpers.presets`); None = ``$OOD_PRESET``,
        else ``classroom`` (GPU or not).
    seed : int >= 0
        Seeds weights, data order, outliers and noise: same seed + preset + machine = same scores.
    latent_input : bool
        Feed z into the classifier and add the latent distance to the score (False = the
        paper's ablation "w/o auxiliary input").
    noise_augment : bool
        Noise-addition augmentation on the autoencoder's inputs and on both classifier classes
        (False = the paper's ablation "w/o noise augmentation").
    inject_stage : {1, 2, 3, 4}
        The classifier stage after which z is added.
    outlier_families : sequence of str or None
        Names from :data:`ood_helpers.outliers.OUTLIER_FAMILIES` used as the classifier's "out"
        class (None = every family that applies to the channels).
    threshold_quantile : float in (0, 1]
        ``threshold_`` keeps this share of held-out in-distribution images "in" (default 0.95).
    held_out_fraction : float in (0, 0.5)
        Share of the training images held out to standardise the score, set ``threshold_`` and
        validate against each synthetic outlier family.
    device : str, torch.device or None
        None = CUDA, else Apple MPS, else CPU.
    progress : bool
        tqdm progress bars while training.

    Attributes
    ----------
    autoencoder_ : ood_helpers.models.AutoEncoder
    classifier_ : ood_helpers.models.DifferenceClassifier
    latent_mean_ : torch.Tensor (latent_dim,)
    latent_precision_ : torch.Tensor (latent_dim, latent_dim)
        Ledoit-Wolf estimate of the inverse covariance of z on the classifier's training images.
    calibration_ : ScoreCalibration
    threshold_ : float
    preset_ : Preset
    outlier_families_ : tuple of str
    history_ : dict
        Losses per epoch, seconds per epoch, image counts, train seconds.
    validation_ : dict
        Held-out AUROC against each synthetic outlier family.
    held_out_scores_ : dict of numpy arrays
        ``score``, ``classifier``, ``latent`` and ``difference_l1`` on the held-out images.
    run_identity_ : dict
        Everything that defines the run, with fingerprints of the training and held-out images.

    Notes
    -----
    The score of an image :math:`x` with :math:`z = E(x)` is

    .. math::

        s(x) = \frac{c(|x - D(z)|, z) - \mu_c}{\sigma_c}
               + \underbrace{\frac{(z - \mu_z)^\top \Sigma_z^{-1} (z - \mu_z) - \mu_m}{\sigma_m}}_{\text{ours, only with latent\_input}}

    where :math:`c` is the classifier's logit (the paper's Figure 2), :math:`\mu_z, \Sigma_z` the
    mean and Ledoit-Wolf covariance of training latents (our addition), and
    :math:`\mu_c, \sigma_c, \mu_m, \sigma_m` the :class:`ScoreCalibration`. Higher = more
    out-of-distribution.
    """

    name = "ours"

    def __init__(self, in_channels=None, preset="quick", seed=0, latent_input=True, noise_augment=True,
                 inject_stage=2, outlier_families=None, threshold_quantile=0.95, held_out_fraction=0.1,
                 device=None, progress=True):
        self.in_channels = in_channels
        self.preset = preset
        self.seed = seed
        self.latent_input = latent_input
        self.noise_augment = noise_augment
        self.inject_stage = inject_stage
        self.outlier_families = outlier_families
        self.threshold_quantile = threshold_quantile
        self.held_out_fraction = held_out_fraction
        self.device = device
        self.progress = progress

    # -- validation -------------------------------------------------------------------------------
    def _check_params(self):
        super()._check_params()
        get_preset(self.preset)
        _check_bool(self.latent_input, "latent_input")
        _check_bool(self.noise_augment, "noise_augment")
        if isinstance(self.inject_stage, bool) or self.inject_stage not in (1, 2, 3, 4):
            raise InputError(f"inject_stage: expected 1, 2, 3 or 4, got {self.inject_stage!r}.")
        pick_device(self.device)

    def _families(self, channels: int) -> tuple:
        available = families_for(channels)
        if self.outlier_families is None:
            return available
        chosen = (self.outlier_families,) if isinstance(self.outlier_families, str) else tuple(self.outlier_families)
        unknown = [family for family in chosen if family not in available]
        if unknown or not chosen:
            raise InputError(f"outlier_families: expected a non-empty selection of {available} for {channels} "
                             f"channel(s), got {self.outlier_families!r}.")
        return chosen

    def run_config(self) -> dict:
        """The parameters that shape the result (everything but ``device`` and ``progress``)."""
        params = self.get_params()
        params.pop("device"), params.pop("progress")
        params["preset"] = get_preset(self.preset).as_dict()
        if params["outlier_families"] is not None:
            params["outlier_families"] = list(self._families(params["in_channels"] or 3))
        return params

    # -- training ---------------------------------------------------------------------------------
    def fit(self, images, y=None, work_dir=None, on_epoch_end=None) -> "OODDetector":
        """Train on in-distribution images only (see :meth:`ood_helpers.api.BaseDetector.fit`).

        The images are split three ways (seeded): ``held_out_fraction`` is held out; of the
        rest, half trains the autoencoder and half the classifier and the latent density
        (disjoint, so the classifier never sees images the autoencoder memorised).

        Parameters
        ----------
        images : (N, C, 32, 32) in-distribution training images, N >= 20.
        y : None
        work_dir : path or None
            Keep the training state there after every epoch and resume from it after a restart
            (presets with ``checkpoint_every_epoch``). State files are named by the run's
            identity, so a run with another seed, preset, switch or training set never reuses them.
        on_epoch_end : callable or None
            ``on_epoch_end(epoch, mean_loss)`` after every epoch of either network.

        Returns
        -------
        self

        Raises
        ------
        InputError
            Bad images or constructor arguments.
        TrainingDivergedError
            A training loss became NaN or infinite (nothing is fitted then).
        """
        return super().fit(images, y, work_dir=work_dir, on_epoch_end=on_epoch_end)

    def _fit(self, train, held_out, generator, work_dir=None, on_epoch_end=None):
        preset = self.preset_ = get_preset(self.preset)
        self.device_ = pick_device(self.device)
        self.outlier_families_ = self._families(self.in_channels_)
        if preset.train_limit is not None and len(train) > preset.train_limit:
            keep = torch.randperm(len(train), generator=generator)[: preset.train_limit].sort().values
            train = train[keep]
        order = torch.randperm(len(train), generator=generator)
        ae_part, clf_part = train[order[: len(train) // 2]], train[order[len(train) // 2:]]
        # the resolved training plan (fast or standard path, precision, compile, world size) shapes
        # the result too: a state saved by one plan is never resumed by another
        plan = training_plan(preset, self.device_)
        self.run_identity_ = {"config": self.run_config(), "in_channels": self.in_channels_,
                              "train_images": fingerprint(train), "held_out_images": fingerprint(held_out),
                              "n_train": len(train), "ood_helpers": _package_version(), "training": plan.as_dict()}
        progress = self.progress and distributed.is_main()   # under torchrun, rank 0 alone shows progress
        self.autoencoder_ = AutoEncoder(self.in_channels_, preset.width, preset.latent_dim, preset.stem).to(self.device_)
        self.classifier_ = DifferenceClassifier(self.in_channels_, preset.width, preset.latent_dim, preset.stem,
                                                bool(self.latent_input), self.inject_stage).to(self.device_)
        noise = NoiseAugment(preset.noise_max_severity) if self.noise_augment else None
        state = Path(work_dir) if work_dir is not None and preset.checkpoint_every_epoch else None

        start = time.perf_counter()
        epoch_seconds = {"autoencoder": [], "classifier": []}
        ae_loss = train_autoencoder(
            self.autoencoder_, ae_part, preset, generator, self.device_, noise,
            state_file(state, "autoencoder", self.run_identity_) if state else None, progress,
            _timed(epoch_seconds["autoencoder"], on_epoch_end), identity=self.run_identity_, plan=plan)
        clf_loss = train_classifier(
            self.classifier_, self.autoencoder_, clf_part, preset, generator, self.device_, noise,
            self.outlier_families_, state_file(state, "classifier", self.run_identity_) if state else None,
            progress, _timed(epoch_seconds["classifier"], on_epoch_end), identity=self.run_identity_, plan=plan)
        self._fit_latent_density(clf_part)
        self.calibration_ = ScoreCalibration()
        held = self.score_components(held_out, _fitted_check=False)
        self.calibration_ = ScoreCalibration(float(held["classifier"].mean()), max(float(held["classifier"].std()), 1e-6),
                                             float(held["latent"].mean()), max(float(held["latent"].std()), 1e-6))
        self.held_out_scores_ = {key: self._combine(held) if key == "score" else held[key]
                                 for key in ("score", "classifier", "latent", "difference_l1")}
        self.history_ = {"autoencoder_l1": ae_loss, "classifier_ce": clf_loss,
                         "train_seconds": time.perf_counter() - start, "epoch_seconds": epoch_seconds,
                         "n_images": {"autoencoder": len(ae_part), "classifier": len(clf_part),
                                      "held_out": len(held_out)}, "training": plan.as_dict()}
        self.validation_ = {family: metrics.auroc(self.held_out_scores_["score"],
                                                  self._decision(apply_family(held_out, family, generator)))
                            for family in families_for(self.in_channels_)}

    @torch.no_grad()
    def _fit_latent_density(self, images: torch.Tensor):
        from sklearn.covariance import LedoitWolf

        self.autoencoder_.eval()
        z = torch.cat([self.autoencoder_.encoder(batch.to(self.device_)).double().cpu()
                       for batch in images.split(DEFAULT_BATCH_SIZE)])
        estimate = LedoitWolf().fit(z.numpy())
        self.latent_mean_ = torch.from_numpy(estimate.location_).float()
        self.latent_precision_ = torch.from_numpy(estimate.precision_).float()

    # -- scoring ----------------------------------------------------------------------------------
    @torch.no_grad()
    def _parts(self, batch: torch.Tensor) -> dict:
        """Every per-image piece of one batch (tensors on the CPU)."""
        self.autoencoder_.eval(), self.classifier_.eval()
        batch = batch.to(self.device_)
        reconstruction, z = self.autoencoder_(batch)
        difference = difference_image(batch, reconstruction)
        logits = self.classifier_(difference, z).float().cpu()
        centred = z.float().cpu() - self.latent_mean_
        latent = ((centred @ self.latent_precision_) * centred).sum(1)
        return {"reconstruction": reconstruction.float().cpu(), "difference": difference.float().cpu(),
                "z": z.float().cpu(), "classifier": logits, "latent": latent}

    def _combine(self, parts: dict) -> np.ndarray:
        calibration = self.calibration_
        score = (np.asarray(parts["classifier"], np.float64) - calibration.classifier_mean) / calibration.classifier_std
        if self.latent_input:
            score = score + (np.asarray(parts["latent"], np.float64) - calibration.latent_mean) / calibration.latent_std
        return score

    def _decision_batch(self, batch):
        parts = self._parts(batch)
        return self._combine(parts)

    def score_components(self, images, batch_size: int = DEFAULT_BATCH_SIZE, _fitted_check: bool = True) -> dict:
        """Every score from one pass through the networks, batch by batch.

        Parameters
        ----------
        images : (N, C, 32, 32), float in [0, 1] or uint8.
        batch_size : int > 0

        Returns
        -------
        dict
            numpy float64 arrays (N,), higher = more out-of-distribution: ``score`` (what
            :meth:`decision_function` returns), ``classifier`` (the logit :math:`c`), ``latent``
            (Mahalanobis distance of z), ``difference_l1`` / ``difference_l2`` (mean absolute /
            squared difference image); and ``z``, a float32 tensor (N, latent_dim).

        Raises
        ------
        NotFittedError, InputError
        """
        if _fitted_check:
            self._check_fitted("score_components")
        batch_size = check_batch_size(batch_size)
        keys = ("classifier", "latent", "difference_l1", "difference_l2", "z")
        pieces = {key: [] for key in keys}
        for batch in iter_image_batches(images, self.in_channels_, "images", batch_size):
            parts = self._parts(batch)
            difference = parts.pop("difference")
            parts["difference_l1"] = difference.mean(dim=(1, 2, 3))
            parts["difference_l2"] = difference.pow(2).mean(dim=(1, 2, 3))
            for key in keys:
                pieces[key].append(parts[key])
        out = {key: torch.cat(value).double().numpy() for key, value in pieces.items() if key != "z"}
        out["z"] = torch.cat(pieces["z"])
        out["score"] = self._combine(out)
        return out

    def explain(self, images, batch_size: int = DEFAULT_BATCH_SIZE) -> dict:
        """Everything behind the score, for pictures of a handful of images.

        Returns
        -------
        dict
            ``reconstruction`` and ``difference`` (float tensors (N, C, 32, 32) in [0, 1]), ``z``
            (N, latent_dim) and ``score`` (numpy (N,)). Memory grows with N: use
            :meth:`decision_function` or :meth:`score_components` for many images.

        Raises
        ------
        NotFittedError, InputError
        """
        self._check_fitted("explain")
        batch_size = check_batch_size(batch_size)
        pieces = {key: [] for key in ("reconstruction", "difference", "z", "score")}
        for batch in iter_image_batches(images, self.in_channels_, "images", batch_size):
            parts = self._parts(batch)
            parts["score"] = torch.from_numpy(self._combine(parts))
            for key in pieces:
                pieces[key].append(parts[key])
        out = {key: torch.cat(value) for key, value in pieces.items()}
        out["score"] = out["score"].numpy()
        return out

    # -- persistence ------------------------------------------------------------------------------
    def save(self, path) -> Path:
        """Save weights, latent density, calibration, threshold and configuration in one file.

        The write is atomic (a temporary file, then a rename) and the file carries a content
        hash checked by :meth:`load`.

        Returns
        -------
        pathlib.Path

        Raises
        ------
        NotFittedError
        """
        self._check_fitted("save")
        params = self.get_params()
        params["preset"] = self.preset_.as_dict()
        params["device"] = None
        params["outlier_families"] = list(self.outlier_families_)
        return save_checkpoint({
            "format": DETECTOR_FORMAT, "version": DETECTOR_VERSION, "config": params,
            "in_channels": self.in_channels_, "run_identity": self.run_identity_,
            "autoencoder": self.autoencoder_.state_dict(), "classifier": self.classifier_.state_dict(),
            "latent_mean": self.latent_mean_, "latent_precision": self.latent_precision_,
            "calibration": self.calibration_.as_dict(), "threshold": self.threshold_,
            "held_out_scores": {key: torch.from_numpy(np.asarray(value)) for key, value in self.held_out_scores_.items()},
            "history": self.history_, "validation": self.validation_, "n_train": self.n_train_,
            "train_fingerprint": self.train_fingerprint_}, path)

    @classmethod
    def load(cls, path, in_channels: int | None = None, preset=None, device=None, progress: bool = True) -> "OODDetector":
        """Load a detector saved by :meth:`save`.

        Parameters
        ----------
        path : path of the file.
        in_channels, preset : optional expectations; the file must match them.
        device, progress : where to put the networks; whether later training shows progress.

        Returns
        -------
        OODDetector, fitted.

        Raises
        ------
        FileNotFoundError
            No file at ``path``.
        CheckpointError
            Unreadable, corrupted, foreign, incomplete or mismatching file (the message names
            the file and the reason).
        """
        payload = load_checkpoint(path, DETECTOR_FORMAT)
        if payload.get("version") != DETECTOR_VERSION:
            raise CheckpointError(f"'{path}' is a detector file of version {payload.get('version')!r}; this "
                                  f"ood_helpers reads version {DETECTOR_VERSION}. Fix: delete it and retrain.")
        _require(payload, ("config", "in_channels", "run_identity", "autoencoder", "classifier", "latent_mean",
                           "latent_precision", "calibration", "threshold", "held_out_scores", "history",
                           "validation", "n_train", "train_fingerprint"), path)
        config = dict(payload["config"])
        try:
            config["preset"] = _preset_from_dict(dict(config["preset"]), path)
            channels = int(payload["in_channels"])
            if in_channels is not None and channels != in_channels:
                raise CheckpointError(f"'{path}' was saved for {channels} channel(s); expected {in_channels}. "
                                      f"Fix: load the detector trained for these images.")
            if preset is not None and config["preset"].name != get_preset(preset).name:
                raise CheckpointError(f"'{path}' was saved with preset {config['preset'].name!r}; expected "
                                      f"{get_preset(preset).name!r}. Fix: load or train one for that preset.")
            detector = cls(**{**config, "device": device, "progress": progress})
            detector._check_params()
            detector.in_channels_, detector.preset_ = channels, config["preset"]
            detector.device_ = pick_device(device)
            detector.outlier_families_ = tuple(config["outlier_families"])
            p = detector.preset_
            detector.autoencoder_ = AutoEncoder(channels, p.width, p.latent_dim, p.stem)
            detector.classifier_ = DifferenceClassifier(channels, p.width, p.latent_dim, p.stem,
                                                        bool(detector.latent_input), detector.inject_stage)
            detector.autoencoder_.load_state_dict(payload["autoencoder"])
            detector.classifier_.load_state_dict(payload["classifier"])
            detector.autoencoder_.to(detector.device_).eval()
            detector.classifier_.to(detector.device_).eval()
            detector.latent_mean_ = payload["latent_mean"].float()
            detector.latent_precision_ = payload["latent_precision"].float()
            detector.calibration_ = ScoreCalibration(**payload["calibration"])
            detector.threshold_ = float(payload["threshold"])
            detector.held_out_scores_ = {key: value.numpy() for key, value in payload["held_out_scores"].items()}
            detector.run_identity_ = payload["run_identity"]
            detector.history_, detector.validation_ = payload["history"], payload["validation"]
            detector.n_train_ = payload["n_train"]
            detector.train_fingerprint_ = str(payload["train_fingerprint"])
        except CheckpointError:
            raise
        except (RuntimeError, TypeError, KeyError, ValueError, AttributeError, InputError) as err:
            message = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
            raise CheckpointError(f"'{path}': its contents do not form a detector of this ood_helpers ({message}). "
                                  f"Fix: delete it and retrain.") from err
        return detector


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


class AutoencoderDifferenceDetector(BaseDetector):
    r"""The paper's first ingredient alone: the mean absolute difference image as the score,

    .. math:: s(x) = \frac{1}{CHW} \sum |x - D(E(x))|,

    with E, D the ResNet-18 autoencoder of :class:`OODDetector` trained with the L1 loss (the
    paper's equation 1) on in-distribution images. Higher = worse reconstruction = more
    out-of-distribution.

    Parameters
    ----------
    in_channels, preset, seed, noise_augment, threshold_quantile, held_out_fraction, device, progress
        As for :class:`OODDetector`.

    Attributes
    ----------
    autoencoder_ : ood_helpers.models.AutoEncoder
    threshold_ : float
    history_ : dict
    """

    name = "autoencoder difference"

    def __init__(self, in_channels=None, preset="quick", seed=0, noise_augment=True, threshold_quantile=0.95,
                 held_out_fraction=0.1, device=None, progress=True):
        self.in_channels = in_channels
        self.preset = preset
        self.seed = seed
        self.noise_augment = noise_augment
        self.threshold_quantile = threshold_quantile
        self.held_out_fraction = held_out_fraction
        self.device = device
        self.progress = progress

    def _check_params(self):
        super()._check_params()
        get_preset(self.preset)
        _check_bool(self.noise_augment, "noise_augment")
        pick_device(self.device)

    def _fit(self, train, held_out, generator):
        preset = self.preset_ = get_preset(self.preset)
        self.device_ = pick_device(self.device)
        if preset.train_limit is not None and len(train) > preset.train_limit:
            train = train[torch.randperm(len(train), generator=generator)[: preset.train_limit].sort().values]
        self.autoencoder_ = AutoEncoder(self.in_channels_, preset.width, preset.latent_dim, preset.stem).to(self.device_)
        noise = NoiseAugment(preset.noise_max_severity) if self.noise_augment else None
        start = time.perf_counter()
        losses = train_autoencoder(self.autoencoder_, train, preset, generator, self.device_, noise,
                                   progress=self.progress)
        self.history_ = {"autoencoder_l1": losses, "train_seconds": time.perf_counter() - start}

    @torch.no_grad()
    def _decision_batch(self, batch):
        self.autoencoder_.eval()
        batch = batch.to(self.device_)
        reconstruction, _ = self.autoencoder_(batch)
        return difference_image(batch, reconstruction).mean(dim=(1, 2, 3)).float().cpu()

    @classmethod
    def from_detector(cls, detector: OODDetector) -> "AutoencoderDifferenceDetector":
        """The difference score of a fitted :class:`OODDetector`'s own autoencoder, without training.

        ``threshold_`` comes from the difference scores of the detector's held-out images.

        Raises
        ------
        NotFittedError
            When ``detector`` is not fitted.
        """
        if not isinstance(detector, OODDetector):
            raise InputError(f"detector: expected a fitted OODDetector, got {type(detector).__name__}.")
        detector._check_fitted("AutoencoderDifferenceDetector.from_detector")
        new = cls(in_channels=detector.in_channels, preset=detector.preset, seed=detector.seed,
                  noise_augment=detector.noise_augment, threshold_quantile=detector.threshold_quantile,
                  held_out_fraction=detector.held_out_fraction, device=detector.device, progress=detector.progress)
        new.in_channels_, new.preset_, new.device_ = detector.in_channels_, detector.preset_, detector.device_
        new.autoencoder_ = detector.autoencoder_
        new.n_train_, new.train_fingerprint_ = dict(detector.n_train_), detector.train_fingerprint_
        new.history_ = {"autoencoder_l1": detector.history_["autoencoder_l1"],
                        "train_seconds": detector.history_["train_seconds"], "shared_with": "OODDetector"}
        new.threshold_ = float(np.quantile(detector.held_out_scores_["difference_l1"], detector.threshold_quantile,
                                           method="higher"))
        return new

