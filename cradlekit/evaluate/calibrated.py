"""Metrics that a constant prediction cannot win: ATE-ρ around the mean effect, and target-gene signs.

ATE-ρ (:func:`~cradlekit.evaluate.ate_pearson`) rewards a prediction for every shift that all
perturbed cells share against the controls: predicting the mean training effect for every
perturbation, whatever it is, already scores well (on the Norman subset's held-out combinations
about a third of the additive baseline's ATE-ρ). Two calibrated views:

:func:`centered_ate_pearson`
    Pearson of ``ATE − r`` against ``data ATE − r`` with ``r`` the mean training effect (the
    Systema idea: Viñas Torné et al., *Nat Biotech* 2025, score against the perturbed centroid,
    not the controls). The mean predictor scores exactly 0 by construction (reported as NaN: a
    constant has no correlation), and a model must predict what distinguishes a perturbation
    from the others.
:func:`target_sign_agreement`
    Whether each target gene of a perturbation moves the way the technology moves it: down for
    knockout and CRISPRi, up for CRISPRa (or the way the data say). Only targets in the gene panel
    count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import pandas as pd

from ..data.perturbations import parse_perturbation
from .agreement import ATE, align_ate

__all__ = ["centered_ate_pearson", "target_sign_agreement", "SignAgreement", "TARGET_DIRECTIONS"]

#: Expected direction of a target gene's own change, by ``direction``.
TARGET_DIRECTIONS = {"down": -1.0, "up": 1.0}

Direction = Literal["down", "up", "data"]


class SignAgreement(NamedTuple):
    """Share of (perturbation, target) pairs whose target gene moves the expected way, and how many were judged."""

    fraction: float
    n: int
    per_target: pd.DataFrame


def centered_ate_pearson(
    model: ATE,
    data: ATE,
    *,
    reference: Sequence[float] | np.ndarray | pd.Series,
    perturbations: Sequence[str] | None = None,
) -> float:
    """Pearson correlation of ``model − reference`` and ``data − reference`` over every (perturbation, gene).

    Parameters
    ----------
    model, data
        Perturbations × genes ATEs, aligned by name (see :func:`~cradlekit.evaluate.align_ate`).
    reference
        One value per gene (the mean ATE of the training perturbations, e.g. the row of
        :func:`cradlekit.baselines.mean_baseline`); a Series is aligned by gene name.
    perturbations
        Restrict to these perturbations.

    Returns
    -------
    float
        In ``[-1, 1]``; NaN when either centred matrix is constant (the mean predictor itself).

    Raises
    ------
    ValueError
        ``reference`` does not have one value per gene.
    """
    m, d = align_ate(model, data, perturbations=perturbations)
    if isinstance(reference, pd.Series):
        ref = reference.reindex(d.columns.astype(str)).to_numpy(dtype=np.float64)
    else:
        ref = np.asarray(reference, dtype=np.float64).ravel()
    if ref.shape != (d.shape[1],) or not np.isfinite(ref).all():
        raise ValueError(f"reference must hold one finite value per gene ({d.shape[1]}), got shape {ref.shape}")
    x, y = (d.to_numpy() - ref).ravel(), (m.to_numpy() - ref).ravel()
    x, y = x - x.mean(), y - y.mean()
    denom = np.sqrt((x @ x) * (y @ y))
    if denom <= 1e-12 * max(1.0, float(np.sqrt(x @ x))):
        return float("nan")
    return float(np.clip((x @ y) / denom, -1.0, 1.0))


def target_sign_agreement(
    model: ATE,
    *,
    direction: Direction = "data",
    data: ATE | None = None,
    perturbations: Sequence[str] | None = None,
    control_label: str = "control",
    min_effect: float = 0.0,
) -> SignAgreement:
    """Share of target genes whose predicted own change has the expected sign.

    Parameters
    ----------
    model
        Perturbations × genes ATE (a model's or a baseline's).
    direction
        ``"down"`` (knockout, CRISPRi), ``"up"`` (CRISPRa) or ``"data"`` (the sign of ``data``'s
        ATE at the target).
    data
        The data ATE; needed for ``"data"``, and with ``min_effect`` it restricts to targets whose
        data change is at least that large.
    perturbations
        Restrict to these perturbations; ``None``: every row of ``model``.
    control_label
        Label of the controls (parsing ``A+B`` into targets).
    min_effect
        Judge only targets with ``|data ATE| >= min_effect`` (needs ``data``).

    Returns
    -------
    SignAgreement
        ``fraction`` (NaN when no target is in the gene panel), ``n`` and ``per_target`` (one row
        per judged (perturbation, target): ``model``, ``expected`` sign, ``agrees``).

    Raises
    ------
    ValueError
        An unknown ``direction``, or ``"data"`` / ``min_effect`` without ``data``.
    """
    if direction not in ("down", "up", "data"):
        raise ValueError(f"direction must be 'down', 'up' or 'data', got {direction!r}")
    if (direction == "data" or min_effect > 0) and data is None:
        raise ValueError("direction='data' and min_effect need the data ATE (data=...)")
    if data is not None:
        m, d = align_ate(model, data, perturbations=perturbations)
    else:
        m, _ = align_ate(model, model, perturbations=perturbations)
        d = None
    rows = []
    for p in m.index:
        for t in parse_perturbation(str(p), control_label=control_label):
            if t not in m.columns:
                continue
            observed = float(d.loc[p, t]) if d is not None else float("nan")
            if min_effect > 0 and not abs(observed) >= min_effect:
                continue
            expected = np.sign(observed) if direction == "data" else TARGET_DIRECTIONS[direction]
            if expected == 0:
                continue
            value = float(m.loc[p, t])
            rows.append({"perturbation": p, "target": t, "model": value, "data": observed, "expected": expected,
                         "agrees": bool(np.sign(value) == expected)})
    table = pd.DataFrame(rows, columns=["perturbation", "target", "model", "data", "expected", "agrees"])
    fraction = float(table["agrees"].mean()) if len(table) else float("nan")
    return SignAgreement(fraction, int(len(table)), table)
