"""CRADLE-VAE's artifact latent: the paper's single ``u`` or one ``u_c`` per QC criterion (ours).

``artifact_latent="single"`` (the paper's)
    ``z_a,i = a_i u`` with one ``u ~ N(0, I)`` for every QC-failed cell, whatever it failed.
``artifact_latent="per_criterion"`` (ours; design page, "Which artifact")
    ``z_a,i = sum_c a_i,c u_c`` over the QC criteria ``c`` of the model (``artifact_criteria``),
    ``a_i,c = 1`` when cell ``i`` failed criterion ``c``; each ``u_c ~ N(0, I)`` is its own Pyro site
    ``u_<criterion>`` with its own diagonal Gaussian guide (``w/o Causal``: its own fixed learnable
    vector). A low-UMI cell and a mitochondrial outlier then get different artifact embeddings, and a
    cell failing two criteria gets their sum.

Both are written here as a list of ``K`` artifact vectors (``K = 1`` or the number of criteria) and a
per-cell *design* ``(B, K)`` of 0/1 weights, so that ``z_a = design @ [u_1 .. u_K]``. The single
``u`` is the case ``K = 1``, ``design = a``: the code path of the paper's model computes exactly what
it computed before this option existed (same operations, same random draws).

The batch carries the design: ``A`` (``(B,)``, any criterion failed) for the single ``u``;
``A_criteria`` (``(B, C)``) for per-criterion latents, and ``A_cf`` (``(B, C)``) the artifact of the
counterfactual encoding of J2 (the paper's ``(1 - a_i) u`` for the single ``u``): for a QC-passed
cell with a reference, the share of the reference's failed cells that failed each criterion; 0 (every
criterion off) for failed cells.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyro
import pyro.distributions as dist
import torch

__all__ = [
    "ARTIFACT_LATENTS", "check_artifact_latent", "latent_shape", "site_names", "model_artifacts",
    "guide_artifacts", "artifact_design", "counterfactual_design", "combine", "artifact_draws",
    "generative_design", "pattern_table", "is_on",
]

#: The two kinds of artifact latent.
ARTIFACT_LATENTS = ("single", "per_criterion")


def check_artifact_latent(kind: str, criteria: Sequence[str] | None) -> tuple[str, tuple[str, ...]]:
    """``(kind, criteria)`` checked: a known kind, criteria only (and then at least one) for ``per_criterion``.

    Raises
    ------
    ValueError
        An unknown kind, criteria for the single ``u``, none or repeated ones for ``per_criterion``.
    """
    if kind not in ARTIFACT_LATENTS:
        raise ValueError(f"artifact_latent must be one of {ARTIFACT_LATENTS}, got {kind!r}")
    names = tuple(str(c) for c in (criteria or ()))
    if kind == "single":
        if names:
            raise ValueError("artifact_criteria is for artifact_latent='per_criterion' only")
        return kind, ()
    if not names:
        raise ValueError("artifact_latent='per_criterion' needs artifact_criteria: the QC criteria that get a latent "
                         "(PerturbationModel reads them from the data's QC labels)")
    if len(set(names)) != len(names):
        raise ValueError(f"artifact_criteria has repeated criteria: {names}")
    return kind, names


def latent_shape(latent_dim: int, criteria: Sequence[str]) -> tuple[int, ...]:
    """Shape of the artifact parameters: ``(D,)`` for the single ``u``, ``(C, D)`` per criterion."""
    return (len(criteria), int(latent_dim)) if criteria else (int(latent_dim),)


def site_names(module: Any) -> list[str]:
    """Pyro sites of the artifact latents: ``["u"]`` or ``["u_<criterion>", ...]``."""
    criteria = module.artifact_criteria
    return [f"u_{c}" for c in criteria] if criteria else ["u"]


def _fixed(module: Any) -> list[torch.Tensor]:
    """The learnable vectors of *w/o Causal* (no site)."""
    return list(module.u.unbind(0)) if module.artifact_criteria else [module.u]


def model_artifacts(module: Any, ctx: Any) -> list[torch.Tensor]:
    """Prior draws ``u_k ~ N(0, I)`` (one site each; weight ``1 / N`` per cell), or the fixed vectors."""
    if not module.causal:
        return _fixed(module)
    return [pyro.sample(name, module._latent_prior(ctx, module.latent_dim)) for name in site_names(module)]


def guide_artifacts(module: Any) -> list[torch.Tensor]:
    """Guide draws ``u_k ~ N(loc_k, scale_k)`` (learnable diagonal Gaussians), or the fixed vectors."""
    if not module.causal:
        return _fixed(module)
    scale = torch.exp(module.u_log_scale)
    if not module.artifact_criteria:
        return [pyro.sample("u", dist.Normal(module.u_loc, scale).to_event(1))]
    return [pyro.sample(name, dist.Normal(module.u_loc[c], scale[c]).to_event(1))
            for c, name in enumerate(site_names(module))]


def _columns(batch: Mapping[str, Any], key: str, n_criteria: int, dtype: torch.dtype) -> torch.Tensor:
    value = batch[key].to(dtype)
    if value.dim() != 2 or value.shape[1] != n_criteria:
        raise ValueError(f"batch[{key!r}] must have shape (B, {n_criteria}) (one column per artifact criterion), "
                         f"got {tuple(value.shape)}")
    return value


def artifact_design(module: Any, batch: Mapping[str, Any]) -> torch.Tensor:
    """``(B, K)``: ``a_i`` (single ``u``) or the per-criterion flags ``a_i,c`` of the batch."""
    dtype = batch["X"].dtype
    if not module.artifact_criteria:
        return batch["A"].to(dtype).unsqueeze(-1)
    return _columns(batch, "A_criteria", len(module.artifact_criteria), dtype)


def counterfactual_design(module: Any, batch: Mapping[str, Any], design: torch.Tensor) -> torch.Tensor:
    """``(B, K)`` artifact of J2's counterfactual encodings: ``1 - a_i`` (single ``u``) or ``A_cf``."""
    if not module.artifact_criteria:
        return 1.0 - design
    return _columns(batch, "A_cf", len(module.artifact_criteria), batch["X"].dtype)


def combine(design: torch.Tensor, parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """``sum_k design[:, k] * parts[k]`` (``parts[k]``: a vector, or per-cell rows, broadcast on cells)."""
    out = design[..., 0:1] * parts[0]
    for k in range(1, len(parts)):
        out = out + design[..., k : k + 1] * parts[k]
    return out


def artifact_draws(module: Any, n: int, device: torch.device, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    """``K`` tensors ``(n, D)``: independent draws of each ``u_k`` from its guide, or the fixed vectors."""
    if not module.causal:
        return [u.to(dtype).expand(n, -1) for u in _fixed(module)]
    scale = torch.exp(module.u_log_scale)
    if not module.artifact_criteria:
        eps = torch.randn((n, module.latent_dim), device=device, dtype=dtype)
        return [module.u_loc + scale * eps]
    out = []
    for c in range(len(module.artifact_criteria)):
        eps = torch.randn((n, module.latent_dim), device=device, dtype=dtype)
        out.append(module.u_loc[c] + scale[c] * eps)
    return out


def pattern_table(criteria: Sequence[str], patterns: Mapping[str, float] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(design (P, C), weights (P,))`` of failure patterns such as ``{"mito": 40, "doublet+mito": 3}``.

    ``None``: each criterion alone, equally weighted.

    Raises
    ------
    ValueError
        A pattern naming a criterion the model has no latent for, or no positive weight.
    """
    criteria = list(criteria)
    if not patterns:
        patterns = {c: 1.0 for c in criteria}
    rows, weights = [], []
    for name, weight in patterns.items():
        parts = [p for p in str(name).split("+") if p]
        unknown = sorted(set(parts) - set(criteria))
        if unknown or not parts:
            raise ValueError(f"artifact pattern {name!r} names criteria without a latent: {unknown}; "
                             f"the model has {criteria}")
        rows.append([1.0 if c in parts else 0.0 for c in criteria])
        weights.append(float(weight))
    w = torch.tensor(weights)
    if not bool((w >= 0).all()) or float(w.sum()) <= 0:
        raise ValueError(f"artifact pattern weights must be non-negative with a positive sum, got {weights}")
    return torch.tensor(rows), w


def is_on(artifact: Any) -> bool:
    """Whether a generation request switches an artifact on (``True``, or a non-empty list of criteria)."""
    if artifact is None or isinstance(artifact, bool):
        return bool(artifact)
    return len([artifact] if isinstance(artifact, str) else list(artifact)) > 0


def generative_design(module: Any, artifact: Any, n: int, device: torch.device) -> torch.Tensor | None:
    """``(n, K)`` artifact design of generated cells, or ``None`` for artifact-free cells (Algorithm 3).

    ``artifact``: ``False`` / ``None`` / empty (off); ``True`` (single ``u``: on; per criterion: each
    cell draws a failure pattern with the training frequencies of the QC-failed cells,
    ``artifact_patterns``); a criterion name or a list of names (per criterion only: those on).

    Raises
    ------
    ValueError
        Criteria for a single-``u`` model, or criteria the model has no latent for.
    """
    if not is_on(artifact):
        return None
    criteria = list(module.artifact_criteria)
    if artifact is True:
        if not criteria:
            return torch.ones((n, 1), device=device)
        design, weights = module.artifact_pattern_design, module.artifact_pattern_weight
        idx = torch.multinomial(weights.to(device), n, replacement=True)
        return design.to(device)[idx]
    wanted = [artifact] if isinstance(artifact, str) else [str(a) for a in artifact]
    if not criteria:
        raise ValueError(f"this model has one artifact latent u (artifact_latent='single'); it cannot switch on "
                         f"{wanted} alone: use artifact=True, or train with artifact_latent='per_criterion'")
    unknown = sorted(set(wanted) - set(criteria))
    if unknown:
        raise ValueError(f"no artifact latent for {unknown}; this model has one for each of {criteria}")
    row = torch.tensor([1.0 if c in wanted else 0.0 for c in criteria], device=device)
    return row.expand(n, -1)
