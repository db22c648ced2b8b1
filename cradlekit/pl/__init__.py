"""Plots of the paper's figures.

:func:`qc_violins`
    Figure 3: per QC sub-criterion, violins of the observed and generated cells of one
    perturbation against the data's threshold, passing/failing regions shaded.
:func:`generated_tsne`
    Figure 4: t-SNE of each model's generated cells, coloured by artifact presence and by
    perturbation group (e.g. the six Norman 2019 pathways, :func:`norman_pathway_groups`).
:func:`embed_tsne`
    The t-SNE coordinates behind Figure 4, for reuse (widgets, other plots).
:func:`artifact_effects`
    Each artifact's change of every gene (model, and the simulator's truth), by QC gene set.
:func:`figure_image`
    Any of these figures as a PNG image for ``display`` or myst-nb's ``glue`` in a notebook.

The plotting functions return a :class:`matplotlib.figure.Figure` (never shown) and accept
existing axes; colours are defined in :mod:`cradlekit.pl._style`.
"""

from __future__ import annotations

from ._image import figure_image
from .artifact_effects import artifact_effects
from .latent_tsne import embed_tsne, generated_tsne
from .pathways import NORMAN_PATHWAYS, norman_pathway_groups
from .qc_violins import qc_violins

__all__ = ["figure_image", "artifact_effects", "qc_violins", "generated_tsne", "embed_tsne", "norman_pathway_groups",
           "NORMAN_PATHWAYS"]
