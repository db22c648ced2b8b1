"""Evaluation: recovery of simulated artifacts (metrics of the paper's Table 2 follow)."""

from .artifact_recovery import artifact_recovery

__all__ = ["artifact_recovery"]
