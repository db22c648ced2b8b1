"""The common base of every model: batch checks, minibatch scaling, the ELBO and generation.

Batch interface
---------------
A batch is a dict of tensors on one device:

``X``        ``(B, G)`` raw counts (float32).
``D``        ``(B, T)`` perturbation dosages (0/1; a combination has two ones; controls all zero).
             sVAE+ takes a one-hot of unique conditions instead (see :mod:`.svae_plus`).
``A``        ``(B,)`` artifact label ``a_i`` in {0, 1} (float). Read by CRADLE-VAE only.
``X_cf``     ``(B, G)`` counterfactual reference counts. CRADLE-VAE with ``alpha > 0`` only.
``cf_mask``  ``(B,)`` bool, True where the cell is QC-passed and has a reference. Same.
Optional overrides of the scaling constants, e.g. to score a validation split:
``n_obs_per_perturbation`` ``(T,)`` and ``n_cells`` (0-dim tensor or number).

The library size is ``l = X.sum(1)``.

Scaling (a minibatch estimates the full-data ELBO divided by the number of cells)
---------------------------------------------------------------------------------
With ``N`` training cells, a batch of ``B`` cells and ``c_t`` cells of the batch receiving
perturbation ``t`` (of ``n_t`` in training):

* everything is inside ``poutine.scale(1 / N)`` (per-cell normalisation);
* per-cell sites are in ``pyro.plate("cells", N, subsample=arange(B))`` (scale ``N / B``), so
  they weigh ``1 / B``: the batch mean;
* perturbation-plated sites (masks, embeddings) are in ``pyro.plate("perturbations", T)`` with
  ``poutine.scale(N / B * c_t / n_t)`` (SAMS-VAE's plated ``1 / n_t`` reweighting: each cell
  carries ``1 / n_t`` of the KL of each of its perturbations) and ``poutine.mask(c_t > 0)``;
  in expectation over batches each weighs ``1 / N``, and over a partition of the data into
  equal batches the mean of the batch losses is exactly the full-data loss;
* the global artifact embedding ``u`` weighs ``1 / N`` in every batch.

The ELBO is estimated with ``num_particles`` particles vectorised in the outermost plate
``"num_particles_vectorized"`` (dim ``-2``), exactly as ``pyro.infer.Trace_ELBO(num_particles,
vectorize_particles=True, max_plate_nesting=1)`` does; :meth:`PerturbationVAE.loss` reads the
per-site terms from the traces so it can report them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import pyro
import pyro.poutine as poutine
import torch
from pyro.poutine.util import site_is_subsample
from torch import nn

from ..errors import MissingKeyError, NonFiniteLossError
from .generation import generate_cells
from .likelihood import NegativeBinomialDecoder
from .standardize import LogStandardize

__all__ = ["PerturbationVAE", "BatchContext", "OBJECTIVE_OPTIONS"]

Batch = Mapping[str, Any]

#: Constructor options of the models with :attr:`PerturbationVAE.takes_objective` (CRADLE-VAE's):
#: the objective and its ingredients (:func:`cradlekit.module.cradle.resolve_objective`) and the
#: artifacts' own dispersion.
OBJECTIVE_OPTIONS = ("objective", "published", "class_balanced", "j2_cells_per_batch", "artifact_dispersion")


@dataclass
class BatchContext:
    """Quantities derived once per call from a batch (see the module docstring)."""

    X: torch.Tensor
    D: torch.Tensor
    library: torch.Tensor
    subsample: torch.Tensor
    n_cells: int
    pert_weight: torch.Tensor
    pert_mask: torch.Tensor

    @property
    def batch_size(self) -> int:
        """Number of cells ``B`` in the batch."""
        return self.X.shape[0]


class PerturbationVAE(nn.Module):
    """Base class: Pyro ``model``/``guide`` methods, ``loss``, ``generate`` and ``predict_mean``.

    Subclasses implement :meth:`model`, :meth:`guide` and :meth:`_generative_frequencies`.

    Parameters
    ----------
    n_genes
        Number of genes ``G``.
    n_perturbations
        Number of perturbations ``T`` (columns of ``D``).
    n_obs_per_perturbation
        ``(T,)`` number of training cells receiving each perturbation.
    n_train
        Number of training cells ``N``.
    latent_dim
        Latent width ``D`` (200; 100 for Adamson).
    hidden_dim
        Hidden width of every network (400).
    decoder_layers
        Hidden layers of the decoder (2).
    encoder_layers
        Hidden layers of the per-cell encoder (1).
    log_mean, log_std
        Per-gene statistics of ``log1p(x)`` on the training split (see
        :func:`~cradlekit.module.standardize.log_standardize_stats`).
    num_particles
        Monte-Carlo particles of the ELBO (5).
    """

    #: Name in :data:`cradlekit.module.MODELS`.
    name: ClassVar[str] = "base"
    #: Whether the model has an artifact latent (``artifact=True`` in generation; it reads ``A``).
    has_artifact: ClassVar[bool] = False
    #: Whether the constructor takes CRADLE-VAE's objective options (:data:`OBJECTIVE_OPTIONS`).
    takes_objective: ClassVar[bool] = False
    #: Whether the constructor takes the J2 weight ``alpha`` (then, with ``alpha > 0``, the model
    #: reads counterfactual references).
    takes_alpha: ClassVar[bool] = False
    #: Whether the model has Bernoulli perturbation masks with prior ``mask_prior`` (SAMS-VAE's sparse
    #: effects; sVAE+'s masks have a Beta prior instead).
    takes_mask_prior: ClassVar[bool] = False
    #: Plates nested inside the particle plate.
    max_plate_nesting: ClassVar[int] = 1
    #: Batch keys the model reads.
    required_keys: ClassVar[tuple[str, ...]] = ("X", "D")
    #: The observation model; every subclass creates one.
    decoder: NegativeBinomialDecoder
    #: Pyro and torch distribution validation inside :meth:`loss` (off: its checks, about 60
    #: per step, each force a host-device synchronisation; batches are checked by shape and
    #: the trainer checks that the loss is finite). Set to True on an instance to debug.
    validate: bool = False

    def __init__(
        self,
        n_genes: int,
        n_perturbations: int,
        n_obs_per_perturbation: Any,
        n_train: int,
        *,
        latent_dim: int = 200,
        hidden_dim: int = 400,
        decoder_layers: int = 2,
        encoder_layers: int = 1,
        log_mean: torch.Tensor | None = None,
        log_std: torch.Tensor | None = None,
        num_particles: int = 5,
    ):
        super().__init__()
        n_obs = torch.as_tensor(n_obs_per_perturbation, dtype=torch.float32).detach().clone()
        if n_obs.shape != (n_perturbations,):
            raise ValueError(
                f"n_obs_per_perturbation must have shape ({n_perturbations},), got {tuple(n_obs.shape)}"
            )
        if int(n_train) < 1:
            raise ValueError("n_train must be positive")
        if num_particles < 1:
            raise ValueError("num_particles must be >= 1")
        self.n_genes = int(n_genes)
        self.n_perturbations = int(n_perturbations)
        self.latent_dim = int(latent_dim)
        self.hidden_dim = int(hidden_dim)
        self.decoder_layers = int(decoder_layers)
        self.encoder_layers = int(encoder_layers)
        self.n_train = int(n_train)
        self.num_particles = int(num_particles)
        self.register_buffer("n_obs_per_perturbation", n_obs)
        self.normalize = LogStandardize(n_genes, log_mean, log_std)

    # ------------------------------------------------------------------ helpers
    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return next(self.parameters()).device

    def _context(self, batch: Batch) -> BatchContext:
        missing = [k for k in self.required_keys if k not in batch]
        if missing:
            raise MissingKeyError(
                f"{type(self).__name__} batch lacks {missing}; it has {sorted(batch.keys())}"
            )
        X, D = batch["X"], batch["D"]
        if X.dim() != 2 or X.shape[1] != self.n_genes:
            raise ValueError(f"X must have shape (B, {self.n_genes}), got {tuple(X.shape)}")
        if D.shape != (X.shape[0], self.n_perturbations):
            raise ValueError(
                f"D must have shape ({X.shape[0]}, {self.n_perturbations}), got {tuple(D.shape)}"
            )
        B = X.shape[0]
        n_obs = batch.get("n_obs_per_perturbation", self.n_obs_per_perturbation)
        n_obs = torch.as_tensor(n_obs, dtype=X.dtype, device=X.device)
        n_cells = int(batch.get("n_cells", self.n_train))
        count = (D != 0).to(X.dtype).sum(0)
        pert_mask = (count > 0) & (n_obs > 0)
        weight = (n_cells / B) * count / torch.where(n_obs > 0, n_obs, torch.ones_like(n_obs))
        weight = torch.where(pert_mask, weight, torch.ones_like(weight))
        return BatchContext(
            X=X,
            D=D.to(X.dtype),
            library=X.sum(-1),
            subsample=torch.arange(B, device=X.device),
            n_cells=n_cells,
            pert_weight=weight,
            pert_mask=pert_mask,
        )

    def _per_cell(self, ctx: BatchContext) -> poutine.scale:
        """Outer handler dividing the whole ELBO by the number of cells."""
        return poutine.scale(scale=1.0 / ctx.n_cells)

    def _cells(self, ctx: BatchContext) -> pyro.plate:
        """The subsampled per-cell plate (scale ``N / B``)."""
        return pyro.plate("cells", ctx.n_cells, subsample=ctx.subsample, dim=-1)

    @contextlib.contextmanager
    def _perturbations(self, ctx: BatchContext) -> Iterator[None]:
        """The perturbation plate with SAMS-VAE's per-perturbation ``c_t / n_t`` scaling."""
        with (
            pyro.plate("perturbations", self.n_perturbations, dim=-1),
            poutine.mask(mask=ctx.pert_mask),
            poutine.scale(scale=ctx.pert_weight),
        ):
            yield

    def _latent_prior(self, ctx: BatchContext, *shape: int) -> pyro.distributions.Normal:
        """Standard normal of the given shape on the batch's device, last dim as event."""
        zero = torch.zeros((), device=ctx.X.device, dtype=ctx.X.dtype)
        return pyro.distributions.Normal(zero, 1.0).expand(list(shape)).to_event(1)

    # ------------------------------------------------------------------ pyro
    def model(self, batch: Batch) -> None:
        """The generative model p(x, latents | D, A) with Pyro primitives."""
        raise NotImplementedError

    def guide(self, batch: Batch) -> Any:
        """The variational distribution q(latents | x, D, A) with Pyro primitives."""
        raise NotImplementedError

    def traces(
        self, batch: Batch, num_particles: int | None = None
    ) -> tuple[poutine.Trace, poutine.Trace]:
        """Guide trace and model trace replayed against it, particles vectorised.

        With one particle no particle plate is added (as in ``Trace_ELBO``).
        """
        P = self.num_particles if num_particles is None else int(num_particles)
        plate = (
            pyro.plate("num_particles_vectorized", P, dim=-(self.max_plate_nesting + 1))
            if P > 1
            else contextlib.nullcontext()
        )
        with plate:
            guide_tr = poutine.trace(self.guide).get_trace(batch)
            model_tr = poutine.trace(poutine.replay(self.model, trace=guide_tr)).get_trace(batch)
        return model_tr, guide_tr

    def loss(
        self, batch: Batch, *, num_particles: int | None = None, check_finite: bool = False
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Negative ELBO per cell (plus auxiliary terms) and its parts.

        Pyro's validation is switched off while the loss is computed unless :attr:`validate`
        is True.

        Parameters
        ----------
        batch
            See the module docstring.
        num_particles
            Overrides the module's number of particles.
        check_finite
            Raise :class:`~cradlekit.errors.NonFiniteLossError` on a NaN/inf loss (forces a
            device synchronisation; the trainer checks too).

        Returns
        -------
        loss
            Scalar to minimise.
        parts
            Detached 0-dim tensors: ``loss``, ``elbo``, ``reconstruction`` (per-cell
            log-likelihood), ``kl_<site>`` for every latent site (``log q - log p``, scaled as
            in the ELBO) and the model's auxiliary terms (``j2`` for CRADLE-VAE).
        """
        P = self.num_particles if num_particles is None else int(num_particles)
        with pyro.validation_enabled(self.validate):
            model_tr, guide_tr = self.traces(batch, P)
            return self._loss_from_traces(batch, model_tr, guide_tr, P, check_finite)

    def _loss_from_traces(
        self,
        batch: Batch,
        model_tr: poutine.Trace,
        guide_tr: poutine.Trace,
        P: int,
        check_finite: bool,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The ELBO's terms read from the traces (see :meth:`loss`)."""
        recon = model_tr.log_prob_sum(lambda name, site: site["is_observed"]) / P
        kls: dict[str, torch.Tensor] = {}
        for name, site in guide_tr.nodes.items():
            if site["type"] != "sample" or site["is_observed"] or site_is_subsample(site):
                continue
            q = guide_tr.log_prob_sum(lambda n, s, _name=name: n == _name)
            p = model_tr.log_prob_sum(lambda n, s, _name=name: n == _name)
            kls[f"kl_{name}"] = (q - p) / P
        elbo = recon - sum(kls.values(), recon.new_zeros(()))
        aux, aux_parts = self._auxiliary_loss(batch, guide_tr.nodes["_RETURN"]["value"])
        loss = -elbo + aux
        if check_finite and not bool(torch.isfinite(loss)):
            raise NonFiniteLossError(f"{type(self).__name__} loss is {float(loss)}")
        parts = {"loss": loss, "elbo": elbo, "reconstruction": recon, **kls, **aux_parts}
        return loss, {k: v.detach() for k, v in parts.items()}

    def _auxiliary_loss(
        self, batch: Batch, guide_output: Any
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Extra loss terms computed from the guide's return value (none by default)."""
        return batch["X"].new_zeros(()), {}

    # ------------------------------------------------------------------ generation
    def _generative_frequencies(self, D: torch.Tensor, artifact: bool) -> torch.Tensor:
        """Sample latents for each row of ``D`` and return gene frequencies ``(n, G)``."""
        raise NotImplementedError

    def generative_theta(self, artifact: bool) -> torch.Tensor | None:
        """Inverse dispersion of generated counts (``None``: the decoder's own, shared by all cells)."""
        return None

    @torch.no_grad()
    def predict_mean(
        self,
        D_rows: torch.Tensor,
        n_per_row: int,
        *,
        library_size: float = 1e4,
        artifact: bool = False,
        seed: int | None = None,
        batch_size: int = 4096,
    ) -> torch.Tensor:
        """Expected expression of generated cells, without the count noise (Algorithm 3).

        For each generated cell the latents are drawn (``z_b`` from the prior, perturbation
        latents from the guide) and the NB mean ``library_size * rho`` is returned. With the
        default ``library_size=1e4`` the rows are already library-normalised, so
        ``log2(predict_mean(...) + 1)`` is the metric's normalised expression.

        Parameters
        ----------
        D_rows
            ``(k, T)`` dosage rows (a zero row is a control).
        n_per_row
            Cells generated per row; output rows ``i * n_per_row ... (i + 1) * n_per_row - 1``
            belong to ``D_rows[i]``.
        library_size
            Library size of the generated cells.
        artifact
            Generate with the artifact embedding switched on (``z_a = u``); CRADLE-VAE only. A
            per-criterion CRADLE-VAE also takes criteria names: those artifacts on
            (:func:`~cradlekit.module.artifact_latents.generative_design`).
        seed
            Seed for a reproducible draw; the global RNG state is left untouched.
        batch_size
            Generated cells per forward pass (memory bound).

        Returns
        -------
        torch.Tensor
            ``(k * n_per_row, G)`` float tensor on the model's device.
        """
        return generate_cells(self, D_rows, n_per_row, library_size, artifact, seed, batch_size, False)

    @torch.no_grad()
    def generate(
        self,
        D_rows: torch.Tensor,
        n_per_row: int,
        *,
        library_size: float = 1e4,
        artifact: bool = False,
        seed: int | None = None,
        batch_size: int = 4096,
    ) -> torch.Tensor:
        """Generate counts for each dosage row (Algorithm 3): NB samples of :meth:`predict_mean`.

        Same parameters as :meth:`predict_mean`; returns ``(k * n_per_row, G)`` counts.
        """
        return generate_cells(self, D_rows, n_per_row, library_size, artifact, seed, batch_size, True)
