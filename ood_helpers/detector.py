r"""The paper's detector and ours (:class:`OODDetector`, switched by its flags) and its first
ingredient alone (:class:`AutoencoderDifferenceDetector`), all on the one interface of
:mod:`ood_helpers.api`.

The paper: an autoencoder E, D is trained on in-distribution images with the L1 loss
(equation 1); the difference image :math:`|I - D(E(I))|` goes into a binary classifier (equation 2)
that also receives the latent :math:`z = E(I)` after an intermediate stage (``latent_input``);
noise augmentation makes it robust to noisy inputs (``noise_augment``). Ours adds the Mahalanobis
distance of z to the score (``latent_distance``; not in the paper). The named combinations live in
:mod:`ood_helpers.variants`.

The paper does not say where the classifier's "out" examples come from; here they are synthetic,
made from in-distribution training images (:mod:`ood_helpers.outliers`), so no real outlier is
ever seen. Every variant, the paper's method included, uses these negatives.

The autoencoder stage is reusable alone: :func:`split_for_stages` and
:func:`train_autoencoder_stage` are what :meth:`OODDetector.fit` runs before the classifier, and
:func:`fit_autoencoder` runs them with the detector's own split and random stream, so it returns
exactly the autoencoder a detector of the same seed, preset, noise switch and images has.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from . import distributed, metrics
from .api import DEFAULT_BATCH_SIZE, BaseDetector, NotFittedError, fingerprint, seeded, split_held_out
from .checkpoints import CheckpointError, load_checkpoint, save_checkpoint
from .models import AutoEncoder, DifferenceClassifier, RotationNet
from .noise import NoiseAugment
from .outliers import apply_family, families_for
from .presets import Preset, get_preset
from .training import (difference_image, pick_device, state_file, train_autoencoder, train_classifier,
                       train_rotation, training_plan)
from .validation import (DegenerateDataWarning, InputError, as_image_batch, check_batch_size, check_bool,
                         float32_default, iter_image_batches)
from .variants import variant_of

DETECTOR_FORMAT = "ood_helpers.detector"
# 3: latent_input (the paper's z injection) and latent_distance (our Mahalanobis term) are separate
# switches; the latent density is stored only with latent_distance
# 4: two more synthetic outlier families (pixel_shuffle, flat) and a two-sided latent term
DETECTOR_VERSION = 4
AE_DIFFERENCE_FORMAT = "ood_helpers.autoencoder_difference"

__all__ = ["OODDetector", "AutoencoderDifferenceDetector", "ScoreCalibration", "NotFittedError", "read_detector_file",
           "split_for_stages", "train_autoencoder_stage", "fit_autoencoder", "new_autoencoder", "DETECTOR_VERSION"]


@dataclass(frozen=True)
class ScoreCalibration:
    """How the parts of the score are put on one scale: mean and standard deviation (> 0) of the
    classifier logit and, with ``latent_distance`` (ours), of the latent Mahalanobis distance on
    held-out in-distribution images. ``latent_mean`` and ``latent_std`` are None for a detector
    without ``latent_distance`` (the paper's method), whose score has no latent term;
    ``rotation_mean`` and ``rotation_std`` (of the rotation score, ours) are None without
    ``rotation_score``."""

    classifier_mean: float = 0.0
    classifier_std: float = 1.0
    latent_mean: float | None = 0.0
    latent_std: float | None = 1.0
    rotation_mean: float | None = None
    rotation_std: float | None = None

    def as_dict(self) -> dict:
        """The six numbers by name."""
        return asdict(self)


def _package_version() -> str:
    from . import __version__

    return __version__


_SWITCH_HINTS = {"latent_input": "True injects z into the classifier (the paper's auxiliary input)",
                 "latent_distance": "True adds our latent-distance term to the score, False gives the paper's score",
                 "noise_augment": "True trains with the paper's noise-addition augmentation",
                 "rotation_score": "True adds our rotation-prediction score (semantic novelty, notebook 08)"}


def _check_bool(value, name: str) -> bool:
    hint = _SWITCH_HINTS.get(name, "")
    return check_bool(value, name, hint + ("; or pick a named variant with ood_helpers.variants.build_detector"
                                           if hint else ""))


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


_DETECTOR_KEYS = ("config", "in_channels", "run_identity", "autoencoder", "classifier", "rotation_net",
                  "rotation_mean", "rotation_precision", "latent_mean",
                  "latent_precision", "calibration", "threshold", "held_out_scores", "history", "validation",
                  "n_train", "train_fingerprint")


def read_detector_file(path, in_channels: int | None = None, preset=None) -> dict:
    """The verified contents of a detector file written by :meth:`OODDetector.save`, without
    building any network.

    Checks the content hash, the format and version, that every field is there, the preset's
    fields, and the optional expectations ``in_channels`` and ``preset``.

    Parameters
    ----------
    path : str or Path
    in_channels : {1, 3} or None
        The channels the file must have been trained for (None = any).
    preset : preset name, Preset or None
        The preset the file must have been trained with (None = any).

    Returns
    -------
    dict
        The file's fields (``config``, ``in_channels``, ``run_identity``, ``autoencoder``,
        ``classifier``, ``latent_mean``, ...); ``config["preset"]`` is a :class:`Preset`.

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    CheckpointError
        Unreadable, corrupted, foreign, of another version (older files: re-run pretrain or let
        :func:`ood_helpers.artifacts.get_detector` retrain them), incomplete or mismatching.
    """
    payload = load_checkpoint(path, DETECTOR_FORMAT)
    version = payload.get("version")
    if version != DETECTOR_VERSION:
        why = (" (since version 4 the classifier also learns that an image of noise or of one colour is out, "
               "and our latent term is two-sided)" if isinstance(version, int) and version < 4 else "")
        raise CheckpointError(f"'{path}' is a detector file of version {version!r}; this ood_helpers reads version "
                              f"{DETECTOR_VERSION}{why}. Fix: delete it and re-run pretrain (python -m ood_helpers "
                              f"pretrain --out <folder>), or let artifacts.get_detector retrain it.")
    _require(payload, _DETECTOR_KEYS, path)
    _require(payload["config"], ("latent_input", "latent_distance", "noise_augment", "rotation_score"), path)
    payload = dict(payload)
    config = payload["config"] = dict(payload["config"])
    try:
        config["preset"] = _preset_from_dict(dict(config["preset"]), path)
        channels = payload["in_channels"] = int(payload["in_channels"])
    except CheckpointError:
        raise
    except (TypeError, KeyError, ValueError, AttributeError) as err:
        raise CheckpointError(f"'{path}': its configuration is not one of this ood_helpers ({err}). "
                              f"Fix: delete it and retrain.") from err
    if in_channels is not None and channels != in_channels:
        raise CheckpointError(f"'{path}' was saved for {channels} channel(s); expected {in_channels}. "
                              f"Fix: load the detector trained for these images.")
    if preset is not None and config["preset"].name != get_preset(preset).name:
        raise CheckpointError(f"'{path}' was saved with preset {config['preset'].name!r}; expected "
                              f"{get_preset(preset).name!r}. Fix: load or train one for that preset.")
    return payload


def new_autoencoder(in_channels: int, preset: Preset) -> AutoEncoder:
    """An untrained autoencoder of ``preset``'s size for ``in_channels`` (1 or 3) channels: the one
    place where :class:`OODDetector`, :func:`train_autoencoder_stage` and the file readers build it
    (its weights are drawn from torch's global generator)."""
    return AutoEncoder(in_channels, preset.width, preset.latent_dim, preset.stem, preset.ae_linear_path)


def _autoencoder_from(payload: dict, path, device) -> AutoEncoder:
    """The autoencoder of a :func:`read_detector_file` payload, on ``device``, in eval mode."""
    p, channels = payload["config"]["preset"], payload["in_channels"]
    try:
        with float32_default():
            autoencoder = new_autoencoder(channels, p)
        autoencoder.load_state_dict(payload["autoencoder"])
    except (RuntimeError, TypeError, KeyError, ValueError, AttributeError) as err:
        message = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
        raise CheckpointError(f"'{path}': its autoencoder does not fit this ood_helpers ({message}). "
                              f"Fix: delete it and retrain.") from err
    return autoencoder.to(pick_device(device)).eval()


# -- the autoencoder stage, reusable alone ------------------------------------------------------------
# the parameters that shape only the classifier stage and the score, never the autoencoder
CLASSIFIER_ONLY = ("latent_input", "latent_distance", "rotation_score", "inject_stage", "outlier_families",
                   "threshold_quantile")


def autoencoder_identity(identity: dict) -> dict:
    """The part of a run's identity (``OODDetector.run_identity_``) that shapes its autoencoder:
    everything but the variant and :data:`CLASSIFIER_ONLY`. Variants that agree on it (e.g.
    ``paper``, ``paper-no-aux`` and ``ours`` of one seed) train the same autoencoder, so with one
    ``work_dir`` the first trains it and the others resume its finished state."""
    config = {key: value for key, value in identity["config"].items() if key not in CLASSIFIER_ONLY}
    return {**{key: value for key, value in identity.items() if key != "variant"}, "config": config,
            "stage": "autoencoder"}


def split_for_stages(train: torch.Tensor, preset: Preset, generator: torch.Generator):
    """How :meth:`OODDetector.fit` divides its training images between the two networks.

    The preset's ``train_limit`` caps the images (a seeded draw, kept in order), then a seeded
    permutation gives half to the autoencoder and the other half to the classifier (and the latent
    density), so the classifier never sees images the autoencoder memorised.

    Parameters
    ----------
    train : torch.Tensor (N, C, 32, 32), float in [0, 1]
        The images left after the held-out split.
    preset : Preset
    generator : torch.Generator (CPU)
        Consumed exactly as the detector consumes it.

    Returns
    -------
    (torch.Tensor (M, C, 32, 32), torch.Tensor (M // 2, C, 32, 32), torch.Tensor (M - M // 2, C, 32, 32))
        The capped images (M = min(N, train_limit)), the autoencoder's half, the classifier's half.
    """
    if preset.train_limit is not None and len(train) > preset.train_limit:
        keep = torch.randperm(len(train), generator=generator)[: preset.train_limit].sort().values
        train = train[keep]
    order = torch.randperm(len(train), generator=generator)
    return train, train[order[: len(train) // 2]], train[order[len(train) // 2:]]


def train_autoencoder_stage(images: torch.Tensor, in_channels: int, preset: Preset, generator: torch.Generator,
                            device, noise_augment: bool = True, state_path=None, progress: bool = True,
                            on_epoch_end=None, identity: dict | None = None, plan=None) -> tuple[AutoEncoder, list]:
    """Build the autoencoder (weights from torch's global generator) and train it with the L1 loss
    (the paper's equation 1), with the paper's noise augmentation when ``noise_augment``.

    The autoencoder does not depend on ``latent_input`` or ``latent_distance``: every variant of
    one seed, preset, noise switch and training set has the same one.

    Parameters
    ----------
    images : torch.Tensor (N, C, 32, 32), float in [0, 1], on the CPU
        The autoencoder's half of :func:`split_for_stages`.
    in_channels : {1, 3}
    preset : Preset
    generator : torch.Generator (CPU)
    device : torch.device
    noise_augment : bool
    state_path, progress, on_epoch_end, identity, plan
        As for :func:`ood_helpers.training.train_autoencoder`.

    Returns
    -------
    (AutoEncoder, list of float)
        The trained autoencoder (eval mode, on ``device``) and its mean loss per epoch.

    Raises
    ------
    TrainingDivergedError
        When the loss is not finite.
    """
    autoencoder = new_autoencoder(in_channels, preset).to(device)
    noise = NoiseAugment(preset.noise_max_severity) if noise_augment else None
    losses = train_autoencoder(autoencoder, images, preset, generator, device, noise, state_path, progress,
                               on_epoch_end, identity=identity, plan=plan)
    return autoencoder, losses


def fit_autoencoder(images, in_channels=None, preset="quick", seed: int = 0, noise_augment: bool = True,
                    held_out_fraction: float = 0.1, device=None, progress: bool = True) -> AutoEncoder:
    """Train only the autoencoder that :meth:`OODDetector.fit` would train on ``images``.

    Same validation, held-out split, :func:`split_for_stages` and random stream as the detector,
    so the result equals ``OODDetector(in_channels, preset, seed, noise_augment=noise_augment,
    held_out_fraction=held_out_fraction).fit(images).autoencoder_`` for every ``latent_input`` and
    ``latent_distance`` (on the same machine and training plan), without ever building a
    classifier. The global random state is restored afterwards.

    Parameters
    ----------
    images : (N, C, 32, 32) in-distribution training images, float in [0, 1] or uint8, N >= 20.
    in_channels, preset, seed, noise_augment, held_out_fraction, device, progress
        As for :class:`OODDetector`.

    Returns
    -------
    ood_helpers.models.AutoEncoder
        Trained, in eval mode, on the chosen device.

    Raises
    ------
    InputError
        Bad images or arguments (named).
    TrainingDivergedError
        When the loss is not finite.
    """
    spec = OODDetector(in_channels=in_channels, preset=preset, seed=seed, noise_augment=noise_augment,
                       held_out_fraction=held_out_fraction, device=device, progress=progress)
    spec._check_params()
    images = as_image_batch(images, in_channels, "images")
    if len(images) < spec.min_train_images:
        raise InputError(f"images: expected at least {spec.min_train_images} training images to fit, got "
                         f"{len(images)}.")
    preset, device = get_preset(preset), pick_device(device)
    with torch.enable_grad(), seeded(seed) as generator:
        train, _ = split_held_out(images, held_out_fraction, generator)
        _, ae_part, _ = split_for_stages(train, preset, generator)
        autoencoder, _ = train_autoencoder_stage(ae_part, images.shape[1], preset, generator, device, noise_augment,
                                                 progress=progress and distributed.is_main(),
                                                 plan=training_plan(preset, device))
    return autoencoder


class OODDetector(BaseDetector):
    r"""Autoencoder + difference-image classifier with the latent z as auxiliary input (the paper's
    method), optionally plus our latent-distance term.

    The switches are independent; :mod:`ood_helpers.variants` names their combinations
    (``paper``, ``paper-no-aux``, ``paper-no-noise``, ``ours``, ``ours-distance-only``) and
    :func:`ood_helpers.variants.build_detector` builds one. The defaults are ``ours``.

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
        The paper's auxiliary input (Figure 2): z is injected into the classifier after
        ``inject_stage``. Nothing else: it does not touch the score's latent term. False = the
        paper's ablation "w/o auxiliary input" (Table 3).
    latent_distance : bool
        Ours, not in the paper: add the standardised Ledoit-Wolf Mahalanobis distance of z to
        the standardised classifier logit. The latent density is fitted (on the classifier's
        training images) only when True. False = the paper's score, the classifier logit alone.
    noise_augment : bool
        The paper's noise-addition augmentation on the autoencoder's inputs and on both
        classifier classes (False = the paper's ablation "w/o data augmentation", Table 3).
    rotation_score : bool
        Ours, not in the paper (default False): also train a :class:`~ood_helpers.models.RotationNet`
        to predict which of four rotations an in-distribution image was turned by (Gidaris et
        al. 2018; for OOD detection Hendrycks et al. 2019) and add the standardised Ledoit-Wolf
        Mahalanobis distance of the image's features in that network (the self-supervised
        feature distance of SSD, Sehwag et al. 2021) to the score. Features learned to tell
        which way is up carry some of what the objects are, which reconstruction does not; it
        costs ``preset.rotation_epochs`` more epochs of training and one more forward pass per
        scored image (notebook 08).
    inject_stage : {1, 2, 3, 4}
        The classifier stage after which z is added (with ``latent_input``; the paper says "an
        intermediate stage" without naming it).
    outlier_families : sequence of str or None
        Ours: names from :data:`ood_helpers.outliers.OUTLIER_FAMILIES` used as the classifier's
        "out" class (None = every family that applies to the channels). The paper never states
        its negatives, so every variant, the paper's method included, uses these synthetic
        negatives made from in-distribution training images.
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
        With an ``inject`` module (``classifier_.trunk.inject``) only when ``latent_input``.
    rotation_net_ : ood_helpers.models.RotationNet or None
        Only with ``rotation_score``; trained on all training images that are not held out.
    rotation_mean_ : torch.Tensor (8 * width,) or None
    rotation_precision_ : torch.Tensor (8 * width, 8 * width) or None
        Ledoit-Wolf mean and inverse covariance of the rotation network's pooled features on
        those images; None without ``rotation_score``.
    latent_mean_ : torch.Tensor (latent_dim,) or None
    latent_precision_ : torch.Tensor (latent_dim, latent_dim) or None
        Ledoit-Wolf estimate of the mean and inverse covariance of z on the classifier's training
        images; None without ``latent_distance``.
    calibration_ : ScoreCalibration
    threshold_ : float
    preset_ : Preset
    outlier_families_ : tuple of str
    history_ : dict
        Losses per epoch, seconds per epoch, image counts, train seconds.
    validation_ : dict
        Held-out AUROC against each synthetic outlier family.
    held_out_scores_ : dict of numpy arrays (n_held_out,)
        ``score``, ``classifier`` and ``difference_l1`` on the held-out images, ``latent``
        (the Mahalanobis distance) only with ``latent_distance`` and ``rotation`` only with
        ``rotation_score``.
    run_identity_ : dict
        Everything that defines the run (``config``, ``variant``: the key of
        :data:`ood_helpers.variants.VARIANTS` or None), with fingerprints of the training and
        held-out images.

    Notes
    -----
    The score of an image :math:`x` with :math:`z = E(x)` is

    .. math::

        s(x) = \frac{c(|x - D(z)|, z) - \mu_c}{\sigma_c}
               + \underbrace{\frac{\left|(z - \mu_z)^\top \Sigma_z^{-1} (z - \mu_z) - \mu_m\right|}{\sigma_m}}_{\text{ours, only with latent\_distance}}

    where :math:`c` is the classifier's logit (the paper's Figure 2 and equation 2; it receives
    :math:`z` only with ``latent_input``), :math:`\mu_z, \Sigma_z` the mean and Ledoit-Wolf
    covariance of training latents (our addition), and :math:`\mu_c, \sigma_c, \mu_m, \sigma_m`
    the :class:`ScoreCalibration`. With ``rotation_score`` (ours) the standardised distance
    :math:`(m_{rot}(x) - \mu_r) / \sigma_r` is added as well, :math:`m_{rot}` the Mahalanobis
    distance of the rotation network's features of :math:`x`.

    The latent term is two-sided, a typicality test (Nalisnick, Matsukawa, Teh &
    Lakshminarayanan, "Detecting Out-of-Distribution Inputs to Deep Generative Models Using
    Typicality", 2019): some images without content (one colour) encode *closer* to
    :math:`\mu_z` than real images do, so a distance atypically small counts as out too.
    Without ``latent_distance`` (the paper's method) the score is the standardised logit alone,
    a monotone function of the paper's classifier output, so its
    AUROC is the paper's score's. Higher = more out-of-distribution.
    """

    name = "ours"

    def __init__(self, in_channels=None, preset="quick", seed=0, latent_input=True, latent_distance=True,
                 noise_augment=True, rotation_score=False, inject_stage=2, outlier_families=None,
                 threshold_quantile=0.95, held_out_fraction=0.1, device=None, progress=True):
        self.in_channels = in_channels
        self.preset = preset
        self.seed = seed
        self.latent_input = latent_input
        self.latent_distance = latent_distance
        self.noise_augment = noise_augment
        self.rotation_score = rotation_score
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
        _check_bool(self.latent_distance, "latent_distance")
        _check_bool(self.noise_augment, "noise_augment")
        _check_bool(self.rotation_score, "rotation_score")
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
        train, ae_part, clf_part = split_for_stages(train, preset, generator)
        # the resolved training plan (fast or standard path, precision, compile, world size) shapes
        # the result too: a state saved by one plan is never resumed by another
        plan = training_plan(preset, self.device_)
        self.run_identity_ = {"config": self.run_config(), "variant": variant_of(self), "in_channels": self.in_channels_,
                              "train_images": fingerprint(train), "held_out_images": fingerprint(held_out),
                              "n_train": len(train), "ood_helpers": _package_version(), "training": plan.as_dict()}
        progress = self.progress and distributed.is_main()   # under torchrun, rank 0 alone shows progress
        state = Path(work_dir) if work_dir is not None and preset.checkpoint_every_epoch else None

        start = time.perf_counter()
        epoch_seconds = {"autoencoder": [], "classifier": []}
        if self.rotation_score:
            epoch_seconds["rotation"] = []
        # stage 1, the autoencoder: the same for every latent_input / latent_distance (fit_autoencoder
        # runs this stage alone); nothing in it draws from torch's global generator after the weights
        # its state is named by what shapes it alone, so the variants of one run that share it
        # (same work_dir) train it once: the second resumes the finished state
        ae_identity = autoencoder_identity(self.run_identity_)
        self.autoencoder_, ae_loss = train_autoencoder_stage(
            ae_part, self.in_channels_, preset, generator, self.device_, bool(self.noise_augment),
            state_file(state, "autoencoder", ae_identity) if state else None, progress,
            _timed(epoch_seconds["autoencoder"], on_epoch_end), identity=ae_identity, plan=plan)
        # stage 2, the classifier on the difference image (and z with latent_input)
        self.classifier_ = DifferenceClassifier(self.in_channels_, preset.width, preset.latent_dim, preset.stem,
                                                bool(self.latent_input), self.inject_stage).to(self.device_)
        noise = NoiseAugment(preset.noise_max_severity) if self.noise_augment else None
        clf_loss = train_classifier(
            self.classifier_, self.autoencoder_, clf_part, preset, generator, self.device_, noise,
            self.outlier_families_, state_file(state, "classifier", self.run_identity_) if state else None,
            progress, _timed(epoch_seconds["classifier"], on_epoch_end), identity=self.run_identity_, plan=plan)
        # stage 3 (ours, only with latent_distance): the latent density
        self.latent_mean_ = self.latent_precision_ = None
        if self.latent_distance:
            self._fit_latent_density(clf_part)
        # stage 4 (ours, only with rotation_score): the rotation-prediction network, on every training
        # image (it shares nothing with the autoencoder, so it may see the autoencoder's half too)
        self.rotation_net_, rotation_loss = None, None
        if self.rotation_score:
            self.rotation_net_ = RotationNet(self.in_channels_, preset.width, preset.stem).to(self.device_)
            rotation_loss = train_rotation(
                self.rotation_net_, train, preset, generator, self.device_, noise,
                state_file(state, "rotation", self.run_identity_) if state else None, progress,
                _timed(epoch_seconds["rotation"], on_epoch_end), identity=self.run_identity_, plan=plan)
            self.rotation_mean_, self.rotation_precision_ = self._fit_density(
                lambda batch: self.rotation_net_.eval().trunk(batch), train)
        else:
            self.rotation_mean_ = self.rotation_precision_ = None
        self.calibration_ = ScoreCalibration(rotation_mean=0.0 if self.rotation_score else None,
                                             rotation_std=1.0 if self.rotation_score else None)
        held = self.score_components(held_out, _fitted_check=False)

        def mean_std(key):
            std = float(held[key].std())
            if std < 1e-6:   # floored below: scores would be multiples of 1e6, the threshold meaningless
                warnings.warn(f"the held-out {key} scores have no spread (standard deviation {std:.3g}): the "
                              f"networks did not learn to tell these training images apart, so scores and "
                              f"threshold_ carry no information. Fit on more varied in-distribution images.",
                              DegenerateDataWarning, stacklevel=4)
            return (float(held[key].mean()), max(std, 1e-6))
        self.calibration_ = ScoreCalibration(*mean_std("classifier"),
                                             *(mean_std("latent") if self.latent_distance else (None, None)),
                                             *(mean_std("rotation") if self.rotation_score else (None, None)))
        self.held_out_scores_ = {key: self._combine(held) if key == "score" else held[key]
                                 for key in self._held_out_keys()}
        self.history_ = {"autoencoder_l1": ae_loss, "classifier_ce": clf_loss, "rotation_ce": rotation_loss,
                         "train_seconds": time.perf_counter() - start, "epoch_seconds": epoch_seconds,
                         "n_images": {"autoencoder": len(ae_part), "classifier": len(clf_part),
                                      "held_out": len(held_out)}, "training": plan.as_dict()}
        self.validation_ = {family: metrics.auroc(self.held_out_scores_["score"],
                                                  self._decision(apply_family(held_out, family, generator)))
                            for family in families_for(self.in_channels_)}

    def _held_out_keys(self) -> tuple:
        return ("score", "classifier") + (("latent",) if self.params_["latent_distance"] else ()) + (
            ("rotation",) if self.params_["rotation_score"] else ()) + ("difference_l1",)

    def _fit_latent_density(self, images: torch.Tensor):
        self.autoencoder_.eval()
        self.latent_mean_, self.latent_precision_ = self._fit_density(self.autoencoder_.encoder, images)

    @torch.no_grad()
    def _fit_density(self, features, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Ledoit-Wolf mean and precision of ``features(batch)`` over ``images``, batch by batch."""
        from sklearn.covariance import LedoitWolf

        values = torch.cat([features(batch.to(self.device_)).double().cpu() for batch in images.split(DEFAULT_BATCH_SIZE)])
        estimate = LedoitWolf().fit(values.numpy())
        return torch.from_numpy(estimate.location_).float(), torch.from_numpy(estimate.precision_).float()

    # -- scoring ----------------------------------------------------------------------------------
    @torch.no_grad()
    def _parts(self, batch: torch.Tensor) -> dict:
        """Every per-image piece of one batch (tensors on the CPU)."""
        self.autoencoder_.eval(), self.classifier_.eval()
        batch = batch.to(self.device_)
        reconstruction, z = self.autoencoder_(batch)
        difference = difference_image(batch, reconstruction)
        logits = self.classifier_(difference, z).float().cpu()
        parts = {"reconstruction": reconstruction.float().cpu(), "difference": difference.float().cpu(),
                 "z": z.float().cpu(), "classifier": logits}
        if self.params_["latent_distance"]:
            centred = z.float().cpu() - self.latent_mean_
            parts["latent"] = ((centred @ self.latent_precision_) * centred).sum(1)
        if self.params_["rotation_score"]:
            self.rotation_net_.eval()
            centred = self.rotation_net_.trunk(batch).float().cpu() - self.rotation_mean_
            parts["rotation"] = ((centred @ self.rotation_precision_) * centred).sum(1)
        return parts

    def _combine(self, parts: dict) -> np.ndarray:
        """The score: the standardised logit (the paper's), plus, only with ``latent_distance`` (ours),
        how far the latent distance is from its typical held-out value, in held-out standard deviations."""
        calibration = self.calibration_
        score = (np.asarray(parts["classifier"], np.float64) - calibration.classifier_mean) / calibration.classifier_std
        if self.params_["latent_distance"]:
            score = score + np.abs(np.asarray(parts["latent"], np.float64) - calibration.latent_mean) / calibration.latent_std
        if self.params_["rotation_score"]:
            score = score + (np.asarray(parts["rotation"], np.float64) - calibration.rotation_mean) / calibration.rotation_std
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
            :meth:`decision_function` returns), ``classifier`` (the logit :math:`c`, unbounded),
            ``difference_l1`` / ``difference_l2`` (mean absolute / squared difference image, in
            [0, 1]), ``latent`` (Mahalanobis distance of z, >= 0; ours, only with
            ``latent_distance``) and ``rotation`` (Mahalanobis distance of the rotation network's
            features, >= 0; ours, only with ``rotation_score``); and ``z``, a float32 tensor
            (N, latent_dim).

        Raises
        ------
        NotFittedError, InputError
        """
        if _fitted_check:
            self._check_fitted("score_components")
        batch_size = check_batch_size(batch_size)
        keys = ("classifier",) + (("latent",) if self.params_["latent_distance"] else ()) + (
            ("rotation",) if self.params_["rotation_score"] else ()) + ("difference_l1", "difference_l2", "z")
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
        """Save weights, latent density (None without ``latent_distance``), calibration, threshold
        and configuration (the switches included) in one file of version :data:`DETECTOR_VERSION`.

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
        params = dict(self.params_)   # what it was fitted with, whatever set_params did since
        params["preset"] = self.preset_.as_dict()
        params["device"] = None
        params["outlier_families"] = list(self.outlier_families_)
        return save_checkpoint({
            "format": DETECTOR_FORMAT, "version": DETECTOR_VERSION, "config": params,
            "in_channels": self.in_channels_, "run_identity": self.run_identity_,
            "autoencoder": self.autoencoder_.state_dict(), "classifier": self.classifier_.state_dict(),
            "rotation_net": None if self.rotation_net_ is None else self.rotation_net_.state_dict(),
            "rotation_mean": self.rotation_mean_, "rotation_precision": self.rotation_precision_,
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
            Unreadable, corrupted, foreign, incomplete or mismatching file, or one written by an
            older ood_helpers (version < 4: re-run pretrain); the message names the file and the
            reason.
        InputError
            ``device`` names a device this machine does not have (the file is not blamed).
        """
        device = pick_device(device)   # a device this machine lacks is the caller's to fix, not the file's
        payload = read_detector_file(path, in_channels, preset)
        config, channels = payload["config"], payload["in_channels"]
        with float32_default():   # a session's float64 default would build float64 networks
            try:
                detector = cls(**{**config, "device": device, "progress": progress})
                detector._check_params()
                detector.params_ = detector.get_params()
                detector.in_channels_, detector.preset_ = channels, config["preset"]
                detector.device_ = pick_device(device)
                detector.outlier_families_ = tuple(config["outlier_families"])
                p = detector.preset_
                detector.autoencoder_ = new_autoencoder(channels, p)
                detector.classifier_ = DifferenceClassifier(channels, p.width, p.latent_dim, p.stem,
                                                            bool(detector.latent_input), detector.inject_stage)
                detector.autoencoder_.load_state_dict(payload["autoencoder"])
                detector.classifier_.load_state_dict(payload["classifier"])
                detector.autoencoder_.to(detector.device_).eval()
                detector.classifier_.to(detector.device_).eval()
                detector.rotation_net_ = None
                if detector.rotation_score:
                    detector.rotation_net_ = RotationNet(channels, p.width, p.stem)
                    detector.rotation_net_.load_state_dict(payload["rotation_net"])
                    detector.rotation_net_.to(detector.device_).eval()
                    detector.rotation_mean_ = payload["rotation_mean"].float()
                    detector.rotation_precision_ = payload["rotation_precision"].float()
                else:
                    detector.rotation_mean_ = detector.rotation_precision_ = None
                if detector.latent_distance:
                    detector.latent_mean_ = payload["latent_mean"].float()
                    detector.latent_precision_ = payload["latent_precision"].float()
                else:
                    detector.latent_mean_ = detector.latent_precision_ = None
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

    @classmethod
    def load_autoencoder(cls, path, in_channels: int | None = None, preset=None, device=None) -> AutoEncoder:
        """Only the autoencoder of a detector file, verified as :meth:`load` verifies the whole file;
        no classifier is built.

        Every variant of one seed, preset, noise switch and training set has the same autoencoder
        (it does not depend on ``latent_input`` or ``latent_distance``).

        Parameters
        ----------
        path : path of a file written by :meth:`save`.
        in_channels, preset : optional expectations; the file must match them.
        device : where to put the network (None = CUDA, else MPS, else CPU).

        Returns
        -------
        ood_helpers.models.AutoEncoder
            In eval mode; ``autoencoder(images)`` maps (N, C, 32, 32) in [0, 1] to
            (reconstruction (N, C, 32, 32) in [0, 1], z (N, latent_dim)).

        Raises
        ------
        FileNotFoundError
            No file at ``path``.
        CheckpointError
            As for :meth:`load`.
        """
        return _autoencoder_from(read_detector_file(path, in_channels, preset), path, device)


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
        self.autoencoder_ = new_autoencoder(self.in_channels_, preset).to(self.device_)
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

