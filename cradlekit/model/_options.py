"""Which constructor options each model takes, and the paper's defaults (see the book's design page).

Which options a model takes is a fact of its module class (:class:`~cradlekit.module.PerturbationVAE`'s
``takes_objective``, ``takes_alpha`` and ``takes_mask_prior``), looked up in :data:`cradlekit.module.MODELS`
when the options are built: a model registered there gets its options without an edit here.
"""

from __future__ import annotations

from typing import Any

from ..module import MODELS, model_class
from ..module.cradle import resolve_objective

__all__ = ["module_options", "uses_counterfactual", "resolve_mask_prior", "DEFAULT_ALPHA",
           "DEFAULT_OBJECTIVE", "PAPER_ACTIVE_DIMS", "ALPHA_MODELS"]

#: The paper's J2 weight: 0.5 for combination datasets (Norman, Dixit); 0.05 Replogle, 0.1 Adamson.
DEFAULT_ALPHA = 0.5
#: The package's default CRADLE-VAE objective, chosen by the README's rule from the converged grids of
#: three screens (``results/default_objective.md``). The paper's is ``"published"``.
DEFAULT_OBJECTIVE = "unweighted"
#: The paper's prior mean of active latent dimensions per perturbation: p x D = 0.01 x 200
#: (combination datasets); 0.001 x 200 = 0.2 for Replogle, 0.001 x 100 = 0.1 for Adamson.
PAPER_ACTIVE_DIMS = 2.0
#: Models that take the J2 weight ``alpha`` (CRADLE-VAE and its w/o Causal ablation): the registered
#: classes with ``takes_alpha``, as registered when cradlekit was imported.
ALPHA_MODELS = tuple(name for name, cls in MODELS.items() if cls.takes_alpha)


def resolve_mask_prior(mask_prior: float | None, latent_dim: int, active_dims: float = PAPER_ACTIVE_DIMS) -> float:
    """``mask_prior``, or (``None``) the ``p`` that keeps ``p x D = active_dims`` at ``latent_dim = D``.

    The paper pairs ``p = 0.01`` with ``D = 200`` (2 active dimensions per perturbation a priori);
    a budget run at ``D = 32`` keeps 2 with ``p = 0.0625``. Capped at 0.5.
    """
    if mask_prior is not None:
        return float(mask_prior)
    return min(0.5, float(active_dims) / int(latent_dim))


def module_options(
    model: str,
    *,
    latent_dim: int,
    hidden_dim: int,
    num_particles: int,
    alpha: float | None,
    mask_prior: float | None,
    objective: str | None = DEFAULT_OBJECTIVE,
    published: bool | None = None,
    class_balanced: bool | None = None,
    j2_cells_per_batch: float | None = None,
    **model_options: Any,
) -> dict[str, Any]:
    """The keyword options of ``build_model(model, ...)`` (without data-derived ones).

    What the model's class says it takes decides (see the module docstring). Options that only
    models with ``takes_objective`` have (CRADLE-VAE's: the objective's ingredients ``published``,
    ``class_balanced``, ``j2_cells_per_batch``, and ``artifact_dispersion``) raise when set for
    another model, as ``alpha`` does for a model without ``takes_alpha``; ``objective`` is ignored
    by the other models. For a model with ``takes_objective`` the objective is resolved into its
    ingredients (see :func:`cradlekit.module.cradle.resolve_objective`), so the options say exactly
    what runs. ``mask_prior`` goes to the models with ``takes_mask_prior`` (CRADLE-VAE, SAMS-VAE);
    ``None`` keeps the paper's ``p x D`` (:func:`resolve_mask_prior`). ``model_options`` go through
    unchanged.

    Raises
    ------
    ValueError
        Unknown model name, unknown objective or an option the model does not have.
    """
    cls = model_class(model)
    opts: dict[str, Any] = {
        "latent_dim": int(latent_dim),
        "hidden_dim": int(hidden_dim),
        "num_particles": int(num_particles),
    }
    given: dict[str, Any] = {}  # options set for a model that does not take them
    if cls.takes_objective:
        name, pub, bal, cells = resolve_objective(objective, published, class_balanced, j2_cells_per_batch)
        opts.update(objective=name if name != "custom" else None, published=pub, class_balanced=bal,
                    j2_cells_per_batch=cells)
    if cls.takes_alpha:
        opts["alpha"] = DEFAULT_ALPHA if alpha is None else float(alpha)
    elif cls.takes_objective:
        if alpha:
            raise ValueError(f"model={model!r} is CRADLE-VAE with alpha=0; do not pass alpha")
    else:
        given["alpha"] = alpha
    if not cls.takes_objective:
        if model_options.get("artifact_latent") in (None, "single"):
            model_options.pop("artifact_latent", None)  # the paper's single u: nothing to pass
        given.update(published=published, class_balanced=class_balanced, j2_cells_per_batch=j2_cells_per_batch,
                     artifact_dispersion=model_options.get("artifact_dispersion"),
                     artifact_latent=model_options.get("artifact_latent"))
    bad = [k for k, v in given.items() if v not in (None, False)]
    if bad:
        raise ValueError(f"{bad} apply to CRADLE-VAE models only, not to model={model!r}")
    if cls.takes_mask_prior:
        opts["mask_prior"] = resolve_mask_prior(mask_prior, latent_dim)
    opts.update(model_options)
    return opts


def uses_counterfactual(model: str, options: dict[str, Any]) -> bool:
    """Whether the model computes J2 and so needs counterfactual references (``takes_alpha`` and
    ``alpha > 0``)."""
    cls = MODELS.get(model)
    return cls is not None and cls.takes_alpha and float(options.get("alpha", DEFAULT_ALPHA)) > 0
