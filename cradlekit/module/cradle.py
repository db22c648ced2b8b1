"""CRADLE-VAE (the paper's Algorithms 1-3 and Eq. (1)-(5)) and its two ablations (see the book's design page).

Model
    ``m_t ~ Bernoulli(p)^D``, ``e_t ~ N(0, I)``, ``u ~ N(0, I)``, ``z_b,i ~ N(0, I)``;
    ``z_p,i = sum_t D_it (e_t * m_t)``, ``z_a,i = a_i u``;
    ``x_i ~ NB(l_i softmax(f_dec([z_b,i, z_p,i, z_a,i])), theta)``.
    QC-passed cells (``a_i = 0``) are reconstructed through the artifact-off branch and failed
    cells through the artifact-on branch -- both are the single decoder pass on ``z_a = a u``.
Guide
    ``q(m_t)`` free logits (straight-through Gumbel-softmax), ``q(e_t | m_t)`` residual MLP
    4 x 400 of ``[m_t, onehot(t)]``, ``q(u)`` a learnable diagonal Gaussian,
    ``q(z_b | x, z_p, z_a)`` MLP 1 x 400 of ``[log-standardised x, z_p, z_a]``.
Auxiliary loss
    ``J2 = alpha KL(q(z_b | x_cf_ref, z_p, z_a_cf) || q(z_b | x, z_p, z_a_cf))`` with
    ``z_a_cf = (1 - a) u`` (:mod:`.divergence`). The three encoder evaluations needed per cell
    (``z_b``, its counterfactual, the reference) run as one batched forward.

Objectives (``objective=``; the paper's Eq. (2)-(4)):

``"published"`` (the default of this module, the paper's)
    The objective that produced the paper's numbers: the authors' J2 formula (their
    ``kldiv_normal``, which drops the ``1/s2^2`` factor) **summed** over the cells of the batch,
    plus the class-balanced reconstruction (passed cells weigh the batch failure fraction ``f``,
    failed cells ``1 - f``; a batch without failed cells then has no passed-cell reconstruction, as
    in the published code). ``alpha`` (0.5 for Norman) was tuned by the authors for this term.
``"exact"`` (ours)
    The exact Gaussian KL, averaged per cell and weighted ``alpha x 512`` (the authors' batch
    size): the same scale as the published sum over a 512-cell batch, whatever the batch size, and
    the same class-balanced reconstruction, so the KL formula is the only difference between the
    arms.
``"unweighted"`` (ours; the default of :class:`cradlekit.PerturbationModel`, chosen from converged evidence)
    No class weighting of the reconstruction (every cell weighs 1, as in every other model) and
    the exact KL averaged per cell at weight ``alpha``: J2 stays a small term (~0.2 % of the
    objective) and the basal latent keeps its information (no posterior collapse).
``"balanced"`` (ours)
    The published class-balanced reconstruction with the exact KL averaged per cell at weight
    ``alpha`` (the small J2 of ``"unweighted"``): what class balancing does without the summed J2.
``None``
    Set the ingredients yourself, starting from ``"unweighted"``: ``published`` (formula and sum),
    ``class_balanced``, ``j2_cells_per_batch`` (exact formula only; 1 is the per-cell average).
    Explicit ingredients also override a named objective; the resolved name (``objective``
    attribute) is then ``"custom"`` unless they match one.

Ablations: ``alpha=0`` (w/o CF, no J2 computed) and ``causal=False`` (w/o Causal: ``u`` is a
fixed learnable vector, no prior, no KL); both follow the objective they ablate.

Artifact latent (``artifact_latent=``, :mod:`.artifact_latents`): the paper's single ``u``
(``"single"``, the default) or one ``u_c`` per QC criterion (``"per_criterion"``, ours:
``z_a,i = sum_c a_i,c u_c``), with any objective and either ablation.

Differences from the published code, on purpose: the reference encoder call shares the particle
of ``(m, e, u)`` with the other two calls (the published code draws a second, independent
particle for it); ``q(u)`` is a plain learnable Gaussian (published: an MLP of a constant input,
the same family); ``u``'s KL weighs ``1 / N`` per cell (published: plated over failed cells).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import torch
from torch import nn

from . import artifact_latents as al
from .base import Batch, BatchContext, PerturbationVAE
from .divergence import counterfactual_loss
from .layers import GaussianEncoder
from .likelihood import NegativeBinomialDecoder
from .sparse_effects import SparseEffects, dosage_effects

__all__ = ["CradleVAE", "CradleVAEWithoutCF", "CradleVAEWithoutCausal", "OBJECTIVES", "resolve_objective"]

#: The authors' batch size: the exact arm weighs its per-cell KL ``alpha x 512``.
REFERENCE_BATCH_SIZE = 512
#: Named objectives -> (published J2 formula and sum, class-balanced reconstruction, exact-KL cells per batch).
OBJECTIVES: dict[str, tuple[bool, bool, float]] = {
    "published": (True, True, 1.0),
    "exact": (False, True, float(REFERENCE_BATCH_SIZE)),
    "unweighted": (False, False, 1.0),
    "balanced": (False, True, 1.0),
}


def resolve_objective(
    objective: str | None,
    published: bool | None = None,
    class_balanced: bool | None = None,
    j2_cells_per_batch: float | None = None,
) -> tuple[str, bool, bool, float]:
    """``(name, published, class_balanced, j2_cells_per_batch)`` of an objective and explicit ingredients.

    ``objective=None`` starts from the per-cell exact KL without class balancing (all ingredients
    off). The returned name is the named objective whose ingredients match, else ``"custom"``.

    Raises
    ------
    ValueError
        An unknown objective name or a non-positive ``j2_cells_per_batch``.
    """
    if objective is not None and objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {sorted(OBJECTIVES)} or None, got {objective!r}")
    base = OBJECTIVES[objective] if objective is not None else (False, False, 1.0)
    pub = base[0] if published is None else bool(published)
    bal = base[1] if class_balanced is None else bool(class_balanced)
    cells = base[2] if j2_cells_per_batch is None else float(j2_cells_per_batch)
    if not cells > 0:
        raise ValueError(f"j2_cells_per_batch must be positive, got {j2_cells_per_batch}")
    if pub:
        cells = 1.0  # the published sum has its own scale
    name = next((n for n, v in OBJECTIVES.items() if v == (pub, bal, cells)), "custom")
    return name, pub, bal, cells


class CradleVAE(PerturbationVAE):
    """CRADLE-VAE.

    Parameters
    ----------
    n_genes, n_perturbations, n_obs_per_perturbation, n_train
        See :class:`~cradlekit.module.base.PerturbationVAE`.
    latent_dim, hidden_dim, decoder_layers, encoder_layers, log_mean, log_std, num_particles
        See :class:`~cradlekit.module.base.PerturbationVAE`.
    mask_prior
        ``p`` of ``m_t ~ Bernoulli(p)`` (0.01; 0.001 for Replogle/Adamson).
    alpha
        Weight of J2 (0.5 Norman/Dixit, 0.05 Replogle, 0.1 Adamson); 0 disables it.
    causal
        ``u`` is a latent with prior N(0, I) and guide q(u); False: a fixed learnable vector.
    objective
        ``"published"`` (default), ``"exact"`` or ``None`` (see the module docstring).
    published, class_balanced, j2_cells_per_batch
        The ingredients of the objective; ``None`` takes the named objective's value.
    artifact_dispersion
        Give QC-failed cells their own per-gene inverse dispersion ``theta_a`` (ours; the paper
        shares one ``theta`` between all cells). The extra variance of artifacts that ``u``
        cannot express then stays out of the clean cells' ``theta``, which generation with the
        artifact off uses; ``generate(..., artifact=True)`` uses ``theta_a``.
    artifact_latent, artifact_criteria, artifact_patterns
        ``"single"`` (the paper's ``u``) or ``"per_criterion"`` (one ``u_c`` for each criterion of
        ``artifact_criteria``, in the order of the batch's ``A_criteria`` columns);
        ``artifact_patterns`` (``{"mito": n, "doublet+mito": n}``) weighs the failure patterns that
        ``generate(..., artifact=True)`` draws (default: each criterion alone, equally).
    embedding_layers
        Hidden layers of q(e | m) (4).
    mask_init_logit, temperature
        See :class:`~cradlekit.module.sparse_effects.SparseEffects`.
    """

    name: ClassVar[str] = "cradle"
    has_artifact: ClassVar[bool] = True
    takes_objective: ClassVar[bool] = True
    takes_alpha: ClassVar[bool] = True
    takes_mask_prior: ClassVar[bool] = True

    def __init__(
        self,
        n_genes: int,
        n_perturbations: int,
        n_obs_per_perturbation: Any,
        n_train: int,
        *,
        mask_prior: float = 0.01,
        alpha: float = 0.5,
        causal: bool = True,
        objective: str | None = "published",
        published: bool | None = None,
        class_balanced: bool | None = None,
        j2_cells_per_batch: float | None = None,
        artifact_dispersion: bool = False,
        artifact_latent: str = "single",
        artifact_criteria: Any = None,
        artifact_patterns: Any = None,
        embedding_layers: int = 4,
        mask_init_logit: float = 0.0,
        temperature: float = 1.0,
        **kwargs: Any,
    ):
        super().__init__(n_genes, n_perturbations, n_obs_per_perturbation, n_train, **kwargs)
        if alpha < 0:
            raise ValueError("alpha must be >= 0")
        Dz, H = self.latent_dim, self.hidden_dim
        self.alpha = float(alpha)
        self.causal = bool(causal)
        resolved = resolve_objective(objective, published, class_balanced, j2_cells_per_batch)
        self.objective, self.published, self.class_balanced, self.j2_cells_per_batch = resolved
        self.effects = SparseEffects(n_perturbations, Dz, H, embedding_layers, mask_prior, mask_init_logit, temperature)
        self.artifact_latent, self.artifact_criteria = al.check_artifact_latent(artifact_latent, artifact_criteria)
        shape = al.latent_shape(Dz, self.artifact_criteria)
        if self.causal:
            self.u_loc = nn.Parameter(torch.zeros(shape))
            self.u_log_scale = nn.Parameter(torch.zeros(shape))
        else:
            self.u = nn.Parameter(0.1 * torch.randn(shape))
        if self.artifact_criteria:
            design, weight = al.pattern_table(self.artifact_criteria, artifact_patterns)
            self.register_buffer("artifact_pattern_design", design)
            self.register_buffer("artifact_pattern_weight", weight)
        self.basal_encoder = GaussianEncoder(
            [n_genes, Dz, Dz], Dz, H, self.encoder_layers, residual=True
        )
        self.decoder = NegativeBinomialDecoder(
            [Dz, Dz, Dz], n_genes, H, self.decoder_layers
        )
        self.artifact_dispersion = bool(artifact_dispersion)
        if self.artifact_dispersion:
            self.artifact_log_theta = nn.Parameter(torch.zeros(n_genes))

    @property
    def required_keys(self) -> tuple[str, ...]:  # type: ignore[override]
        """``X, D, A`` and, when J2 is on, ``X_cf, cf_mask``; per criterion also ``A_criteria`` (and ``A_cf``)."""
        keys = ("X", "D", "A", "X_cf", "cf_mask") if self.alpha > 0 else ("X", "D", "A")
        if self.artifact_criteria:
            keys += ("A_criteria", "A_cf") if self.alpha > 0 else ("A_criteria",)
        return keys

    # ------------------------------------------------------------------ pyro
    def _artifact(self, batch: Batch) -> torch.Tensor:
        return batch["A"].to(batch["X"].dtype).unsqueeze(-1)

    @contextlib.contextmanager
    def _reconstruction_weights(self, a: torch.Tensor) -> Iterator[None]:
        """Published pass/fail reweighting of the likelihood (no-op unless ``class_balanced``)."""
        if not self.class_balanced:
            yield
            return
        a = a.squeeze(-1)
        f = a.mean()
        w = (1.0 - a) * f + a * (1.0 - f)
        positive = w > 0
        with poutine.mask(mask=positive), poutine.scale(scale=torch.where(positive, w, 1.0)):
            yield

    def model(self, batch: Batch) -> None:
        """p(x, z_b, m, e, u | D, a)."""
        ctx = self._context(batch)
        a = self._artifact(batch)
        design = al.artifact_design(self, batch)
        Dz = self.latent_dim
        with self._per_cell(ctx):
            with self._perturbations(ctx):
                m, e = self.effects.model_sites(ctx.X)
            us = al.model_artifacts(self, ctx)
            z_p = dosage_effects(ctx.D, e * m)
            with self._cells(ctx):
                z_b = pyro.sample("z_b", self._latent_prior(ctx, ctx.batch_size, Dz))
                rho = self._decode(z_b, z_p, us, design)
                with self._reconstruction_weights(a):
                    pyro.sample("x", self.decoder.distribution(rho, ctx.library, self._theta(a)), obs=ctx.X)

    def guide(self, batch: Batch) -> dict[str, torch.Tensor] | None:
        """q(m) q(e | m) q(u) q(z_b | x, z_p, z_a); returns the J2 encoder parameters."""
        ctx = self._context(batch)
        design = al.artifact_design(self, batch)
        with self._per_cell(ctx):
            with self._perturbations(ctx):
                m, e = self.effects.guide_sites()
            us = al.guide_artifacts(self)
            z_p = dosage_effects(ctx.D, e * m)
            with self._cells(ctx):
                loc, scale, aux = self._encode(batch, ctx, z_p, us, design)
                pyro.sample("z_b", dist.Normal(loc, scale).to_event(1))
        return aux

    def _theta(self, a: torch.Tensor) -> torch.Tensor | None:
        """Per-cell inverse dispersion: ``theta_a`` for failed cells with ``artifact_dispersion``, else shared."""
        if not self.artifact_dispersion:
            return None
        return torch.where(a > 0.5, torch.exp(self.artifact_log_theta), self.decoder.theta)

    def generative_theta(self, artifact: Any) -> torch.Tensor | None:  # noqa: D102 - see the base class
        return torch.exp(self.artifact_log_theta) if (al.is_on(artifact) and self.artifact_dispersion) else None

    def _decode(
        self, z_b: torch.Tensor, z_p: torch.Tensor, us: list[torch.Tensor], design: torch.Tensor
    ) -> torch.Tensor:
        """``rho = softmax(f_dec([z_b, z_p, sum_k a_k u_k]))`` with ``W_a (a u)`` computed as ``a (W_a u)``.

        ``u`` has no cell dimension, so its part of the first layer is one row per particle
        instead of a ``(P, B, D) x (D, H)`` product; for ``a`` in {0, 1} the result is identical.
        """
        first = self.decoder.first
        pre = first.part(0, z_b) + first.part(1, z_p) + al.combine(design, [first.part(2, u) for u in us])
        return self.decoder.frequencies_from_preactivation(pre)

    def _encode(
        self, batch: Batch, ctx: BatchContext, z_p: torch.Tensor, us: list[torch.Tensor], design: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor] | None]:
        """q(z_b | x, z_p, z_a) and, with J2, the counterfactual and reference encodings.

        The first layer is assembled by parts (``W_x x + W_p z_p + W_a (a u)`` with
        ``W_a (a u) = a (W_a u)``, summed over the artifact latents), the three pre-activations
        are stacked on a new leading dimension and the rest of the encoder runs once on the stack.
        """
        first = self.basal_encoder.first
        with_j2 = self.alpha > 0
        x_std = self.normalize(ctx.X)
        if with_j2:
            x_std = torch.stack([x_std, self.normalize(batch["X_cf"].to(ctx.X.dtype))])
        hx = first.part(0, x_std)  # (B, H) or (2, B, H); includes the bias
        hp = first.part(1, z_p)  # (..., B, H)
        hu = [first.part(2, u) for u in us]  # each (..., 1, H) or (H,)
        obs = hx[0] if with_j2 else hx
        pre_factual = obs + hp + al.combine(design, hu)
        if not with_j2:
            loc, scale = self.basal_encoder.from_preactivation(pre_factual)
            return loc, scale, None
        pre_cf = hp + al.combine(al.counterfactual_design(self, batch, design), hu)
        pre = torch.stack(torch.broadcast_tensors(pre_factual, hx[0] + pre_cf, hx[1] + pre_cf))
        loc, scale = self.basal_encoder.from_preactivation(pre)
        aux = {"cf_loc": loc[1], "cf_scale": scale[1], "ref_loc": loc[2], "ref_scale": scale[2]}
        return loc[0], scale[0], aux

    def _auxiliary_loss(
        self, batch: Batch, guide_output: dict[str, torch.Tensor] | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``alpha * J2`` (absent when ``alpha == 0``)."""
        if self.alpha == 0 or guide_output is None:
            return batch["X"].new_zeros(()), {}
        cf_mask = batch["cf_mask"].to(device=batch["X"].device, dtype=torch.bool)
        j2 = counterfactual_loss(
            guide_output["ref_loc"],
            guide_output["ref_scale"],
            guide_output["cf_loc"],
            guide_output["cf_scale"],
            cf_mask,
            self.alpha,
            published=self.published,
            cells_per_batch=self.j2_cells_per_batch,
        )
        return j2, {"j2": j2}

    @torch.no_grad()
    def counterfactual_kl(self, batch: Batch, *, seed: int = 0) -> torch.Tensor:
        """Exact ``KL(q(z_b | x_cf_ref, z_p, z_a_cf) || q(z_b | x, z_p, z_a_cf))`` per cell (one guide draw).

        The quantity J2 penalises, measured the same way for every CRADLE-VAE variant (also
        ``alpha = 0``, where J2 is not trained), so a w/o-CF model can be compared with the full
        one on validation cells. Needs ``X_cf`` and ``cf_mask`` in ``batch``; cells without a
        reference are NaN. The global RNG is left as it was.

        Returns
        -------
        torch.Tensor
            ``(B,)`` nats per cell.
        """
        from .divergence import gaussian_kl

        with torch.random.fork_rng(devices=[]), poutine.block():
            torch.manual_seed(int(seed))
            tr = poutine.trace(self.guide).get_trace(batch)
        m, e = tr.nodes["m"]["value"], tr.nodes["e"]["value"]
        us = [tr.nodes[n]["value"] for n in al.site_names(self)] if self.causal else al.guide_artifacts(self)
        X = batch["X"].to(next(self.parameters()).dtype)
        z_p = dosage_effects(batch["D"].to(X.dtype), e * m)
        z_a_cf = al.combine(al.counterfactual_design(self, batch, al.artifact_design(self, batch)), us)
        cf_loc, cf_scale = self.basal_encoder(self.normalize(X), z_p, z_a_cf)
        ref_loc, ref_scale = self.basal_encoder(self.normalize(batch["X_cf"].to(X.dtype)), z_p, z_a_cf)
        kl = gaussian_kl(ref_loc, ref_scale, cf_loc, cf_scale).sum(-1)
        return torch.where(batch["cf_mask"].to(torch.bool), kl, torch.full_like(kl, float("nan")))

    # ------------------------------------------------------------------ generation
    def _generative_frequencies(self, D: torch.Tensor, artifact: Any) -> torch.Tensor:
        """Algorithm 3: ``z_b ~ N(0, I)``, ``z_p`` from the guide, ``z_a`` off (0) or on.

        ``artifact``: see :func:`.artifact_latents.generative_design` (``True``, or criteria names
        for a per-criterion model).
        """
        n = D.shape[0]
        z_b = torch.randn((n, self.latent_dim), device=D.device)
        z_p = self.effects.sample_effects(D)
        design = al.generative_design(self, artifact, n, D.device)
        z_a = torch.zeros_like(z_b) if design is None else al.combine(design, al.artifact_draws(self, n, D.device))
        return self.decoder.frequencies(z_b, z_p, z_a)


class CradleVAEWithoutCF(CradleVAE):
    """Ablation *w/o CF*: CRADLE-VAE with ``alpha = 0`` (no J2 is computed)."""

    name: ClassVar[str] = "cradle_wo_cf"
    takes_alpha: ClassVar[bool] = False  # alpha is 0

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs["alpha"] = 0.0
        super().__init__(*args, **kwargs)


class CradleVAEWithoutCausal(CradleVAE):
    """Ablation *w/o Causal*: ``u`` is a fixed learnable vector (no ``u`` site, prior or KL)."""

    name: ClassVar[str] = "cradle_wo_causal"

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs["causal"] = False
        super().__init__(*args, **kwargs)
