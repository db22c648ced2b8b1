"""The user-facing model: CRADLE-VAE or a baseline on an AnnData, in the style of scvi-tools."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from anndata import AnnData

from .._keys import CF_LAYER, SPLIT_KEY, artifact_key as _artifact_key
from .._logging import logger
from ..errors import NonFiniteLossError
from ..module import PerturbationVAE, build_model
from ..train import CellBatches, Trainer, resolve_device
from ._criteria import criteria_registry, module_arguments
from ._io import read_model_dir, write_model_dir
from ._options import DEFAULT_OBJECTIVE, module_options, uses_counterfactual
from ._output import artifact_request, basal_latent, generated_anndata, requested_labels
from ._setup import can_generate, cell_batches, check_genes, dosage_rows, register_anndata
from ._training import TrainingMixin

__all__ = ["PerturbationModel"]

_INIT_SEED = 0


class PerturbationModel(TrainingMixin):
    """CRADLE-VAE (or a baseline) set up on a Perturb-seq AnnData.

    Parameters
    ----------
    adata
        Raw integer UMI counts with canonical labels in ``obs`` (see
        :func:`cradlekit.data.standardize_perturbations`), QC labels from
        :func:`cradlekit.qc.label_artifacts`, a split from :func:`cradlekit.data.split_combinations`
        or :func:`cradlekit.data.split_cells` and, for CRADLE-VAE with ``alpha > 0``, references
        from :func:`cradlekit.data.counterfactual_references`. Not copied; not modified. It may be
        backed (``anndata.read_h5ad(path, backed="r")``) for screens larger than memory: the counts
        stay sparse on the host (or on disk) and each minibatch is densified on its own, so device
        memory grows with the batch size, not with the number of cells.
    model
        ``cradle``, ``cradle_wo_cf``, ``cradle_wo_causal``, ``cvae``, ``cpa_vae``, ``svae_plus`` or
        ``sams_vae`` (see :data:`cradlekit.module.MODELS`).
    artifact_key
        ``obs`` column of ``a_i`` (``artifact_k3``/``4``/``5``); required by CRADLE-VAE models.
    split_key
        ``obs`` column with ``train`` / ``val`` / ``test``; train fits, val drives early stopping,
        other cells are not used.
    layer
        Layer with the raw counts (``None``: ``adata.X``).
    cf_layer
        Layer of counterfactual references (read only when the model computes J2).
    perturbation_key, control_label
        Default to ``adata.uns['cradlekit']``.
    latent_dim, hidden_dim, num_particles
        Latent width ``D`` (200; 100 for Adamson), hidden width (400), ELBO particles (5).
    alpha
        J2 weight (CRADLE-VAE); ``None``: 0.5, the paper's value for combination datasets (use 0.05
        for Replogle, 0.1 for Adamson).
    mask_prior
        Prior mask probability of CRADLE-VAE and SAMS-VAE (0.01 at ``latent_dim=200``; 0.001 for
        Replogle/Adamson). ``None``: keep the paper's 2 active dimensions per perturbation a priori
        (``p = 2 / latent_dim``).
    objective
        CRADLE-VAE's objective: ``"unweighted"`` (the default, chosen by the README's rule from
        converged grids: every cell's reconstruction weighs 1, J2 is the exact KL per cell),
        ``"balanced"`` (the class-balanced reconstruction, the same J2), ``"published"`` (the
        authors' J2 summed over the batch and the class-balanced reconstruction: the paper's
        numbers), ``"exact"`` (exact KL weighted ``alpha x 512`` per cell, class-balanced) or
        ``None`` (set the ingredients below); see
        :mod:`cradlekit.module.cradle`. Ignored by the other models.
    published, class_balanced, j2_cells_per_batch
        Ingredients of the objective (override the named one; CRADLE-VAE models only).
    artifact_latent
        ``"single"`` (the paper's one ``u``) or ``"per_criterion"`` (ours: one ``u_c`` for each QC
        criterion, read from ``obs['qc_fail_<criterion>_k<k>']`` at the model's ``k``; criteria QC
        skipped get none). CRADLE-VAE models only.
    **model_options
        Further constructor options of the model class (e.g. ``decoder_layers``, ``mask_beta``).

    Attributes
    ----------
    module
        The :class:`~cradlekit.module.PerturbationVAE`.
    registry
        JSON-serialisable facts about the data: ``genes``, ``targets``, ``conditions`` (sVAE+),
        keys, ``control_label``, training counts.
    history
        Per-epoch records of the last :meth:`train` call.
    train_info
        ``device``, ``seed``, ``epochs``, ``steps``, ``best_epoch``, ``best_loss``, ``stopped_early``.

    Examples
    --------
    >>> model = PerturbationModel(adata, latent_dim=200)
    >>> model.train(max_epochs=2000)
    >>> cells = model.generate(["KLF1", "KLF1+MAP2K6"], n=100, seed=0)
    """

    def __init__(
        self,
        adata: AnnData,
        *,
        model: str = "cradle",
        artifact_key: str = _artifact_key(3),
        split_key: str = SPLIT_KEY,
        layer: str | None = None,
        cf_layer: str = CF_LAYER,
        perturbation_key: str | None = None,
        control_label: str | None = None,
        latent_dim: int = 200,
        hidden_dim: int = 400,
        alpha: float | None = None,
        mask_prior: float | None = 0.01,
        objective: str | None = DEFAULT_OBJECTIVE,
        published: bool | None = None,
        class_balanced: bool | None = None,
        num_particles: int = 5,
        **model_options: Any,
    ):
        options = module_options(
            model, latent_dim=latent_dim, hidden_dim=hidden_dim, num_particles=num_particles, alpha=alpha,
            mask_prior=mask_prior, objective=objective, published=published, class_balanced=class_balanced,
            **model_options,
        )
        registry, (log_mean, log_std) = register_anndata(
            adata, model=model, artifact_key=artifact_key, split_key=split_key, layer=layer,
            cf_layer=cf_layer if uses_counterfactual(model, options) else None,
            perturbation_key=perturbation_key, control_label=control_label,
        )
        if options.get("artifact_latent") == "per_criterion":
            registry.update(criteria_registry(adata, registry))
        self._setup(registry, options, adata)
        self._counts_checked = True
        self._log_stats = (log_mean, log_std)
        self.module = self._build_module(_INIT_SEED)
        logger.info("%s", self)

    def _setup(self, registry: dict[str, Any], options: dict[str, Any], adata: AnnData | None) -> None:
        self.adata = adata
        self.registry = registry
        self.module_options = options
        self.history: list[dict[str, Any]] = []
        self.train_info: dict[str, Any] = {}
        self.is_trained = False
        self._data: dict[str, CellBatches | None] | None = None
        self._counts_checked = False
        self._device_data: tuple[torch.device, CellBatches, CellBatches | None] | None = None
        self._trainer: Trainer | None = None
        self._log_stats: tuple[torch.Tensor, torch.Tensor] | None = None
        self._adata_fingerprint: dict[str, Any] | None = None
        self._nonfinite: str | None = None  # the message of the non-finite loss that ended the last training

    def _build_module(self, seed: int) -> PerturbationVAE:
        """A freshly initialised module; ``seed`` fixes its weights (the global RNG is left as it was)."""
        reg = self.registry
        n_inputs = len(reg["conditions"]) if reg["conditions"] is not None else len(reg["targets"])
        stats = {} if self._log_stats is None else {"log_mean": self._log_stats[0], "log_std": self._log_stats[1]}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seed))
            module = build_model(
                reg["model"], len(reg["genes"]), n_inputs, reg["n_obs_per_perturbation"], reg["n_train"],
                **stats, **self.module_options, **module_arguments(reg),
            )
        return module

    def __repr__(self) -> str:
        reg = self.registry
        status = f"trained on {self.train_info.get('device')}" if self.is_trained else "not trained"
        return (
            f"PerturbationModel(model={reg['model']!r}, genes={len(reg['genes'])}, targets={len(reg['targets'])}, "
            f"train={reg['n_train']}, val={reg['n_val']}, latent_dim={self.module.latent_dim}; {status})"
        )

    @property
    def device(self) -> torch.device:
        """Device of the module's parameters."""
        return self.module.device

    # ------------------------------------------------------------------ generation
    def _draw(
        self, perturbations, n: int, artifact: bool, library_size: float, seed, batch_size: int, counts: bool,
        artifacts=None,
    ) -> AnnData:
        labels = requested_labels(self.registry, perturbations)
        rows = dosage_rows(self.registry, labels)
        fn = self.module.generate if counts else self.module.predict_mean
        request, on = artifact_request(artifact, artifacts)
        values = fn(rows, int(n), library_size=library_size, artifact=request, seed=seed, batch_size=batch_size)
        return generated_anndata(
            values, labels, int(n), self.registry, counts=counts, artifact=bool(on),
            library_size=float(library_size), seed=seed, artifacts=on if isinstance(on, list) else None,
        )

    def can_generate(self, perturbation: str) -> bool:
        """Whether ``perturbation`` can be generated: every target was trained (sVAE+: the combination too)."""
        return can_generate(self.registry, perturbation)

    def generate(
        self,
        perturbations: str | Sequence[str] | None = None,
        n: int = 100,
        *,
        artifact: bool = False,
        artifacts: Sequence[str] | None = None,
        library_size: float = 1e4,
        seed: int | None = None,
        batch_size: int = 4096,
    ) -> AnnData:
        """Generate cells (Algorithm 3): ``z_b`` from the prior, perturbation latents from the guide.

        Parameters
        ----------
        perturbations
            Labels such as ``"KLF1"``, ``"KLF1+MAP2K6"`` (unseen combinations of trained targets
            included; sVAE+ only knows its training conditions) or the control label; ``None``:
            the control and every training perturbation.
        n
            Cells per perturbation (100 for QCPR).
        artifact
            Switch the artifact latent on (``z_a = u``; CRADLE-VAE models only). A per-criterion
            model draws each cell's failure pattern with its frequency among the QC-failed
            training cells (``registry['artifact_patterns']``).
        artifacts
            Per-criterion models: the criteria whose artifact is switched on in every cell, e.g.
            ``["mito"]`` (``z_a = u_mito``) or ``["mito", "doublet"]``; ``None`` (default) or ``[]``:
            artifact-free cells (Algorithm 3). Not with ``artifact=True``.
        library_size
            Library size of every generated cell (1e4).
        seed
            Seed for a reproducible draw (the global RNG is left untouched).
        batch_size
            Cells per forward pass.

        Returns
        -------
        AnnData
            ``X``: CSR float32 counts; ``obs['perturbation']`` (canonical labels, in the requested
            order) and ``obs['generated_artifact']``; ``var_names``: the model's genes;
            ``uns['cradlekit']`` (perturbation key, control label) and ``uns['generation']``
            (``model``, ``values``, ``n_per_perturbation``, ``artifact``, ``library_size``, ``seed``
            and, with ``artifacts``, the criteria switched on).

        Raises
        ------
        cradlekit.errors.EmptyPerturbationError
            A label with a target the model was not trained on.
        """
        return self._draw(perturbations, n, artifact, library_size, seed, batch_size, True, artifacts)

    def predict_mean(
        self,
        perturbations: str | Sequence[str] | None = None,
        n: int = 2500,
        *,
        artifact: bool = False,
        artifacts: Sequence[str] | None = None,
        library_size: float = 1e4,
        seed: int | None = None,
        batch_size: int = 4096,
    ) -> AnnData:
        """Expected expression ``library_size * rho`` of generated cells (no count noise).

        With ``library_size=1e4``, ``log2(X + 1)`` is the paper's metric space (design page, "Metrics"), so a model ATE
        is the mean of ``log2(X + 1)`` per perturbation minus that of the control (2,500 cells each).
        Same parameters and output as :meth:`generate` except ``X`` is a dense float32 array.
        """
        return self._draw(perturbations, n, artifact, library_size, seed, batch_size, False, artifacts)

    def get_latent(self, adata: AnnData | None = None, *, seed: int | None = 0, batch_size: int = 1024) -> np.ndarray:
        """Posterior mean of each cell's basal latent (``z_b``; ``z`` for the conditional VAE and sVAE+).

        The guide runs once per cell with one draw of the perturbation latents (``seed``); counts,
        labels and (CRADLE-VAE) QC labels are read with the registered keys.

        Parameters
        ----------
        adata
            Cells with the model's genes; ``None``: the AnnData the model was set up with.
        seed, batch_size
            Seed of the perturbation-latent draw and cells per forward pass.

        Returns
        -------
        numpy.ndarray
            ``(n_obs, latent_dim)`` float32.
        """
        adata = self.adata if adata is None else adata
        if adata is None:
            raise ValueError("pass adata: this model was loaded without one")
        check_genes(adata, self.registry)
        return basal_latent(self.module, cell_batches(adata, self.registry, batch_size), seed=seed)

    # ------------------------------------------------------------------ save / load
    def save(self, dir_path: str | os.PathLike, *, overwrite: bool = False, allow_nonfinite: bool = False) -> None:
        """Write the module state, registry, options and history to a folder (no pickled AnnData).

        Parameters
        ----------
        dir_path
            The folder (created if needed).
        overwrite
            Replace a model already saved there.
        allow_nonfinite
            Save even though the last :meth:`train` ended with a non-finite loss. Its weights are those
            of the step that diverged (often NaN or huge), so by default they are refused; the
            checkpoint folder's ``last.pt``/``best.pt`` hold the last good epochs, if any were saved.

        Raises
        ------
        FileExistsError
            If the folder already holds a model and ``overwrite`` is False.
        cradlekit.errors.NonFiniteLossError
            If the last training ended with a non-finite loss and ``allow_nonfinite`` is False; nothing
            is written.
        """
        if self._nonfinite is not None and not allow_nonfinite:
            raise NonFiniteLossError(
                f"not saving to {os.fspath(dir_path)}: the last train() ended with a non-finite loss, so this model "
                "holds "
                f"the weights of the step that diverged ({self._nonfinite}) Train again (a lower lr), or pass "
                "allow_nonfinite=True to save these weights anyway."
            )
        if self._nonfinite is not None:
            logger.warning(
                "saving the weights of a training that ended with a non-finite loss to %s", os.fspath(dir_path)
            )
        meta = {"registry": self.registry, "module_options": self.module_options, "train_info": self.train_info,
                "is_trained": self.is_trained}
        path = write_model_dir(
            dir_path, state=self.module.state_dict(), meta=meta, history=self.history, overwrite=overwrite
        )
        logger.info("saved %s to %s", self.registry["model"], path)

    @classmethod
    def load(
        cls, dir_path: str | os.PathLike, adata: AnnData | None = None, *, accelerator: str | torch.device = "auto"
    ) -> PerturbationModel:
        """Load a model written by :meth:`save`.

        Parameters
        ----------
        dir_path
            The folder.
        adata
            Optional AnnData for further training or :meth:`get_latent`; its genes must be the
            saved ones, in the same order. Generation needs no AnnData.
        accelerator
            Device to put the module on (see :meth:`train`).

        Raises
        ------
        cradlekit.errors.MissingKeyError
            If ``adata``'s genes (names or order) differ from the saved model's.
        """
        state, meta, history = read_model_dir(dir_path)
        registry = meta["registry"]
        if adata is not None:
            check_genes(adata, registry)
        model = cls.__new__(cls)
        model._setup(registry, meta["module_options"], adata)
        model.module = model._build_module(_INIT_SEED)
        model.module.load_state_dict(state)
        model._log_stats = (model.module.normalize.mean.clone(), model.module.normalize.std.clone())
        model.module.to(resolve_device(accelerator)).eval()
        model.history, model.train_info, model.is_trained = (
            history,
            meta.get("train_info", {}),
            bool(meta.get("is_trained")),
        )
        return model
