"""Evaluation above the detectors: metrics, the comparison and ablation tables, far-OOD sets, reports,
and the numbers the paper and the literature report."""
from .compare import *  # noqa: F401,F403 - the comparison's functions, as ood_helpers.evaluation.<name>
