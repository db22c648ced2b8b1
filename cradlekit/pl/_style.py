"""Colours, labels and figure helpers shared by every :mod:`cradlekit.pl` function.

Every colour choice of the package lives here, so that a figure can be restyled in one place.
The Figure 3 colours follow the paper's caption: data blue, generated green, threshold red
(dotted), QC-passing region green, failing region red.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import to_hex, to_rgb
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


def _lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB colours in ``[0, 1]`` (rows)."""
    c = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    xyz = c @ np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]]).T / np.array([0.95047, 1.0, 1.08883])  # fmt: skip
    d = 6.0 / 29.0
    f = np.where(xyz > d**3, np.cbrt(xyz), xyz / (3 * d * d) + 4.0 / 29.0)
    return np.stack([116.0 * f[:, 1] - 16.0, 500.0 * (f[:, 0] - f[:, 1]), 200.0 * (f[:, 1] - f[:, 2])], axis=1)


#: Length of the distinct palette; more categories than this get ``turbo`` samples.
_PALETTE_MAX = 256


@lru_cache(maxsize=1)
def _distinct_palette() -> tuple[str, ...]:
    """Colours in greedy farthest-first order in CIELAB, starting from ``tab10`` without its grey.

    Candidates are an sRGB grid (16 levels per channel) kept to mid lightness (L* 35-80: no
    near-white pastels that vanish on a white page, no near-black) and to chroma above 30 (no
    greys, so that :data:`OTHER_COLOR` stays the only grey). Each next colour is the candidate
    farthest (CIE76 distance) from every colour already chosen, so any prefix of the list is as
    spread out as this greedy rule makes it.
    """
    seeds = [to_hex(c) for c in colormaps["tab10"].colors if to_hex(c) != "#7f7f7f"]
    levels = np.linspace(0.0, 1.0, 16)
    grid = np.stack(np.meshgrid(levels, levels, levels, indexing="ij"), axis=-1).reshape(-1, 3)
    lab = _lab(grid)
    chroma = np.hypot(lab[:, 1], lab[:, 2])
    keep = (lab[:, 0] >= 35) & (lab[:, 0] <= 80) & (chroma >= 30)
    grid, lab = grid[keep], lab[keep]
    chosen = _lab(np.array([to_rgb(c) for c in seeds]))
    nearest = np.min(np.linalg.norm(lab[:, None, :] - chosen[None, :, :], axis=2), axis=1)
    out = list(seeds)
    while len(out) < _PALETTE_MAX and nearest.max() > 1.0:
        i = int(np.argmax(nearest))
        out.append(to_hex(grid[i]))
        nearest = np.minimum(nearest, np.linalg.norm(lab - lab[i], axis=1))
    return tuple(out)


def category_colors(n: int) -> list[str]:
    """``n`` colours that stay distinguishable as ``n`` grows (30, 50 or more categories).

    The first nine are ``tab10`` without its grey (the colours scanpy and matplotlib users know);
    the next ones are picked farthest-first in CIELAB among mid-lightness, saturated colours (see
    ``_distinct_palette``): no two near-identical pastels, none grey (:data:`OTHER_COLOR` marks
    "other"). Up to 256 colours; beyond that ``turbo`` samples (a legend that long is not read anyway).
    """
    palette = _distinct_palette()
    if n <= len(palette):
        return list(palette[:n])
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
