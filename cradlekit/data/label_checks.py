"""Warnings about perturbation labels that are probably not what they seem.

Two kinds of label become targets without complaint in :func:`~cradlekit.data.canonicalize_labels`,
yet are almost always a mistake in the data:

- a missing value written as text (``'nan'``, ``'None'``, ``'NA'`` ...: what ``astype(str)`` makes of
  NaN and None), which would become a perturbation named ``nan``;
- a control label in another case (``'Control'`` next to ``'control'``), which would become a target.

:func:`warn_suspicious_labels` warns about both (one ``UserWarning`` each), naming the labels, the
number of cells and the way on. It is called by :func:`~cradlekit.data.standardize_perturbations`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import pandas as pd

__all__ = ["warn_suspicious_labels", "MISSING_LOOKING"]

#: Labels (lower case) that are a missing value written as text, e.g. by ``astype(str)`` of NaN/None.
MISSING_LOOKING = frozenset({"nan", "none", "null", "na", "n/a", "<na>", "nat", "missing"})


def warn_suspicious_labels(labels: pd.Series, controls: Sequence[str], sep: str, *, what: str) -> None:
    """Warn about labels that look missing (``'nan'``) or name a control in another case (``'Control'``).

    Parameters
    ----------
    labels
        One label per cell.
    controls
        The control labels (the first is the one cells are relabelled to).
    sep
        Separator of combination members (a member ``'Control'`` in ``'A+Control'`` is found too).
    what
        Name of the labels in messages (e.g. ``"adata.obs['guide']"``).

    Warns
    -----
    UserWarning
        One per kind of suspicious label found.
    """
    counts = labels.astype(str).value_counts()
    folded = {c.casefold(): c for c in controls}
    missing = [label for label in counts.index if label.strip().lower() in MISSING_LOOKING]
    cased: dict[str, str] = {}  # label -> its member that is a control in another case
    for label in counts.index:
        for member in (label.split(sep) if sep else [label]):
            member = member.strip()
            if member.casefold() in folded and member not in controls:
                cased[label] = member
                break
    messages = []
    if missing:
        messages.append(
            f"{what}: {int(counts[missing].sum())} cells have labels that look like a missing value written as text "
            f"({missing[:5]}); they are treated as a target of that name. If these cells have no label, drop them "
            "or give them the right label first"
        )
    if cased:
        shown = [f"{k!r} ~ {folded[m.casefold()]!r}" for k, m in list(cased.items())[:5]]
        messages.append(
            f"{what}: {int(counts[list(cased)].sum())} cells have labels that differ from a control label only in "
            f"case ({', '.join(shown)}); they are treated as targets, not controls. If they are controls, pass "
            f"extra_control_labels={sorted(set(cased.values()))!r} (or fix the labels)"
        )
    for msg in messages:  # a Python warning only (something to act on), never also a log record
        warnings.warn(msg, UserWarning, stacklevel=3)
