"""Gene-set masks for the QC criteria: mitochondrial, ribosomal and hemoglobin genes.

Matching is on gene *symbols* (``var_names`` or a ``var`` column) and is case-insensitive, so
human (``MT-CO1``, ``RPL13A``, ``HBB``) and mouse (``mt-Co1``, ``Rpl13a``, ``Hba-a1``) symbols
both work.

Rules
-----
mitochondrial
    :data:`MT_PATTERN`: symbols starting with ``MT-`` (``mt-`` in mouse). ``MTSS1`` or
    ``MT1A`` (metallothionein) do not match.
ribosomal
    :data:`RIBO_PATTERN`: cytoplasmic ribosomal protein genes ``RPS<n>``/``RPL<n>`` with an
    optional paralog suffix (``RPS4X``, ``RPS4Y1``, ``RPL13A``, ``RPS27A``, ``RPL10L``,
    ``RPL22L1``, ``RPL36AL``), the acidic stalk proteins ``RPLP0``/``RPLP1``/``RPLP2`` and
    ``RPSA``. Excluded on purpose: ribosomal S6 kinases (``RPS6KA1``, ``RPS6KB2``,
    ``RPS6KC1``, ``RPS6KL1``), ``RPS19BP1``, processed pseudogenes (``RPL13AP5``,
    ``RPS2P46``), read-through loci with a hyphen (``RPS10-NUDT3``), mitochondrial
    ribosomal proteins (``MRPL*``/``MRPS*``) and other ``RP``-prefixed genes (``RPA1``,
    ``RPN1``, ``RPTOR``, ``RPP14`` ...). Note that scanpy's tutorial prefix rule
    (``startswith(("RPS", "RPL"))``) includes the kinases and pseudogenes.
hemoglobin
    The exact symbol set :data:`HB_GENES` (human HBA1, HBA2, HBB, HBD, HBE1, HBG1, HBG2, HBM,
    HBQ1, HBZ and their mouse orthologues). A plain ``HB`` prefix would wrongly catch
    ``HBEGF``, ``HBP1`` and ``HBS1L``.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from anndata import AnnData

from ..errors import MissingKeyError

__all__ = [
    "MT_PATTERN",
    "RIBO_PATTERN",
    "HB_GENES",
    "GENE_SET_OF_CRITERION",
    "gene_symbols_of",
    "mito_mask",
    "ribo_mask",
    "hb_mask",
    "gene_set_masks",
]

#: Mitochondrially encoded genes (matched case-insensitively).
MT_PATTERN = re.compile(r"^MT-", re.IGNORECASE)

#: Cytoplasmic ribosomal protein genes (matched case-insensitively, whole symbol).
#: ``RP[SL]`` + number + optional suffix that is a letter other than ``P`` (pseudogenes)
#: followed by digits (``RPS4Y1``, ``RPL22L1``), or ``AL`` (``RPL36AL``); plus ``RPLP0-2``
#: and ``RPSA``.
RIBO_PATTERN = re.compile(r"^(?:RP[SL]\d+(?:[A-OQ-Z]\d*|AL)?|RPLP\d|RPSA)$", re.IGNORECASE)

_HB_HUMAN = ("HBA1", "HBA2", "HBB", "HBD", "HBE1", "HBG1", "HBG2", "HBM", "HBQ1", "HBZ")
_HB_MOUSE = (
    "Hba-a1", "Hba-a2", "Hba-x", "Hbb-b1", "Hbb-b2", "Hbb-bs", "Hbb-bt", "Hbb-bh1",
    "Hbb-y", "Hbq1a", "Hbq1b",
)  # fmt: skip
#: Hemoglobin genes (exact symbols, compared case-insensitively).
HB_GENES: frozenset[str] = frozenset(_HB_HUMAN + _HB_MOUSE)
_HB_UPPER = frozenset(g.upper() for g in HB_GENES)

#: Which gene set each percentage criterion uses, and how it is described in ``uns``.
GENE_SET_OF_CRITERION = {
    "mito": ("mt", MT_PATTERN.pattern),
    "ribo": ("ribo", RIBO_PATTERN.pattern),
    "hb": ("hb", "exact: " + ",".join(_HB_HUMAN + _HB_MOUSE)),
}


def _as_symbols(symbols) -> pd.Index:
    return pd.Index(np.asarray(symbols, dtype=object).astype(str))


def gene_symbols_of(adata: AnnData, *, gene_symbols: str | None = None) -> pd.Index:
    """Return the gene symbols of ``adata``: ``var_names``, or the ``var`` column ``gene_symbols``.

    Parameters
    ----------
    adata
        Annotated data matrix.
    gene_symbols
        Column of ``adata.var`` holding symbols (use it when ``var_names`` are Ensembl ids).

    Returns
    -------
    pandas.Index
        One string per gene (missing symbols become ``"nan"`` and match nothing).

    Raises
    ------
    cradlekit.errors.MissingKeyError
        If ``gene_symbols`` is not a column of ``adata.var``.
    """
    if gene_symbols is None:
        return _as_symbols(adata.var_names)
    if gene_symbols not in adata.var.columns:
        raise MissingKeyError(
            f"gene_symbols column {gene_symbols!r} not found in adata.var "
            f"(available: {list(adata.var.columns)})"
        )
    return _as_symbols(adata.var[gene_symbols])


def mito_mask(symbols) -> np.ndarray:
    """Boolean mask of mitochondrial genes (``MT-``/``mt-`` prefix).

    Parameters
    ----------
    symbols
        Sequence of gene symbols.

    Returns
    -------
    numpy.ndarray
        ``bool`` array, one entry per symbol.
    """
    return _regex_mask(MT_PATTERN, symbols)


def _regex_mask(pattern: re.Pattern, symbols) -> np.ndarray:
    """Whether each symbol matches ``pattern`` (one pass over the gene names, not the cells)."""
    s = _as_symbols(symbols)
    return np.fromiter((bool(pattern.match(g)) for g in s), dtype=bool, count=len(s))


def ribo_mask(symbols) -> np.ndarray:
    """Boolean mask of cytoplasmic ribosomal protein genes (see :data:`RIBO_PATTERN`).

    Parameters
    ----------
    symbols
        Sequence of gene symbols.

    Returns
    -------
    numpy.ndarray
        ``bool`` array; ``RPS6KA1``/``RPS6KB2`` and pseudogenes are ``False``.
    """
    return _regex_mask(RIBO_PATTERN, symbols)


def hb_mask(symbols) -> np.ndarray:
    """Boolean mask of hemoglobin genes (exact symbols in :data:`HB_GENES`).

    Parameters
    ----------
    symbols
        Sequence of gene symbols.

    Returns
    -------
    numpy.ndarray
        ``bool`` array; ``HBEGF``, ``HBP1``, ``HBS1L`` are ``False``.
    """
    s = _as_symbols(symbols)
    return np.asarray(s.str.upper().isin(_HB_UPPER), dtype=bool)


def gene_set_masks(adata: AnnData, *, gene_symbols: str | None = None) -> dict[str, np.ndarray]:
    """Masks of the three QC gene sets for ``adata``.

    Parameters
    ----------
    adata
        Annotated data matrix.
    gene_symbols
        Column of ``adata.var`` with symbols; ``None`` uses ``var_names``.

    Returns
    -------
    dict
        ``{"mito": mask, "ribo": mask, "hb": mask}``, boolean arrays of length ``n_vars``.
    """
    symbols = gene_symbols_of(adata, gene_symbols=gene_symbols)
    return {"mito": mito_mask(symbols), "ribo": ribo_mask(symbols), "hb": hb_mask(symbols)}
