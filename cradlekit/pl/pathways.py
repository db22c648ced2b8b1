"""The six Norman et al. (2019) gene-program groups used to colour Figure 4 of the paper.

CRADLE-VAE's Figure 4 colours generated Norman cells by "six pathways" following Norman et al.
(2019): pro-growth, megakaryocyte, erythroid, granulocyte/apoptosis, G1 cell cycle and pioneer
factors. The paper does not list which perturbation belongs to which group. The assignment
below is the published one of contrastiveVI (Weinberger, Lin & Lee, *Nature Methods* 2023,
``contrastive_vi/data/datasets/norman_2019.py``), which uses the same six names and was obtained
by cross-referencing the expression heatmap of Norman's ``GI_optimal_umap.ipynb`` with Fig. 2b
of Norman et al. 2019. Labels are written here in cradlekit's canonical form (targets sorted,
joined by ``+``, ``ctrl`` dropped), deduplicated. Perturbations not listed are ``"other"``: no
assignment is guessed from gene function (e.g. ``FOXL2+HOXB9`` is not listed although three
other ``+HOXB9`` pairs are pioneer factors).

Local Norman subset (``perturbench_devel_norman19_mcfaline23_counts500.h5ad``, 34 conditions):
assigned are BPGM+SAMD1, CBL+CNN1, PTPN12+PTPN9, PTPN12+SAMD1 (erythroid); CEBPE+RUNX1T1
(granulocyte/apoptosis); KLF1, KLF1+MAP2K6, KLF1+TGFBR2 (pro-growth); MAPK1, MAPK1+TGFBR2
(megakaryocyte); MIDN (pioneer factors). No G1 cell-cycle perturbation is in that subset; the
other 22 non-control conditions are ``"other"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from .._keys import COMBO_SEP, CONTROL_LABEL

__all__ = ["NORMAN_PATHWAYS", "norman_pathway_groups"]

#: Group name → canonical perturbation labels (Norman et al. 2019 via contrastiveVI; see module doc).
NORMAN_PATHWAYS: Mapping[str, tuple[str, ...]] = {
    "pro-growth": ("KLF1", "AHR+KLF1", "BAK1+KLF1", "CEBPE+KLF1", "KLF1+MAP2K6", "KLF1+TGFBR2"),
    "megakaryocyte": ("ETS2", "MAPK1", "CEBPB+MAPK1", "ETS2+MAPK1", "MAPK1+TGFBR2"),
    "erythroid": (
        "ATL1", "PTPN1", "BPGM+SAMD1", "CBL+CNN1", "CBL+PTPN12", "CBL+PTPN9", "CBL+UBASH3B",
        "CNN1+UBASH3A", "CNN1+UBASH3B", "PTPN12+PTPN9", "PTPN12+SAMD1", "PTPN12+UBASH3A",
        "PTPN12+UBASH3B", "PTPN12+ZBTB25", "PTPN9+UBASH3B", "SAMD1+UBASH3B", "UBASH3A+UBASH3B",
        "UBASH3B+ZBTB25",
    ),
    "granulocyte/apoptosis": (
        "CEBPA", "CEBPB", "CEBPE", "SPI1", "CEBPA+CEBPB", "CEBPA+CEBPE", "CEBPA+JUN", "CEBPA+KLF1",
        "CEBPA+ZC3HAV1", "CEBPB+CEBPE", "CEBPB+FOSB", "CEBPE+ETS2", "CEBPE+FOSB", "CEBPE+RUNX1T1",
        "CEBPE+SPI1",
    ),
    "G1 cell cycle": ("CDKN1A", "CDKN1B", "CDKN1C", "CDKN1A+CDKN1B", "CDKN1A+CDKN1C", "CDKN1B+CDKN1C"),
    "pioneer factors": (
        "FOXA3", "HOXA13", "HOXC13", "MIDN", "TP73", "CBFA2T3+POU3F2", "DUSP9+SNAI1", "FOXA1+FOXA3",
        "FOXA1+FOXF1", "FOXA1+FOXL2", "FOXA1+HOXB9", "FOXA3+FOXL2", "FOXA3+HOXB9", "FOXF1+FOXL2",
        "FOXF1+HOXB9", "FOXL2+MEIS1", "FOXL2+POU3F2", "IER5L+LYL1", "SNAI1+ZBTB10",
    ),
}  # fmt: skip

_GROUP_OF = {label: group for group, labels in NORMAN_PATHWAYS.items() for label in labels}
_CONTROL_ALIASES = ("ctrl", "control", "non-targeting", "")


def _canonical(label: str, sep: str, control_labels: set[str]) -> str:
    targets = sorted({t.strip() for t in str(label).split(sep)} - control_labels)
    return sep.join(targets)


def norman_pathway_groups(
    perturbations: Iterable[str] | None = None,
    *,
    control_label: str = CONTROL_LABEL,
    control_group: str = "control",
    other: str = "other",
    sep: str = COMBO_SEP,
) -> dict[str, str]:
    """Map Norman 2019 perturbation labels to the six pathway groups of the paper's Figure 4.

    Parameters
    ----------
    perturbations
        Labels to map (e.g. ``adata.obs["perturbation"].unique()``), in any target order and with
        or without ``ctrl`` parts (``"ctrl+KLF1"``, ``"SAMD1+PTPN12"``). ``None``: every label of
        :data:`NORMAN_PATHWAYS` (canonical form).
    control_label
        Label of control cells; they map to ``control_group``.
    control_group
        Group name of the controls.
    other
        Group name of perturbations with no assignment.
    sep
        Separator of combined targets.

    Returns
    -------
    dict
        ``{label as given: group}``, ready for ``generated_tsne(..., groups=...)``.

    Examples
    --------
    >>> norman_pathway_groups(["KLF1", "SAMD1+PTPN12", "control", "HK2"])
    {'KLF1': 'pro-growth', 'SAMD1+PTPN12': 'erythroid', 'control': 'control', 'HK2': 'other'}
    """
    if perturbations is None:
        return dict(_GROUP_OF)
    controls = {control_label, *_CONTROL_ALIASES}
    out = {}
    for label in perturbations:
        canonical = _canonical(label, sep, controls)
        out[str(label)] = control_group if not canonical else _GROUP_OF.get(canonical, other)
    return out
