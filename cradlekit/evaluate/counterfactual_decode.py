"""Counterfactual decoding of observed cells: encode with one artifact label, decode with another.

CRADLE-VAE's guide infers a cell's basal state *given* its artifact embedding; decoding that state
with the artifact switched off is the model's answer to "what would this cell have looked like
without the artifact?" (abduction, intervention, prediction). :func:`counterfactual_frequencies`
does this for a batch of tensors; :func:`cradlekit.evaluate.rescue_artifacts` does it for an AnnData.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["counterfactual_frequencies", "check_cradle_module"]


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


def _artifact_embedding(module: Any, n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(n, D)`` draws of ``u``: from q(u) (causal) or the fixed learned vector (w/o Causal)."""
    if module.causal:
        eps = torch.randn((n, module.latent_dim), device=device, dtype=dtype)
        return module.u_loc + torch.exp(module.u_log_scale) * eps
    return module.u.to(dtype).expand(n, -1)


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
    ``rho = softmax(f_dec([z_b, z_p, a_decode * u]))``. Uses the global RNG of ``X``'s device
    (wrap in :func:`cradlekit.module.generation.seeded` for reproducibility).

    Parameters
    ----------
    module
        A CRADLE-VAE module (:class:`cradlekit.module.CradleVAE` or an ablation).
    X
        ``(n, G)`` raw counts on the module's device.
    D
        ``(n, T)`` dosages.
    a_encode
        ``(n,)`` artifact label used to infer ``z_b`` (the observed ``a_i``).
    a_decode
        Artifact label of the decoder input (0: artifact off), a number or ``(n,)``.

    Returns
    -------
    torch.Tensor
        ``(n, G)`` frequencies ``rho`` (rows sum to 1).
    """
    check_cradle_module(module)
    n = X.shape[0]
    z_p = module.effects.sample_effects(D.to(X.dtype))
    u = _artifact_embedding(module, n, X.device, X.dtype)
    a_enc = torch.as_tensor(a_encode, dtype=X.dtype, device=X.device).reshape(-1, 1)
    a_dec = torch.as_tensor(a_decode, dtype=X.dtype, device=X.device)
    a_dec = a_dec.reshape(-1, 1) if a_dec.dim() else a_dec
    first = module.basal_encoder.first
    pre = first.part(0, module.normalize(X)) + first.part(1, z_p) + a_enc * first.part(2, u)
    loc, scale = module.basal_encoder.from_preactivation(pre)
    z_b = loc + scale * torch.randn_like(loc)
    return module.decoder.frequencies(z_b, z_p, a_dec * u)
