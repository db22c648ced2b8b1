"""One-sided median ± k·MAD thresholds, with a guard for MAD = 0.

Rules (as in the published CRADLE-VAE code)
-------------------------------------------
* MAD is the *raw* median absolute deviation ``median(|x - median(x)|)`` (no 1.4826 factor),
  on raw metric values (no log1p).
* ``total_counts`` and ``n_genes`` fail when ``value < median - k·scale`` (strict).
* ``mito``, ``ribo`` and ``hb`` fail when ``value > median + k·scale`` (strict).
* Normally ``scale = MAD``.

MAD = 0 guard
-------------
When more than half of the cells share the median value (typically 0 % hemoglobin), the MAD
is 0 and the plain rule fails *every* cell that differs from the median. With the guard (the
default) the scale falls back to the **median absolute deviation of the cells that differ from
the median** (``scale_kind = "mad_off_median"``)::

    scale = median(|x_i - m|  over cells with x_i != m)

For a metric that is 0 in 90 % of cells and small in the rest, the threshold becomes
``k × (typical non-zero value)``: ordinary non-zero cells pass, a cell far above the others
still fails. If every cell equals the median, the scale stays 0 and nothing fails
(``scale_kind = "constant"``; no value is strictly beyond the median). Without the guard
(``mad_zero_guard=False``, the published behaviour) the scale is the raw MAD, 0
(``scale_kind = "mad"``). NaN values (e.g. percentages of cells with no counts) are ignored
when computing the statistics and never fail a percentage criterion.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._keys import METRIC_OF_CRITERION, _fmt_k

__all__ = [
    "SIDE",
    "MAD_CRITERIA",
    "RobustScale",
    "k_label",
    "normalize_ks",
    "mad",
    "robust_scale",
    "mad_threshold",
    "fails",
    "compute_thresholds",
    "flag_table",
]

#: Which tail fails, per criterion.
SIDE = {
    "total_counts": "lower",
    "n_genes": "lower",
    "mito": "upper",
    "ribo": "upper",
    "hb": "upper",
}
#: Criteria thresholded by median ± k·MAD (``doublet`` is a scrublet call).
MAD_CRITERIA = tuple(SIDE)


@dataclass(frozen=True)
class RobustScale:
    """Centre and scale of one metric.

    Attributes
    ----------
    median
        Median of the metric (NaN-ignoring).
    mad
        Raw median absolute deviation.
    scale
        Scale used in the threshold (``mad`` unless the MAD = 0 guard applied).
    kind
        ``"mad"``, ``"mad_off_median"`` (guard) or ``"constant"`` (all values equal), or
        ``"skipped"`` when the criterion has no data.
    """

    median: float
    mad: float
    scale: float
    kind: str


def k_label(k: float) -> str:
    """Key of a MAD multiple in ``uns['qc']['thresholds']`` (``3 -> "k3"``, ``3.5 -> "k3p5"``)."""
    return "k" + _fmt_k(k)


def normalize_ks(ks: Iterable[float] | float) -> tuple[float, ...]:
    """Validate MAD multiples: a non-empty set of positive finite numbers, returned sorted.

    Raises
    ------
    ValueError
        If ``ks`` is empty or holds a non-positive or non-finite value.
    """
    if np.isscalar(ks):
        ks = (ks,)
    try:
        values = sorted({float(k) for k in ks})
    except (TypeError, ValueError) as err:
        raise ValueError(f"ks must be numbers, got {ks!r}") from err
    if not values:
        raise ValueError("ks must contain at least one MAD multiple, e.g. ks=(3, 4, 5)")
    bad = [k for k in values if not np.isfinite(k) or k <= 0]
    if bad:
        raise ValueError(f"every k must be a positive finite number, got {bad}")
    return tuple(values)


def mad(x) -> float:
    """Raw median absolute deviation ``median(|x - median(x)|)``, NaN-ignoring (no 1.4826)."""
    x = np.asarray(x, dtype=np.float64)
    x = x[~np.isnan(x)]
    if x.size == 0:
        return float("nan")
    return float(np.median(np.abs(x - np.median(x))))


def robust_scale(x, *, mad_zero_guard: bool = True) -> RobustScale:
    """Median and scale of ``x`` (see the module docstring for the MAD = 0 guard).

    Parameters
    ----------
    x
        Metric values; NaN values are ignored.
    mad_zero_guard
        Apply the MAD = 0 fallback. ``False`` reproduces the published behaviour.

    Returns
    -------
    RobustScale
    """
    x = np.asarray(x, dtype=np.float64)
    x = x[~np.isnan(x)]
    if x.size == 0:
        nan = float("nan")
        return RobustScale(nan, nan, nan, "skipped")
    med = float(np.median(x))
    dev = np.abs(x - med)
    raw = float(np.median(dev))
    if raw > 0 or not mad_zero_guard:
        return RobustScale(med, raw, raw, "mad")
    off = dev[dev > 0]
    if off.size == 0:
        return RobustScale(med, raw, 0.0, "constant")
    return RobustScale(med, raw, float(np.median(off)), "mad_off_median")


def mad_threshold(median: float, scale: float, k: float, side: str) -> float:
    """``median - k·scale`` (``side="lower"``) or ``median + k·scale`` (``side="upper"``)."""
    if side == "lower":
        return float(median - k * scale)
    if side == "upper":
        return float(median + k * scale)
    raise ValueError(f"side must be 'lower' or 'upper', got {side!r}")


def fails(values, threshold: float, side: str) -> np.ndarray:
    """Strict one-sided test: ``values < threshold`` (lower) or ``values > threshold`` (upper).

    A NaN threshold (skipped criterion) or a NaN value never fails.
    """
    values = np.asarray(values, dtype=np.float64)
    if np.isnan(threshold):
        return np.zeros(values.shape, dtype=bool)
    with np.errstate(invalid="ignore"):
        if side == "lower":
            return values < threshold
        if side == "upper":
            return values > threshold
    raise ValueError(f"side must be 'lower' or 'upper', got {side!r}")


def compute_thresholds(
    metrics: pd.DataFrame,
    ks: Iterable[float],
    *,
    skipped: Iterable[str] = (),
    mad_zero_guard: bool = True,
) -> tuple[dict, dict]:
    """Thresholds of the five MAD criteria for every ``k``.

    Parameters
    ----------
    metrics
        Table with the metric columns named in :data:`cradlekit._keys.METRIC_OF_CRITERION`.
    ks
        MAD multiples.
    skipped
        Criteria to skip: their statistics and thresholds are NaN.
    mad_zero_guard
        See :func:`robust_scale`.

    Returns
    -------
    stats : dict
        ``{criterion: {"metric", "side", "median", "mad", "scale", "scale_kind"}}``.
    thresholds : dict
        ``{"k3": {"total_counts": {"lower": t}, ..., "mito": {"upper": t}, ...}, ...}``.
    """
    skipped = set(skipped)
    stats: dict[str, dict] = {}
    for criterion in MAD_CRITERIA:
        metric = METRIC_OF_CRITERION[criterion]
        if criterion in skipped:
            rs = RobustScale(float("nan"), float("nan"), float("nan"), "skipped")
        else:
            rs = robust_scale(metrics[metric].to_numpy(), mad_zero_guard=mad_zero_guard)
        stats[criterion] = {
            "metric": metric,
            "side": SIDE[criterion],
            "median": rs.median,
            "mad": rs.mad,
            "scale": rs.scale,
            "scale_kind": rs.kind,
        }
    thresholds: dict[str, dict] = {}
    for k in normalize_ks(ks):
        per = {}
        for criterion, s in stats.items():
            per[criterion] = {s["side"]: mad_threshold(s["median"], s["scale"], k, s["side"])}
        thresholds[k_label(k)] = per
    return stats, thresholds


def flag_table(
    metrics: pd.DataFrame, thresholds: dict, ks: Iterable[float]
) -> dict[tuple[str, str], np.ndarray]:
    """Per-criterion failure flags ``{(criterion, k_label): bool array}`` for the MAD criteria.

    Parameters
    ----------
    metrics
        Metric table (see :func:`compute_thresholds`).
    thresholds
        ``thresholds`` as returned by :func:`compute_thresholds` (or read from ``uns``).
    ks
        MAD multiples to flag; each ``k_label(k)`` must be a key of ``thresholds``.
    """
    out: dict[tuple[str, str], np.ndarray] = {}
    for k in ks:
        per = thresholds[k_label(k)]
        for criterion in MAD_CRITERIA:
            side = SIDE[criterion]
            value = float(per[criterion][side])
            out[(criterion, k_label(k))] = fails(
                metrics[METRIC_OF_CRITERION[criterion]].to_numpy(), value, side
            )
    return out
