"""Gene-set matching for the QC criteria."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from cradlekit.errors import MissingKeyError
from cradlekit.qc import gene_set_masks, hb_mask, mito_mask, ribo_mask


def _matched(mask_fn, symbols):
    return [s for s, m in zip(symbols, mask_fn(symbols), strict=True) if m]


def test_ribosomal_includes_rp_genes_and_excludes_kinases_and_pseudogenes():
    included = ["RPL13A", "RPS4X", "RPLP0", "RPLP2", "RPS27A", "RPSA", "RPS4Y1", "RPL36AL",
                "RPL22L1", "RPL10", "RPS2", "Rpl13a", "rps27a"]  # fmt: skip
    excluded = ["RPS6KA1", "RPS6KB1", "RPS6KB2", "RPS6KC1", "RPS6KL1", "rps6ka3", "RPS19BP1",
                "RPL13AP5", "RPS2P46", "RPS10-NUDT3", "RPL34-AS1", "MRPL12", "MRPS5", "RPA1",
                "RPN1", "RPTOR", "RPP14", "RP11-34P13.7"]  # fmt: skip
    assert _matched(ribo_mask, included + excluded) == included


def test_mitochondrial_prefix_human_and_mouse_only():
    symbols = ["MT-CO1", "MT-ND6", "mt-Co1", "mt-Nd1", "MTSS1", "MT1A", "MT2A", "MTOR", "SMT-1"]
    assert _matched(mito_mask, symbols) == ["MT-CO1", "MT-ND6", "mt-Co1", "mt-Nd1"]


def test_hemoglobin_exact_set_not_hb_prefix():
    human = ["HBA1", "HBA2", "HBB", "HBD", "HBE1", "HBG1", "HBG2", "HBM", "HBQ1", "HBZ"]
    decoys = ["HBEGF", "HBP1", "HBS1L", "HBAP1", "HBBP1", "HBG2-AS1", "HB"]
    mouse = ["Hba-a1", "Hbb-bs", "hbb"]
    assert _matched(hb_mask, human + decoys + mouse) == human + mouse


def test_gene_set_masks_from_var_column_and_missing_column():
    adata = ad.AnnData(np.zeros((2, 4), dtype=np.float32))
    adata.var_names = ["ENSG1", "ENSG2", "ENSG3", "ENSG4"]
    adata.var["symbol"] = pd.Categorical(["MT-CO1", "RPL13A", "HBEGF", "HBB"])
    masks = gene_set_masks(adata, gene_symbols="symbol")
    assert masks["mito"].tolist() == [True, False, False, False]
    assert masks["ribo"].tolist() == [False, True, False, False]
    assert masks["hb"].tolist() == [False, False, False, True]
    assert not any(m.any() for m in gene_set_masks(adata).values())  # var_names are ids
    with pytest.raises(MissingKeyError, match="gene_symbols column 'gene_name' not found"):
        gene_set_masks(adata, gene_symbols="gene_name")
