"""Colours, labels and figure helpers shared by every :mod:`cradlekit.pl` function.

Every colour choice of the package lives here, so that a figure can be restyled in one place.
The Figure 3 colours follow the paper's caption: data blue, generated green, threshold red
(dotted), QC-passing region green, failing region red.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

__all__ = [
    "DATA_COLOR",
    "GENERATED_COLOR",
    "THRESHOLD_COLOR",
    "THRESHOLD_STYLE",
    "PASS_COLOR",
    "FAIL_COLOR",
    "REGION_ALPHA",
    "VIOLIN_ALPHA",
    "ARTIFACT_COLORS",
    "OTHER_COLOR",
    "CRITERION_TITLES",
    "category_colors",
    "new_figure",
    "as_axes_grid",
]

#: Figure 3: observed cells.
DATA_COLOR = "#1f77b4"
#: Figure 3: model-generated cells.
GENERATED_COLOR = "#2ca02c"
#: Figure 3: the QC threshold line.
THRESHOLD_COLOR = "#d62728"
THRESHOLD_STYLE = {"color": THRESHOLD_COLOR, "linestyle": ":", "linewidth": 1.8}
#: Figure 3: shading of the values that pass / fail a criterion.
PASS_COLOR = "#a1d99b"
FAIL_COLOR = "#fc9272"
REGION_ALPHA = 0.35
VIOLIN_ALPHA = 0.6

#: Figure 4: cells generated with the artifact latent off / on.
ARTIFACT_COLORS = {"artifact off": "#3182bd", "artifact on": "#e6550d"}
#: Figure 4: groups beyond the legend's top-N, and unassigned perturbations.
OTHER_COLOR = "#c7c7c7"

#: Panel titles of the six QC sub-criteria.
CRITERION_TITLES = {
    "total_counts": "UMI counts",
    "n_genes": "Genes detected",
    "mito": "Mitochondrial %",
    "ribo": "Ribosomal %",
    "hb": "Hemoglobin %",
    "doublet": "Doublets",
}


def category_colors(n: int) -> list[str]:
    """``n`` distinct colours: ``tab10`` up to 10, then scanpy's palettes (as ``sc.pl`` colours categories).

    Up to 20: scanpy's ``default_20``; up to 28: ``default_28``; up to 102: ``default_102`` (all
    distinct, none grey, so that "other" stays recognisable); beyond that ``turbo`` samples.
    """
    if n <= 10:
        return [to_hex(c) for c in colormaps["tab10"].colors[:n]]
    from scanpy.plotting import palettes

    for palette in (palettes.default_20, palettes.default_28, palettes.default_102):
        colors = [to_hex(c) for c in palette if to_hex(c) != OTHER_COLOR]
        if n <= len(colors):
            return colors[:n]
    return [to_hex(c) for c in colormaps["turbo"](np.linspace(0.05, 0.95, n))]


def new_figure(nrows: int, ncols: int, figsize: tuple[float, float]) -> tuple[Figure, np.ndarray]:
    """A constrained-layout :class:`~matplotlib.figure.Figure` with a ``(nrows, ncols)`` axes grid.

    The figure is not registered with :mod:`matplotlib.pyplot` (no global state, nothing kept
    alive); Jupyter still displays a returned figure.
    """
    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def as_axes_grid(axes: Axes | Sequence | np.ndarray, nrows: int, ncols: int, *, what: str) -> np.ndarray:
    """Check user-supplied axes (``nrows * ncols`` of them, one figure) and shape them as a grid."""
    grid = np.asarray(axes, dtype=object).reshape(-1)
    if grid.size != nrows * ncols or not all(isinstance(a, Axes) for a in grid):
        raise ValueError(f"{what}: expected {nrows * ncols} matplotlib Axes, got {grid.size} objects")
    figures = {id(a.figure) for a in grid}
    if len(figures) != 1:
        raise ValueError(f"{what}: all axes must belong to one figure")
    return grid.reshape(nrows, ncols)
