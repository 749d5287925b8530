"""The named detector variants, defined once: the paper's method, its Table 3 ablations, and ours.

An :class:`~ood_helpers.detector.OODDetector` has six switches:

- ``latent_input`` (**the paper's**, Figure 2 and Table 3 "w/o auxiliary input"): the latent
  :math:`z = E(x)` is injected into the classifier as an auxiliary input;
- ``noise_augment`` (**the paper's**, Table 3 "w/o data augmentation"): noise-addition
  augmentation while training;
- ``latent_distance`` (**ours**, not in the paper): the distance of the unit-length :math:`z` to
  its nearest training latent (Sun et al. 2022) is added to the standardised classifier logit;
- ``latent_mahalanobis`` (**ours**, not in the paper): the two-sided Mahalanobis distance of
  :math:`z` from one Gaussian of the training latents (Lee et al. 2018), standardised, is added too;
- ``difference_term`` (**ours**, not in the paper, off in every variant): the mean of the
  difference image, the autoencoder's own score, standardised;
- ``rotation_score`` (**ours**, not in the paper): the Mahalanobis distance of a
  rotation-prediction network's features (the SSD feature distance, Sehwag et al. 2021; the
  pretext task of Gidaris et al. 2018) is added too, for semantic novelty (notebook 08).

Every variant, the paper's included, trains its classifier with *our* synthetic negatives made
from in-distribution training images (:mod:`ood_helpers.outliers`): the paper never states what
its classifier's "out" examples are.

======================  =======  ============  ===============  ==================  =============  ==============  ============================================
key                     origin   latent_input  latent_distance  latent_mahalanobis  noise_augment  rotation_score  source
======================  =======  ============  ===============  ==================  =============  ==============  ============================================
``paper``               paper    True          False            False               True           False           Fig. 2, Tables 1-3 "Full model"
``paper-no-aux``        paper    False         False            False               True           False           Table 3 "w/o auxiliary input"
``paper-no-noise``      paper    True          False            False               False          False           Table 3 "w/o data augmentation"
``ours``                ours     True          True             True                True           False           ours: the paper's method + two latent distances
``ours-distance-only``  ours     False         True             True                True           False           ours: our latent distances instead of z
``ours-rotation``       ours     True          True             True                True           True            ours + rotation score
======================  =======  ============  ===============  ==================  =============  ==============  ============================================

Detector files are named by the key: ``<preset>/<setting>/detector_<key>_seed<seed>.pt``
(:func:`ood_helpers.artifacts.detector_relpath`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

from .validation import InputError

ORIGINS = {"paper": "paper's method", "ours": "ours"}


@dataclass(frozen=True)
class Variant:
    """One named configuration of :class:`~ood_helpers.detector.OODDetector`.

    Attributes
    ----------
    key : str
        The name used everywhere (file names, ``get_detector(variant=...)``, result rows).
    label : str
        What tables print.
    origin : {"paper", "ours"}
        Whether this is the paper's method (or one of its own ablations) or our addition.
    latent_input, latent_distance, noise_augment : bool
        The detector's switches (see the module doc).
    source : str
        Where it comes from: a figure or table of the paper, or "ours".
    rotation_score : bool
        Ours; False for every variant but ``ours-rotation``.
    latent_mahalanobis : bool
        Ours; True for the ``ours`` variants, False for the paper's.
    difference_term : bool
        Ours; False for every variant (a switch to try it, notebook 05's exercise).
    """

    key: str
    label: str
    origin: str
    latent_input: bool
    latent_distance: bool
    noise_augment: bool
    source: str
    rotation_score: bool = False
    latent_mahalanobis: bool = False
    difference_term: bool = False

    @property
    def flags(self) -> dict:
        """The :class:`~ood_helpers.detector.OODDetector` keyword arguments of this variant."""
        return {"latent_input": self.latent_input, "latent_distance": self.latent_distance,
                "noise_augment": self.noise_augment, "rotation_score": self.rotation_score,
                "latent_mahalanobis": self.latent_mahalanobis, "difference_term": self.difference_term}

    @property
    def origin_label(self) -> str:
        """``"paper's method"`` or ``"ours"``: how tables label the row's origin."""
        return ORIGINS[self.origin]

    def as_dict(self) -> dict:
        """Every field by name, plus ``origin_label``."""
        return {**asdict(self), "origin_label": self.origin_label}


VARIANTS = {variant.key: variant for variant in (
    Variant("paper", "paper's method (Fig. 2, our reimplementation)", "paper", True, False, True,
            "Fig. 2; Tables 1-3 'Ours' / 'Full model'"),
    Variant("paper-no-aux", "paper w/o auxiliary input (Table 3)", "paper", False, False, True,
            "Table 3 'w/o auxiliary input'"),
    Variant("paper-no-noise", "paper w/o noise augmentation (Table 3)", "paper", True, False, False,
            "Table 3 'w/o data augmentation'"),
    Variant("ours", "ours: the paper's method + two latent distances", "ours", True, True, True, "ours",
            latent_mahalanobis=True),
    Variant("ours-distance-only", "ours: our latent distances instead of z injection", "ours", False, True, True,
            "ours", latent_mahalanobis=True),
    Variant("ours-rotation", "ours + rotation score (semantic)", "ours", True, True, True, "ours", rotation_score=True,
            latent_mahalanobis=True),
)}

# the rows of the paper's Table 3, like for like, and of "what our additions add"
TABLE3_VARIANTS = ("paper", "paper-no-aux", "paper-no-noise")
ADDITION_VARIANTS = ("paper", "ours", "ours-distance-only")

NEGATIVES_NOTE = ("The paper never states what its classifier's \"out\" examples are, so every row here, the "
                  "paper's method included, trains its classifier with our synthetic negatives made from "
                  "in-distribution training images (ood_helpers.outliers); no real outlier is ever seen in training.")


def get_variant(variant) -> Variant:
    """The :class:`Variant` named ``variant`` (a key of :data:`VARIANTS`, or a Variant itself).

    Raises
    ------
    InputError
        For an unknown name, listing the known ones.
    """
    if isinstance(variant, Variant):
        return variant
    if not isinstance(variant, str) or variant not in VARIANTS:
        old = {"full": "ours", "no-latent": "paper-no-aux", "no-noise": "paper-no-noise"}
        hint = f" ('{variant}' was renamed '{old[variant]}'.)" if isinstance(variant, str) and variant in old else ""
        raise InputError(f"variant: expected one of {', '.join(VARIANTS)}, got {variant!r}.{hint} Fix: e.g. "
                         f"variant='paper' (the paper's method) or variant='ours'.")
    return VARIANTS[variant]


def variant_of(detector) -> str | None:
    """The key of the variant whose switches ``detector`` (an OODDetector, fitted or not) has, or None."""
    flags = {name: bool(getattr(detector, name, None))
             for name in ("latent_input", "latent_distance", "noise_augment", "rotation_score", "latent_mahalanobis",
                          "difference_term")}
    return next((key for key, variant in VARIANTS.items() if variant.flags == flags), None)


__all__ = ["Variant", "VARIANTS", "ORIGINS", "TABLE3_VARIANTS", "ADDITION_VARIANTS", "NEGATIVES_NOTE", "get_variant",
           "variant_of"]
