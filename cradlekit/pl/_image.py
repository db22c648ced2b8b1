"""Figures as images for notebooks and books."""

from __future__ import annotations

import io
from typing import Any

from matplotlib.figure import Figure

__all__ = ["figure_png", "figure_image"]


def figure_png(fig: Figure, *, dpi: int = 80, bbox_inches: str | None = None) -> bytes:
    """The figure as PNG bytes (``bbox_inches="tight"`` trims the white margin)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches=bbox_inches)
    return buf.getvalue()


def figure_image(fig: Figure, *, dpi: int = 110) -> Any:
    """The figure as an :class:`IPython.display.Image` (PNG).

    cradlekit's figures are made without pyplot (so that nothing is shown twice and no global
    state changes); this renders one for ``display`` or myst-nb's ``glue`` in a notebook.

    Parameters
    ----------
    fig
        A matplotlib figure (e.g. from :func:`qc_violins` or a widget's ``static_figure()``).
    dpi
        Resolution of the PNG.
    """
    from IPython.display import Image

    return Image(data=figure_png(fig, dpi=dpi, bbox_inches="tight"), format="png")
