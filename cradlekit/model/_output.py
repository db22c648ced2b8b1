"""AnnData outputs of the model: generated cells and expected expression."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import pyro
import pyro.poutine as poutine
import scipy.sparse as sp
import torch
from anndata import AnnData

from .._keys import COMBO_SEP, PERTURBATION_KEY, UNS_KEY
from ..data.perturbations import canonicalize_labels
from ..module import PerturbationVAE
from ..module.generation import seeded

__all__ = ["requested_labels", "generated_anndata", "basal_latent", "artifact_request"]


def artifact_request(artifact: bool, artifacts: Sequence[str] | None) -> tuple[Any, bool | list[str]]:
    """``(what the module generates with, what uns['generation'] records)`` of ``generate``'s two options.

    Raises
    ------
    ValueError
        Both ``artifact=True`` and a list of ``artifacts``.
    """
    if artifacts is None:
        return bool(artifact), bool(artifact)
    names = [artifacts] if isinstance(artifacts, str) else [str(a) for a in artifacts]
    if artifact:
        raise ValueError("pass either artifact=True (an artifact of the training mix) or artifacts=[criteria], "
                         "not both")
    return names, names if names else False


def requested_labels(registry: Mapping[str, Any], perturbations: str | Sequence[str] | None) -> list[str]:
    """Canonical labels (``B+A`` -> ``A+B``) of a request; ``None``: the control and every training perturbation."""
    if perturbations is None:
        return list(registry["trained_perturbations"])
    if isinstance(perturbations, str):
        perturbations = [perturbations]
    control = registry["control_label"]
    return canonicalize_labels([str(p) for p in perturbations], control_label=control, what="perturbations").tolist()


def generated_anndata(
    values: torch.Tensor, labels: list[str], n: int, registry: Mapping[str, Any], *, counts: bool, **info: Any
) -> AnnData:
    """Wrap ``(len(labels) * n, G)`` generated values as an AnnData.

    Returns
    -------
    AnnData
        ``X`` CSR float32 counts (``counts=True``) or a dense float32 array; ``obs['perturbation']``
        (categories in request order), ``obs['generated_artifact']``; the model's genes as
        ``var_names``; ``uns['cradlekit']`` so cradlekit functions read the labels, and
        ``uns['generation']`` with ``model``, ``values``, ``n_per_perturbation`` and ``info``
        (``None`` values left out, so the result can be written to h5ad).
    """
    arr = values.detach().cpu().numpy().astype(np.float32, copy=False)
    n_total = len(labels) * n
    obs = pd.DataFrame(
        {
            PERTURBATION_KEY: pd.Categorical(np.repeat(labels, n), categories=list(dict.fromkeys(labels))),
            "generated_artifact": np.full(n_total, bool(info.get("artifact", False))),
        },
        index=pd.Index([f"generated_{i}" for i in range(n_total)]),
    )
    out = AnnData(X=sp.csr_matrix(arr) if counts else arr, obs=obs, var=pd.DataFrame(index=pd.Index(registry["genes"])))
    out.uns[UNS_KEY] = {
        "perturbation_key": PERTURBATION_KEY,
        "control_label": registry["control_label"],
        "combo_sep": COMBO_SEP,
    }
    out.uns["generation"] = {
        "model": registry["model"],
        "values": "counts" if counts else "expected expression (library_size * rho)",
        "n_per_perturbation": int(n),
        **{k: v for k, v in info.items() if v is not None},
    }
    return out


@torch.no_grad()
def basal_latent(
    module: PerturbationVAE, batches: Iterable[dict[str, torch.Tensor]], *, seed: int | None = 0
) -> np.ndarray:
    """Mean of the guide's per-cell latent (site ``z_b``, else ``z``) for every batch, stacked.

    The guide runs once (one draw of the perturbation latents, under ``seed``) in eval mode.
    """
    device, out = module.device, []
    was_training = module.training
    module.eval()
    try:
        with seeded(seed, device), pyro.validation_enabled(False):
            for batch in batches:
                trace = poutine.trace(module.guide).get_trace({k: v.to(device) for k, v in batch.items()})
                site = trace.nodes["z_b" if "z_b" in trace.nodes else "z"]
                out.append(site["fn"].mean.detach().cpu())
    finally:
        module.train(was_training)
    return torch.cat(out).numpy()
