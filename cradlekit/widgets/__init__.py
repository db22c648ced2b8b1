"""Interactive controllers (ipywidgets) for QC, training, generation and latent spaces.

Each controller is a small :class:`traitlets.HasTraits` object: its state (``k``, model settings,
perturbation, colouring…) lives in traits that code and tests can set and observe without a kernel;
its ipywidgets layout is built by a separate view the first time the widget is shown. Every
controller calls only public cradlekit functions, reports bad input (no QC labels, untrained model,
empty selection…) as a readable ``message`` in the widget rather than a traceback, and draws a
matplotlib figure of its state with ``static_figure()``.

Common to all five: slow actions started from the widget run in a background thread with a busy
line (what is coming, a progress bar) and a Cancel button (``busy``, ``busy_title``,
``cancel()``; called from code they run inline); warnings of the library raised by an action appear
in that widget's message, and the package's INFO logs go to ``controller.log`` instead of the
notebook's stderr; Export buttons save the figure (PNG/PDF) and the shown tables (CSV)
(``controller.export("figure.pdf")``).

:class:`QCExplorer`
    Choose the MAD multiple ``k`` (3/4/5 or free), see the six criteria with thresholds and
    pass/fail regions and live pass counts on a named QC basis (the data's metrics, or the gene
    panel when they came from ``obs``; both side by side), and pass rates per group of any
    categorical ``obs`` column (sortable, with the criterion that fails most); write the labels of
    the chosen ``k`` to the AnnData.
:class:`TrainingController`
    Pick a model and its key hyper-parameters; start, stop and resume training in a background
    thread with live −ELBO/J2 curves, progress, device and checkpoint path.
:class:`PerturbationExplorer`
    Generate cells of a perturbation or (unseen) combination, artifact on or off, at the data's
    library size; compare their QC metrics with the data's on one stated basis per criterion
    (Figure 3; the headline uses the five MAD criteria, the doublet call is shown apart), list the
    top changed genes, and draw a gene's violins.
:class:`LatentExplorer`
    UMAP/t-SNE of observed or generated cells (stored in ``obsm``; computed in the background; a
    stated subsample, every other cell placed) coloured by artifact, perturbation, group, split, a
    named selection, a gene (type-ahead) or any ``obs`` column; hover and lasso with ipympl (Figure 4).
:class:`ComparisonExplorer`
    Generated and observed cells of several perturbations in one embedding, and scanpy's dot plot
    (or matrix plot) of each perturbation's top genes, observed above generated.

Examples
--------
One line each in a notebook (the last expression of a cell shows the widget)::

    from cradlekit.widgets import (QCExplorer, TrainingController, PerturbationExplorer, LatentExplorer,
                                   ComparisonExplorer)

    QCExplorer(adata)
    tc = TrainingController(adata, max_epochs=500); tc
    PerturbationExplorer(tc, adata, perturbation="CEBPA+KLF1")
    LatentExplorer(adata, model=tc, source="generated", groups="norman")   # UMAP; method="tsne" too
    ComparisonExplorer(tc, adata)                                           # generated vs observed

In a notebook built into a static page (the book), use ``.show(static=True)``: a static page never
runs Python callbacks, so a PNG of ``static_figure()`` is shown beside the widget::

    QCExplorer(adata).show(static=True)
"""

from __future__ import annotations

from .comparison import ComparisonExplorer
from .latent import LatentExplorer
from .perturbation import PerturbationExplorer
from .qc_explorer import QCExplorer
from .training import TrainingController

__all__ = ["QCExplorer", "TrainingController", "PerturbationExplorer", "LatentExplorer", "ComparisonExplorer"]
