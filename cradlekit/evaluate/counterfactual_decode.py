"""Counterfactual decoding of observed cells: encode with one artifact label, decode with another.

CRADLE-VAE's guide infers a cell's basal state *given* its artifact embedding; decoding that state
with the artifact switched off is the model's answer to "what would this cell have looked like
without the artifact?" (abduction, intervention, prediction). :func:`counterfactual_frequencies`
does this for a batch of tensors; :func:`cradlekit.evaluate.rescue_artifacts` does it for an AnnData.
"""

from __future__ import annotations

from typing import Any

import torch

from ..module.artifact_latents import artifact_draws, combine

__all__ = ["counterfactual_frequencies", "check_cradle_module", "check_criteria", "rescue_designs"]


def check_cradle_module(module: Any) -> None:
    """Raise a clear error unless ``module`` is a CRADLE-VAE variant with an artifact latent."""
    name = type(module).__name__
    if not getattr(module, "has_artifact", False):
        raise ValueError(
            f"artifact rescue needs a model with an artifact latent u (CRADLE-VAE: 'cradle', "
            f"'cradle_wo_cf', 'cradle_wo_causal'); {name} has none, so it cannot tell the artifact "
            "apart from the cell"
        )
    needed = ("effects", "basal_encoder", "decoder", "normalize", "causal")
    missing = [a for a in needed if not hasattr(module, a)]
    if missing or len(module.basal_encoder.first.in_dims) != 3 or len(module.decoder.first.in_dims) != 3:
        raise ValueError(
            f"{name} has an artifact latent but not CRADLE-VAE's layout (encoder q(z_b | x, z_p, z_a) and "
            f"decoder of [z_b, z_p, z_a]; missing {missing}); artifact rescue supports CRADLE-VAE variants only"
        )


@torch.no_grad()
def counterfactual_frequencies(
    module: Any,
    X: torch.Tensor,
    D: torch.Tensor,
    a_encode: torch.Tensor,
    a_decode: float | torch.Tensor = 0.0,
) -> torch.Tensor:
    """Gene frequencies of cells encoded with one artifact label and decoded with another.

    One posterior draw per row: ``z_p = D (e * m)`` with ``(m, e)`` from the guide, ``u`` from
    q(u) (or the fixed ``u`` of *w/o Causal*), ``z_b ~ q(z_b | x, z_p, a_encode * u)`` and
    ``rho = softmax(f_dec([z_b, z_p, a_decode * u]))``. With per-criterion artifact latents the
    labels are ``(n, C)`` flags, one column per criterion, and ``z_a = sum_c a_c u_c`` (a
    criterion's column of ``a_decode`` at 0 switches that artifact off). Uses the global RNG of
    ``X``'s device (wrap in :func:`cradlekit.module.generation.seeded` for reproducibility).

    Parameters
    ----------
    module
        A CRADLE-VAE module (:class:`cradlekit.module.CradleVAE` or an ablation).
    X
        ``(n, G)`` raw counts on the module's device.
    D
        ``(n, T)`` dosages.
    a_encode
        ``(n,)`` artifact label used to infer ``z_b`` (the observed ``a_i``); ``(n, C)`` flags for
        a per-criterion model.
    a_decode
        Artifact label of the decoder input (0: artifact off), a number, ``(n,)`` or (per
        criterion) ``(n, C)``.

    Returns
    -------
    torch.Tensor
        ``(n, G)`` frequencies ``rho`` (rows sum to 1).
    """
    check_cradle_module(module)
    n = X.shape[0]
    z_p = module.effects.sample_effects(D.to(X.dtype))
    us = artifact_draws(module, n, X.device, X.dtype)
    enc = _design(a_encode, n, len(us), X)
    dec = _design(a_decode, n, len(us), X)
    first = module.basal_encoder.first
    pre = first.part(0, module.normalize(X)) + first.part(1, z_p) + combine(enc, [first.part(2, u) for u in us])
    loc, scale = module.basal_encoder.from_preactivation(pre)
    z_b = loc + scale * torch.randn_like(loc)
    return module.decoder.frequencies(z_b, z_p, combine(dec, us))


def _design(a: float | torch.Tensor, n: int, k: int, X: torch.Tensor) -> torch.Tensor:
    """``(n, k)`` artifact labels from a number, ``(n,)`` (one latent) or ``(n, k)``."""
    a = torch.as_tensor(a, dtype=X.dtype, device=X.device)
    if a.dim() == 0:
        return a.expand(n, k)
    if a.dim() == 1 and k == 1:
        return a.reshape(-1, 1)
    if a.shape != (n, k):
        raise ValueError(f"artifact labels must be a number, ({n},) for one artifact latent or ({n}, {k}) "
                         f"(one column per criterion), got {tuple(a.shape)}")
    return a


def check_criteria(module: Any, criteria: Any) -> list[str] | None:
    """The criteria to switch off in a rescue (``None``: every failed one), checked against the model.

    Raises
    ------
    ValueError
        Criteria for a model with one artifact latent, or criteria without a latent.
    """
    if criteria is None:
        return None
    names = [criteria] if isinstance(criteria, str) else [str(c) for c in criteria]
    have = list(getattr(module, "artifact_criteria", ()))
    if not have:
        raise ValueError(f"this model has one artifact latent u for every artifact; it cannot switch off {names} alone "
                         "(train it with artifact_latent='per_criterion')")
    unknown = sorted(set(names) - set(have))
    if unknown or not names:
        raise ValueError(f"no artifact latent for {unknown or names}; this model has one for each of {have}")
    return names


def rescue_designs(module: Any, batch: dict, criteria: list[str] | None, repeat: int) -> tuple[torch.Tensor, Any]:
    """``(encode, decode)`` artifact labels of a rescue batch, each row repeated ``repeat`` times.

    Encode with the observed labels (``A``, or the flags ``A_criteria`` per criterion); decode with
    every artifact off (0), or per criterion with only ``criteria`` switched off.
    """
    have = list(getattr(module, "artifact_criteria", ()))
    enc = (batch["A_criteria"] if have else batch["A"]).to(module.device).repeat_interleave(repeat, dim=0)
    if criteria is None:
        return enc, 0.0
    keep = torch.tensor([0.0 if c in criteria else 1.0 for c in have], device=enc.device, dtype=enc.dtype)
    return enc, enc * keep
