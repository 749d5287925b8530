"""The paper, held once: its citation, its training settings and the numbers it reports.

Kim, S. and Kim, K.-H. "A Novel Out-of-Distribution Detector Based on Autoencoder and Binary
Classifier with Auxiliary Input". Journal of Student Research (high-school edition).

Everything here is *copied from the paper*, never computed: tables show these values only as
labelled references beside numbers this package measured.
"""
from __future__ import annotations

CITATION = ("Kim, S. and Kim, K.-H. \"A Novel Out-of-Distribution Detector Based on Autoencoder and Binary "
            "Classifier with Auxiliary Input\". Journal of Student Research.")

# the paper's two benchmark settings (in-distribution first)
PAPER_SETTINGS = ("mnist-cifar10", "cifar10-mnist")

# Implementation details: Adam (beta1 0.9, beta2 0.99), mini-batch 32, 100 epochs, learning rate
# 1e-4 multiplied by 0.2 at epochs 40 and 80; ResNet-18 for the autoencoder and the classifier.
TRAINING = {"optimizer": "Adam", "lr": 1e-4, "betas": (0.9, 0.99), "batch_size": 32, "epochs": 100,
            "lr_milestones": (40, 80), "lr_gamma": 0.2, "backbone": "ResNet-18"}

# AUROC of Tables 1 and 2 (comparison) and Table 3 (ablation, CIFAR-10 in only), keyed by the
# detector keys of ood_helpers.evaluation ("ours-no-latent" = w/o auxiliary input,
# "ours-no-noise" = w/o noise-addition augmentation).
PAPER_REPORTED = {
    "mnist-cifar10": {"pixelcnn": 0.6141, "dsebm": 0.9554, "vae": 0.9643, "ours": 0.9718},
    "cifar10-mnist": {"pixelcnn": 0.5450, "dsebm": 0.5725, "vae": 0.5725, "ours": 0.5908,
                      "ours-no-latent": 0.5624, "ours-no-noise": 0.5873},
}


def reported_auroc(setting: str, detector: str = "ours") -> float | None:
    """The AUROC the paper reports for ``detector`` on ``setting``, or None when it reports none.

    Parameters
    ----------
    setting : str
        A setting name such as ``"mnist-cifar10"``; noisy variants (``"...+noise"``) map to their
        clean setting.
    detector : str
        A detector key (``"ours"``, ``"vae"``, ``"dsebm"``, ``"pixelcnn"``, ``"ours-no-latent"``,
        ``"ours-no-noise"``).
    """
    return PAPER_REPORTED.get(setting.split("+")[0], {}).get(detector)


__all__ = ["CITATION", "PAPER_SETTINGS", "TRAINING", "PAPER_REPORTED", "reported_auroc"]
