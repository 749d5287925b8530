"""The paper, held once: its citation, its training settings and the numbers it reports.

Kim, S. and Kim, K.-H. "A Novel Out-of-Distribution Detector Based on Autoencoder and Binary
Classifier with Auxiliary Input". Journal of Student Research (high-school edition).

Everything here is *copied from the paper*, never computed: tables show these values only as
labelled references beside numbers this package measured.
"""
from __future__ import annotations

from ..data import PAPER_SETTINGS  # noqa: F401  (the paper's two settings, in-distribution first: defined with the data)

CITATION = ("Kim, S. and Kim, K.-H. \"A Novel Out-of-Distribution Detector Based on Autoencoder and Binary "
            "Classifier with Auxiliary Input\". Journal of Student Research.")

# Implementation details: Adam (beta1 0.9, beta2 0.99), mini-batch 32, 100 epochs, learning rate
# 1e-4 multiplied by 0.2 at epochs 40 and 80; ResNet-18 for the autoencoder and the classifier.
TRAINING = {"optimizer": "Adam", "lr": 1e-4, "betas": (0.9, 0.99), "batch_size": 32, "epochs": 100,
            "lr_milestones": (40, 80), "lr_gamma": 0.2, "backbone": "ResNet-18"}

# AUROC of Tables 1 and 2 (comparison) and Table 3 (ablation, CIFAR-10 in / MNIST out only), keyed
# by the row keys of ood_helpers.evaluation: the paper's own method under the variant keys of
# ood_helpers.variants ("paper" = the paper's "Ours" / "Full model", "paper-no-aux" = "w/o auxiliary
# input", "paper-no-noise" = "w/o data augmentation"), the baselines under theirs. The paper
# reports nothing for our additions ("ours", "ours-distance-only").
PAPER_REPORTED = {
    "mnist-cifar10": {"pixelcnn": 0.6141, "dsebm": 0.9554, "vae": 0.9643, "paper": 0.9718},
    "cifar10-mnist": {"pixelcnn": 0.5450, "dsebm": 0.5725, "vae": 0.5725, "paper": 0.5908,
                      "paper-no-aux": 0.5624, "paper-no-noise": 0.5873},
}

# where each number of PAPER_REPORTED is printed in the paper
REPORTED_IN = {
    "mnist-cifar10": {"pixelcnn": "Table 1", "dsebm": "Table 1", "vae": "Table 1", "paper": "Table 1 ('Ours')"},
    "cifar10-mnist": {"pixelcnn": "Table 2", "dsebm": "Table 2", "vae": "Table 2",
                      "paper": "Table 2 ('Ours') and Table 3 ('Full model')",
                      "paper-no-aux": "Table 3 ('w/o auxiliary input')",
                      "paper-no-noise": "Table 3 ('w/o data augmentation')"},
}


# AUROC that other publications report for a baseline's method on one of our settings, printed beside
# our number as "reported by its source": setting -> detector key -> (AUROC, "authors year, table").
# Only numbers read in the source's own text belong here. Empty: Ren et al. 2019 (Table for
# Fashion-MNIST in / MNIST out, e.g. likelihood 0.089 and likelihood ratio 0.994 as widely quoted)
# and Serrà et al. 2020 could not be read in their own text from this project's machines (the
# search tool returned only the papers' openings), so none is printed.
LITERATURE_REPORTED: dict = {}


def reported_auroc(setting: str, detector: str = "paper") -> float | None:
    """The AUROC the paper reports for ``detector`` on ``setting``, or None when it reports none.

    Parameters
    ----------
    setting : str
        A setting name such as ``"mnist-cifar10"``; noisy variants (``"...+noise"``) map to their
        clean setting.
    detector : str
        A row key: ``"paper"`` (the paper's method, its "Ours"), ``"paper-no-aux"``,
        ``"paper-no-noise"`` (Table 3, CIFAR-10 in only), ``"vae"``, ``"dsebm"``, ``"pixelcnn"``.

    Returns
    -------
    float in [0, 1] or None
        Copied from the paper, never computed (see :data:`REPORTED_IN` for the table).
    """
    return PAPER_REPORTED.get(setting.split("+")[0], {}).get(detector)


__all__ = ["CITATION", "PAPER_SETTINGS", "TRAINING", "PAPER_REPORTED", "REPORTED_IN", "LITERATURE_REPORTED",
           "reported_auroc"]
