r"""The paper's detector (:class:`OODDetector`, with our additions behind their own switches) and
its first ingredient alone (:class:`AutoencoderDifferenceDetector`).

Fit: hold out a share of the images; train E and D on half of the rest (equation 1), then the
classifier on the other half (equation 2), so it never sees images the autoencoder memorised;
standardise the score on the held-out images. The classifier's "out" examples are synthetic,
made from in-distribution training images (:mod:`ood_helpers.outliers`): the paper does not say
what its negatives are, so every variant, the paper's included, uses these.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from . import runtime
from ._version import __version__
from .api import DEFAULT_BATCH_SIZE, BaseDetector, fingerprint, seeded, split_held_out
from .networks import AutoEncoder, new_autoencoder, new_classifier
from .noise import NoiseAugment
from .ours import RotationNet, fit_density, latent_bank, mahalanobis, nearest_latent_distance, rotation_loss
from .outliers import apply_family, check_families, families_for
from .presets import Preset, get_preset
from .steps import autoencoder_loss, classifier_batch, classifier_loss, difference_image
from .variants import get_variant, variant_of
from .validation import (DegenerateDataWarning, InputError, as_image_batch, check_batch_size, check_bool, check_int,
                         iter_image_batches)

__all__ = ["OODDetector", "AutoencoderDifferenceDetector", "ScoreCalibration", "split_for_stages",
           "train_autoencoder_stage", "fit_autoencoder", "new_autoencoder", "new_classifier", "build_detector"]

_SWITCH_HINTS = {"latent_input": "True injects z into the classifier (the paper's auxiliary input)",
                 "latent_distance": "True adds our nearest-latent distance to the score (the paper's score: this, "
                                    "latent_mahalanobis and difference_term False)",
                 "latent_mahalanobis": "True adds our two-sided Mahalanobis distance of z to the score",
                 "difference_term": "True adds our standardised mean difference to the score",
                 "noise_augment": "True trains with the paper's noise-addition augmentation",
                 "rotation_score": "True adds our rotation-prediction score (semantic novelty, notebook 08)"}
# the parameters that shape only the classifier stage and the score, never the autoencoder
CLASSIFIER_ONLY = ("latent_input", "latent_distance", "latent_mahalanobis", "difference_term", "rotation_score",
                   "inject_stage", "outlier_families", "threshold_quantile")


@dataclass(frozen=True)
class ScoreCalibration:
    """Held-out mean and standard deviation (> 0) of each part of the score; a part the detector
    does not have (our terms, in the paper's method) is None."""

    classifier_mean: float = 0.0
    classifier_std: float = 1.0
    latent_mean: float | None = None
    latent_std: float | None = None
    rotation_mean: float | None = None
    rotation_std: float | None = None
    difference_mean: float | None = None
    difference_std: float | None = None
    mahalanobis_centre: float | None = None   # the held-out mean of the squared distance, from which
    mahalanobis_mean: float | None = None     # |distance - centre| is measured (two-sided)
    mahalanobis_std: float | None = None

    def as_dict(self) -> dict:
        """The eleven numbers by name."""
        return asdict(self)


def split_for_stages(train: torch.Tensor, preset: Preset, generator: torch.Generator):
    """Cap the images at ``preset.train_limit`` (a seeded draw, kept in order), then halve them with
    a seeded permutation: (capped, the autoencoder's half, the classifier's half)."""
    if preset.train_limit is not None and len(train) > preset.train_limit:
        train = train[torch.randperm(len(train), generator=generator)[: preset.train_limit].sort().values]
    order = torch.randperm(len(train), generator=generator)
    return train, train[order[: len(train) // 2]], train[order[len(train) // 2:]]


def train_autoencoder_stage(images: torch.Tensor, in_channels: int, preset: Preset, generator: torch.Generator,
                            options: runtime.RunOptions, noise_augment: bool = True, **stage) -> tuple:
    """Build E and D and train them on ``images`` (N, C, 32, 32) with equation 1 (noise on the inputs
    with ``noise_augment``).

    ``stage``: the keyword arguments of :func:`ood_helpers.runtime.train_stage` (progress, state).
    Returns (the autoencoder in eval mode on ``options.device``, the mean loss per epoch).
    """
    autoencoder = new_autoencoder(in_channels, preset).to(options.device)
    noise = NoiseAugment(preset.noise_max_severity) if noise_augment else None
    data = images.to(options.device)

    def make_step(networks, generator):
        return lambda index: autoencoder_loss(networks[0], data[index], noise, generator)

    losses = runtime.train_stage(autoencoder, make_step, len(data), schedule=preset.schedule(preset.ae_epochs),
                                 generator=generator, options=options, name="autoencoder", **stage)
    return autoencoder, losses


def fit_autoencoder(images, in_channels=None, preset=None, seed: int = 0, noise_augment: bool = True,
                    held_out_fraction: float = 0.1, device=None, progress: bool = True) -> AutoEncoder:
    """Only the autoencoder that :meth:`OODDetector.fit` trains on ``images`` (same split and random
    stream, so the same network for every ``latent_input`` / ``latent_distance`` / ``difference_term``),
    without a classifier.

    images: (N, C, 32, 32) in-distribution training images, N >= 20.
    Raises InputError for bad images or arguments, TrainingDivergedError for a non-finite loss.
    """
    spec = OODDetector(in_channels=in_channels, preset=preset, seed=seed, noise_augment=noise_augment,
                       held_out_fraction=held_out_fraction, device=device, progress=progress)
    spec._check_params()
    images = as_image_batch(images, in_channels, "images")
    if len(images) < spec.min_train_images:
        raise InputError(f"images: expected at least {spec.min_train_images} training images to fit, got "
                         f"{len(images)}.")
    preset, options = get_preset(preset), spec._run_options()
    with torch.enable_grad(), seeded(seed) as generator:
        train, _ = split_held_out(images, held_out_fraction, generator)
        _, ae_part, _ = split_for_stages(train, preset, generator)
        autoencoder, _ = train_autoencoder_stage(ae_part, images.shape[1], preset, generator, options, noise_augment,
                                                 progress=progress)
    return autoencoder


def autoencoder_identity(identity: dict) -> dict:
    """The part of a run's identity that shapes its autoencoder: variants that agree on it (e.g.
    ``paper`` and ``ours`` of one seed) share one saved autoencoder state in a ``work_dir``."""
    config = {key: value for key, value in identity["config"].items() if key not in CLASSIFIER_ONLY}
    return {**{key: value for key, value in identity.items() if key != "variant"}, "config": config,
            "stage": "autoencoder"}


class OODDetector(BaseDetector):
    r"""The paper's detector: autoencoder + difference-image classifier with z as auxiliary input,
    plus, behind their own switches, our two latent distances, difference term and rotation score.

    :mod:`ood_helpers.variants` names the combinations (``paper``, ``paper-no-aux``,
    ``paper-no-noise``, ``ours``, ...); the defaults are ``ours``.

    Parameters
    ----------
    in_channels : {1, 3} or None (None: from the training images)
    preset : "quick", "classroom", "paper", a Preset, or None (``$OOD_PRESET``, else classroom)
    seed : int in [0, 2**32 - 1]; same seed, preset and machine give the same scores
    latent_input : bool, the paper's auxiliary input z (False: Table 3 "w/o auxiliary input")
    latent_distance : bool, ours: add the distance of z to its nearest training latent to the score
    latent_mahalanobis : bool, ours: add the two-sided Mahalanobis distance of z to the score
    difference_term : bool, ours: add the mean ``|x - D(E(x))|`` (the autoencoder's own score)
    noise_augment : bool, the paper's noise augmentation (False: Table 3 "w/o data augmentation")
    rotation_score : bool, ours: add the rotation network's feature distance (notebook 08)
    inject_stage : {1, 2, 3, 4}, the classifier stage after which z enters
    outlier_families : names from ``outliers.OUTLIER_FAMILIES`` or None (every family), ours
    threshold_quantile : float in (0, 1], share of held-out images ``predict`` keeps "in"
    held_out_fraction : float in (0, 0.5), images held out to standardise the score
    device, precision, compile_step, progress : how it runs (:mod:`ood_helpers.runtime`)

    Notes
    -----
    .. math::

        s(x) = \frac{c(|x - D(z)|, z) - \mu_c}{\sigma_c}
               + \underbrace{\frac{\min_j \lVert \hat z - \hat z_j \rVert - \mu_n}{\sigma_n}}_{\text{ours: latent\_distance}}
               + \underbrace{\frac{|m(z) - \bar m| - \mu_m}{\sigma_m}}_{\text{ours: latent\_mahalanobis}}

    with :math:`c` the classifier's logit, :math:`\hat z = z / \lVert z \rVert`, :math:`\hat z_j` the
    unit-length latents of the classifier's training images, :math:`m(z)` the squared Mahalanobis
    distance of z from the Gaussian (Ledoit-Wolf) of those latents, and :math:`\bar m` and each
    :math:`\mu, \sigma` the mean and standard deviation on held-out images. ``difference_term``
    adds the mean ``|x - D(z)|``, standardised the same way. With none of our terms the score is a
    monotone function of the paper's classifier output.
    """

    name = "ours"

    def __init__(self, in_channels=None, preset=None, seed=0, latent_input=True, latent_distance=True,
                 noise_augment=True, rotation_score=False, difference_term=False, latent_mahalanobis=True,
                 inject_stage=2,
                 outlier_families=None, threshold_quantile=0.95, held_out_fraction=0.1, device=None,
                 precision="auto", compile_step="auto", progress=True):
        self.in_channels = in_channels
        self.preset = preset
        self.seed = seed
        self.latent_input = latent_input
        self.latent_distance = latent_distance
        self.noise_augment = noise_augment
        self.rotation_score = rotation_score
        self.difference_term = difference_term
        self.latent_mahalanobis = latent_mahalanobis
        self.inject_stage = inject_stage
        self.outlier_families = outlier_families
        self.threshold_quantile = threshold_quantile
        self.held_out_fraction = held_out_fraction
        self.device = device
        self.precision = precision
        self.compile_step = compile_step
        self.progress = progress

    # -- validation -------------------------------------------------------------------------------
    def _check_params(self):
        super()._check_params()
        get_preset(self.preset)
        for switch, hint in _SWITCH_HINTS.items():
            check_bool(getattr(self, switch), switch, hint + "; or pick a named variant with "
                                                             "ood_helpers.variants.build_detector")
        check_int(self.inject_stage, "inject_stage", 1, 4, example=2)
        check_families(self.outlier_families, self.in_channels or 3, "outlier_families")
        self._run_options()

    def _run_options(self) -> runtime.RunOptions:
        return runtime.run_options(self.device, self.precision, self.compile_step)

    def run_config(self) -> dict:
        """The parameters that shape the result (not how it runs: device, precision, compile, progress)."""
        params = self.get_params()
        for key in ("device", "precision", "compile_step", "progress"):
            params.pop(key)
        params["preset"] = get_preset(self.preset).as_dict()
        if params["outlier_families"] is not None:
            params["outlier_families"] = list(check_families(params["outlier_families"], params["in_channels"] or 3))
        return params

    # -- training ---------------------------------------------------------------------------------
    def fit(self, images, y=None, work_dir=None, on_epoch_end=None) -> "OODDetector":
        """Train on in-distribution images only (N >= 20, see :meth:`ood_helpers.api.BaseDetector.fit`).

        ``work_dir``: keep each stage's training state there after every epoch and resume from it
        (presets with ``checkpoint_every_epoch``; files named by the run's identity).
        ``on_epoch_end(epoch, mean_loss)`` is called after every epoch of every network.
        Raises InputError for bad images or arguments, TrainingDivergedError for a non-finite loss.
        """
        return super().fit(images, y, work_dir=work_dir, on_epoch_end=on_epoch_end)

    def _fit(self, train, held_out, generator, work_dir=None, on_epoch_end=None):
        preset = self.preset_ = get_preset(self.preset)
        options = self._run_options()
        self.device_ = options.device
        self.outlier_families_ = check_families(self.outlier_families, self.in_channels_, "outlier_families")
        train, ae_part, clf_part = split_for_stages(train, preset, generator)
        self.run_identity_ = {"config": self.run_config(), "variant": variant_of(self), "in_channels": self.in_channels_,
                              "train_images": fingerprint(train), "held_out_images": fingerprint(held_out),
                              "n_train": len(train), "ood_helpers": __version__, "training": options.as_dict()}
        seconds = {"autoencoder": [], "classifier": []}

        def stage(name, identity):
            state = None
            if work_dir is not None and preset.checkpoint_every_epoch:
                from .checkpoints import state_file

                state = state_file(work_dir, name, identity)
            return dict(progress=self.progress, state_path=state, identity=identity,
                        hooks=[runtime.EpochCallback(on_epoch_end, seconds.setdefault(name, []))])

        start = time.perf_counter()
        # stage 1: E and D (the same for every latent_input / latent_distance / difference_term)
        ae_identity = autoencoder_identity(self.run_identity_)
        self.autoencoder_, ae_loss = train_autoencoder_stage(ae_part, self.in_channels_, preset, generator, options,
                                                             self.noise_augment, **stage("autoencoder", ae_identity))
        # stage 2: the classifier on the difference image (and z with latent_input)
        self.classifier_ = new_classifier(self.in_channels_, preset, self.latent_input, self.inject_stage)
        self.classifier_.to(self.device_)
        noise = NoiseAugment(preset.noise_max_severity) if self.noise_augment else None
        data, families = clf_part.to(self.device_), self.outlier_families_

        def classifier_step(networks, generator):
            def step(index):
                batch, labels = classifier_batch(data, index, families, noise, generator)
                return classifier_loss(networks[0], networks[1], batch, labels)
            return step

        clf_loss = runtime.train_stage(self.classifier_, classifier_step, len(data), generator=generator,
                                       schedule=preset.schedule(preset.clf_epochs), options=options,
                                       name="classifier", frozen=(self.autoencoder_,),
                                       **stage("classifier", self.run_identity_))
        # ours: the latents of the classifier's training images, kept (latent_distance) or fitted
        # with one Gaussian (latent_mahalanobis)
        self.latent_bank_ = self.latent_mean_ = self.latent_precision_ = None
        if self.latent_distance:
            self.latent_bank_ = latent_bank(self.autoencoder_.eval().encoder, clf_part.to(self.device_),
                                            generator=generator)
        if self.latent_mahalanobis:
            self.latent_mean_, self.latent_precision_ = fit_density(self.autoencoder_.eval().encoder,
                                                                    clf_part.to(self.device_))
        # ours, only with rotation_score: the rotation network, on every training image
        self.rotation_net_ = self.rotation_mean_ = self.rotation_precision_ = rotation_ce = None
        if self.rotation_score:
            self.rotation_net_ = RotationNet(self.in_channels_, preset.width, preset.stem).to(self.device_)
            rotation_data = train.to(self.device_)

            def rotation_step(networks, generator):
                return lambda index: rotation_loss(networks[0], rotation_data[index], noise, generator)

            rotation_ce = runtime.train_stage(self.rotation_net_, rotation_step, len(rotation_data),
                                              schedule=preset.schedule(preset.rotation_epochs), generator=generator,
                                              options=options, name="rotation", **stage("rotation", self.run_identity_))
            self.rotation_mean_, self.rotation_precision_ = fit_density(self.rotation_net_.eval().trunk, rotation_data)
        self._calibrate(held_out)
        self.history_ = {"autoencoder_l1": ae_loss, "classifier_ce": clf_loss, "rotation_ce": rotation_ce,
                         "train_seconds": time.perf_counter() - start, "epoch_seconds": seconds,
                         "n_images": {"autoencoder": len(ae_part), "classifier": len(clf_part),
                                      "held_out": len(held_out)}, "training": options.as_dict()}
        in_scores = self.held_out_scores_["score"]
        self.validation_ = {}
        for family in families_for(self.in_channels_):   # held-out images turned into each family
            out_scores = self._decision(apply_family(held_out, family, generator))
            labels = np.r_[np.zeros(len(in_scores)), np.ones(len(out_scores))]
            self.validation_[family] = float(roc_auc_score(labels, np.r_[in_scores, out_scores]))

    def _calibrate(self, held_out: torch.Tensor):
        """Standardise each part of the score on the held-out images."""
        self.calibration_ = ScoreCalibration(*(0.0, 1.0) * 4, 0.0, 0.0, 1.0)   # every part, unscaled, to measure them
        held = self.score_components(held_out, _fitted_check=False)
        if self.latent_mahalanobis:   # two-sided: atypically close to the mean of z counts too
            centre = float(held["mahalanobis"].mean())
            held["two_sided"] = np.abs(held["mahalanobis"] - centre)

        def mean_std(key):
            std = float(held[key].std())
            if std < 1e-6:   # floored below: scores would be multiples of 1e6, the threshold meaningless
                warnings.warn(f"the held-out {key} scores have no spread (standard deviation {std:.3g}): the "
                              f"networks did not learn to tell these training images apart, so scores and "
                              f"threshold_ carry no information. Fit on more varied in-distribution images.",
                              DegenerateDataWarning, stacklevel=5)
            return float(held[key].mean()), max(std, 1e-6)

        self.calibration_ = ScoreCalibration(*mean_std("classifier"),
                                             *(mean_std("latent") if self.latent_distance else (None, None)),
                                             *(mean_std("rotation") if self.rotation_score else (None, None)),
                                             *(mean_std("difference_l1") if self.difference_term else (None, None)),
                                             *((centre,) + mean_std("two_sided") if self.latent_mahalanobis
                                               else (None, None, None)))
        keys = ("classifier",) + ("latent",) * bool(self.latent_distance) + ("mahalanobis",) * bool(
            self.latent_mahalanobis) + ("rotation",) * bool(self.rotation_score) + ("difference_l1",)
        self.held_out_scores_ = {"score": self._combine(held), **{key: held[key] for key in keys}}

    # -- scoring ----------------------------------------------------------------------------------
    @torch.no_grad()
    def _parts(self, batch: torch.Tensor) -> dict:
        """Every per-image piece of one batch (tensors on the CPU)."""
        self.autoencoder_.eval(), self.classifier_.eval()
        batch = batch.to(self.device_)
        reconstruction, z = self.autoencoder_(batch)
        difference = difference_image(batch, reconstruction)
        parts = {"reconstruction": reconstruction.float().cpu(), "difference": difference.float().cpu(),
                 "z": z.float().cpu(), "classifier": self.classifier_(difference, z).float().cpu(),
                 "difference_l1": difference.float().mean(dim=(1, 2, 3)).cpu()}
        if self.params_["latent_distance"]:
            parts["latent"] = nearest_latent_distance(z, self.latent_bank_)
        if self.params_["latent_mahalanobis"]:
            parts["mahalanobis"] = mahalanobis(z, self.latent_mean_, self.latent_precision_)
        if self.params_["rotation_score"]:
            features = self.rotation_net_.eval().trunk(batch)
            parts["rotation"] = mahalanobis(features, self.rotation_mean_, self.rotation_precision_)
        return parts

    def _combine(self, parts: dict) -> np.ndarray:
        """The score: the standardised logit (the paper's), plus our standardised terms where switched on."""
        c = self.calibration_

        def standardised(key, mean, std):
            return (np.asarray(parts[key], np.float64) - mean) / std

        score = standardised("classifier", c.classifier_mean, c.classifier_std)
        if self.params_["latent_distance"]:
            score = score + standardised("latent", c.latent_mean, c.latent_std)
        if self.params_["latent_mahalanobis"]:
            two_sided = np.abs(np.asarray(parts["mahalanobis"], np.float64) - c.mahalanobis_centre)
            score = score + (two_sided - c.mahalanobis_mean) / c.mahalanobis_std
        if self.params_["difference_term"]:
            score = score + standardised("difference_l1", c.difference_mean, c.difference_std)
        if self.params_["rotation_score"]:
            score = score + standardised("rotation", c.rotation_mean, c.rotation_std)
        return score

    def _decision_batch(self, batch):
        return self._combine(self._parts(batch))

    def score_components(self, images, batch_size: int = DEFAULT_BATCH_SIZE, _fitted_check: bool = True) -> dict:
        """Every part of the score from one pass, batch by batch: numpy (N,) arrays ``score``,
        ``classifier`` (the logit), ``difference_l1`` / ``difference_l2`` (mean ``|difference|`` and
        squared difference), ``latent`` (nearest-latent distance), ``mahalanobis`` (squared, one-sided)
        and ``rotation`` (ours, when switched on), and ``z``, a tensor (N, latent_dim).
        Raises NotFittedError, InputError."""
        if _fitted_check:
            self._check_fitted("score_components")
        batch_size = check_batch_size(batch_size)
        keys = ("classifier",) + ("latent",) * bool(self.params_["latent_distance"]) + ("mahalanobis",) * bool(
            self.params_["latent_mahalanobis"]) + ("rotation",) * bool(self.params_["rotation_score"]) + (
            "difference_l1", "difference_l2", "z")
        pieces = {key: [] for key in keys}
        for batch in iter_image_batches(images, self.in_channels_, "images", batch_size):
            parts = self._parts(batch)
            parts["difference_l2"] = parts.pop("difference").pow(2).mean(dim=(1, 2, 3))
            for key in keys:
                pieces[key].append(parts[key])
        out = {key: torch.cat(value).double().numpy() for key, value in pieces.items() if key != "z"}
        out["z"] = torch.cat(pieces["z"])
        out["score"] = self._combine(out)
        return out

    def explain(self, images, batch_size: int = DEFAULT_BATCH_SIZE) -> dict:
        """For pictures of a few images: ``reconstruction`` and ``difference`` (N, C, 32, 32),
        ``z`` (N, latent_dim), ``score`` (numpy (N,)); memory grows with N. Raises NotFittedError, InputError."""
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

    def _restore(self, state: dict, device) -> "OODDetector":
        """Set the fitted state from a :func:`~ood_helpers.persistence.read_detector_file` payload."""
        self._check_params()
        self.params_ = self.get_params()
        channels, p = state["in_channels"], state["config"]["preset"]
        self.in_channels_, self.preset_, self.device_ = channels, p, device
        self.outlier_families_ = tuple(state["config"]["outlier_families"])
        self.autoencoder_ = new_autoencoder(channels, p)
        self.classifier_ = new_classifier(channels, p, self.latent_input, self.inject_stage)
        self.autoencoder_.load_state_dict(state["autoencoder"])
        self.classifier_.load_state_dict(state["classifier"])
        self.autoencoder_.to(device).eval(), self.classifier_.to(device).eval()
        self.rotation_net_ = self.rotation_mean_ = self.rotation_precision_ = None
        if self.rotation_score:
            self.rotation_net_ = RotationNet(channels, p.width, p.stem)
            self.rotation_net_.load_state_dict(state["rotation_net"])
            self.rotation_net_.to(device).eval()
            self.rotation_mean_ = state["rotation_mean"].float()
            self.rotation_precision_ = state["rotation_precision"].float()
        self.latent_bank_ = state["latent_bank"].float() if self.latent_distance else None
        self.latent_mean_ = state["latent_mean"].float() if self.latent_mahalanobis else None
        self.latent_precision_ = state["latent_precision"].float() if self.latent_mahalanobis else None
        self.calibration_ = ScoreCalibration(**state["calibration"])
        self.threshold_ = float(state["threshold"])
        self.held_out_scores_ = {key: value.numpy() for key, value in state["held_out_scores"].items()}
        self.run_identity_, self.history_ = state["run_identity"], state["history"]
        self.validation_, self.n_train_ = state["validation"], state["n_train"]
        self.train_fingerprint_ = str(state["train_fingerprint"])
        return self

    # -- files: written and read by ood_helpers.persistence ---------------------------------------
    def save(self, path):
        """Save the fitted detector to one file, atomically, with a content hash (see :mod:`ood_helpers.persistence`).

        Raises NotFittedError before ``fit``, CheckpointWriteError when the file cannot be written."""
        from .persistence import save_detector

        return save_detector(self, path)

    @classmethod
    def load(cls, path, in_channels=None, preset=None, device=None, progress: bool = True) -> "OODDetector":
        """A detector saved by :meth:`save`, its networks on ``device``.

        Raises FileNotFoundError, CheckpointError (the file and the reason), InputError (a missing device)."""
        from .persistence import load_detector

        return load_detector(cls, path, in_channels, preset, device, progress)

    @classmethod
    def load_autoencoder(cls, path, in_channels=None, preset=None, device=None) -> AutoEncoder:
        """Only the autoencoder of a detector file, verified like :meth:`load`.

        Raises FileNotFoundError, CheckpointError, InputError, as :meth:`load` does."""
        from .persistence import load_autoencoder

        return load_autoencoder(path, in_channels, preset, device)


def build_detector(variant, in_channels=None, preset=None, seed: int = 0, progress: bool = True,
                   device=None) -> OODDetector:
    """An unfitted :class:`OODDetector` with the switches of ``variant`` (a key of
    :data:`ood_helpers.variants.VARIANTS`). Raises InputError for an unknown variant."""
    return OODDetector(in_channels=in_channels, preset=preset, seed=seed, progress=progress, device=device,
                       **get_variant(variant).flags)


class AutoencoderDifferenceDetector(BaseDetector):
    r"""The paper's first ingredient alone: :math:`s(x) = \frac{1}{CHW}\sum |x - D(E(x))|`, E and D
    trained with equation 1 as in :class:`OODDetector` (same parameters)."""

    name = "autoencoder difference"

    def __init__(self, in_channels=None, preset=None, seed=0, noise_augment=True, threshold_quantile=0.95,
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
        check_bool(self.noise_augment, "noise_augment", _SWITCH_HINTS["noise_augment"])
        runtime.pick_device(self.device)

    def _fit(self, train, held_out, generator):
        preset = self.preset_ = get_preset(self.preset)
        options = runtime.run_options(self.device)
        self.device_ = options.device
        if preset.train_limit is not None and len(train) > preset.train_limit:
            train = train[torch.randperm(len(train), generator=generator)[: preset.train_limit].sort().values]
        start = time.perf_counter()
        self.autoencoder_, losses = train_autoencoder_stage(train, self.in_channels_, preset, generator, options,
                                                            self.noise_augment, progress=self.progress)
        self.history_ = {"autoencoder_l1": losses, "train_seconds": time.perf_counter() - start}

    @torch.no_grad()
    def _decision_batch(self, batch):
        batch = batch.to(self.device_)
        reconstruction, _ = self.autoencoder_.eval()(batch)
        return difference_image(batch, reconstruction).mean(dim=(1, 2, 3)).float().cpu()

    @classmethod
    def from_detector(cls, detector: OODDetector) -> "AutoencoderDifferenceDetector":
        """The difference score of a fitted :class:`OODDetector`'s own autoencoder, without training;
        ``threshold_`` from its held-out images. Raises InputError, NotFittedError."""
        if not isinstance(detector, OODDetector):
            raise InputError(f"detector: expected a fitted OODDetector, got {type(detector).__name__}.")
        detector._check_fitted("AutoencoderDifferenceDetector.from_detector")
        fitted = detector.params_
        new = cls(**{key: fitted[key] for key in ("in_channels", "preset", "seed", "noise_augment", "threshold_quantile",
                                                  "held_out_fraction", "device", "progress")})
        new.params_ = new.get_params()
        new.in_channels_, new.preset_, new.device_ = detector.in_channels_, detector.preset_, detector.device_
        new.autoencoder_ = detector.autoencoder_
        new.n_train_, new.train_fingerprint_ = dict(detector.n_train_), detector.train_fingerprint_
        new.history_ = {"autoencoder_l1": detector.history_["autoencoder_l1"],
                        "train_seconds": detector.history_["train_seconds"], "shared_with": "OODDetector"}
        new.threshold_ = float(np.quantile(detector.held_out_scores_["difference_l1"], fitted["threshold_quantile"],
                                           method="higher"))
        return new
