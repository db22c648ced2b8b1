"""What each model takes lives on its module class (``has_artifact``, ``takes_objective``,
``takes_alpha``, ``takes_mask_prior``); the model API and the experiment configs read it from
:data:`cradlekit.module.MODELS`.

Three oracles: the lists the package kept by hand before (a wrong class attribute changes them);
the built models themselves (a class that says it takes an option it does not, or the reverse,
fails to build or builds without it); and model classes registered only inside a test, which get
the options their class attributes say without any edit of ``cradlekit/model/_options.py`` or
``cradlekit/experiments/config.py``.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import pytest
import torch

from cradlekit.experiments import ConfigError, config_from_dict
from cradlekit.experiments.config import CRADLE_MODELS, CRADLE_ONLY_OPTIONS
from cradlekit.model._options import ALPHA_MODELS, DEFAULT_ALPHA, module_options, uses_counterfactual
from cradlekit.module import MODELS, ConditionalVAE, CradleVAE, CradleVAEWithoutCausal, build_model, model_class
from cradlekit.module.base import OBJECTIVE_OPTIONS
from cradlekit.module.sparse_effects import SparseEffects

G, T, N = 12, 3, 30
SMALL = {"latent_dim": 8, "hidden_dim": 16, "num_particles": 1}


def _options(name: str, **kw: Any) -> dict[str, Any]:
    return module_options(name, **{**SMALL, "alpha": None, "mask_prior": None, **kw})


def _build(name: str, **options: Any):
    return build_model(name, G, T, torch.full((T,), 10), N, **options)


def test_the_class_facts_give_the_lists_kept_by_hand_before():
    assert CRADLE_MODELS == ("cradle", "cradle_wo_cf", "cradle_wo_causal")
    assert ALPHA_MODELS == ("cradle", "cradle_wo_causal")
    assert {n for n, c in MODELS.items() if c.takes_mask_prior} == {
        "cradle",
        "cradle_wo_cf",
        "cradle_wo_causal",
        "sams_vae",
    }
    assert {n for n, c in MODELS.items() if c.has_artifact} == set(CRADLE_MODELS)
    assert CRADLE_ONLY_OPTIONS == ("alpha", "objective", "published", "class_balanced", "j2_cells_per_batch",
                                   "artifact_dispersion", "artifact_latent")  # artifact_latent: issue 19


@pytest.mark.parametrize("name", sorted(set(MODELS) - {"svae_plus"}))  # sVAE+ is built on condition one-hots
def test_each_class_fact_matches_the_built_model(name):
    cls = MODELS[name]
    options = _options(name)
    model = _build(name, **options)
    assert cls.has_artifact == ("A" in model.required_keys)
    assert cls.takes_alpha == ("X_cf" in model.required_keys) == (getattr(model, "alpha", 0.0) > 0)
    assert (
        cls.takes_mask_prior == isinstance(getattr(model, "effects", None), SparseEffects) == ("mask_prior" in options)
    )
    if cls.takes_mask_prior:  # the paper's p x D = 2 at D = 8
        assert model.effects.prior_logit == pytest.approx(math.log(0.25 / 0.75))
    if cls.takes_objective:
        assert (model.objective, model.published, model.class_balanced) == (options["objective"], options["published"],
                                                                             options["class_balanced"])
    else:  # a class that says it does not take the objective's options rejects them
        assert not set(OBJECTIVE_OPTIONS) & set(options)
        with pytest.raises(TypeError):
            _build(name, **options, published=True)


class _ToyCradle(CradleVAEWithoutCausal):
    """A new CRADLE-VAE variant: inherits every fact (objective, alpha, mask prior, artifact)."""

    name: ClassVar[str] = "toy_cradle"


class _ToyNoAlpha(CradleVAE):
    """Takes the objective but no alpha (J2 off), like the w/o CF ablation."""

    name: ClassVar[str] = "toy_no_alpha"
    takes_alpha: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs["alpha"] = 0.0
        super().__init__(*args, **kwargs)


class _ToyPlain(ConditionalVAE):
    """A plain baseline: none of CRADLE-VAE's options."""

    name: ClassVar[str] = "toy_plain"


@pytest.fixture
def toys(monkeypatch):
    for cls in (_ToyCradle, _ToyNoAlpha, _ToyPlain):
        monkeypatch.setitem(MODELS, cls.name, cls)


def test_a_registered_class_gets_its_options_without_editing_options_py(toys):
    cradle = _options("toy_cradle", objective="exact", alpha=0.3)
    assert cradle["alpha"] == 0.3 and cradle["mask_prior"] == pytest.approx(2.0 / SMALL["latent_dim"])
    assert (cradle["objective"], cradle["published"], cradle["class_balanced"]) == ("exact", False, True)
    assert uses_counterfactual("toy_cradle", cradle) and _options("toy_cradle")["alpha"] == DEFAULT_ALPHA
    model = _build("toy_cradle", **cradle)
    assert model.alpha == 0.3 and not model.causal and "X_cf" in model.required_keys

    no_alpha = _options("toy_no_alpha")
    assert "alpha" not in no_alpha and "objective" in no_alpha and not uses_counterfactual("toy_no_alpha", no_alpha)
    with pytest.raises(ValueError, match="do not pass alpha"):
        _options("toy_no_alpha", alpha=0.3)

    plain = _options("toy_plain", objective="exact")
    assert set(plain) == set(SMALL) and not uses_counterfactual("toy_plain", plain)
    with pytest.raises(ValueError, match=r"\['alpha', 'published'\] apply to CRADLE-VAE models only"):
        _options("toy_plain", alpha=0.3, published=True)
    assert model_class("toy_plain") is _ToyPlain
    _build("toy_plain", **plain)


def test_a_registered_class_gets_its_options_in_experiment_configs(toys):
    config = config_from_dict({
        "dataset": {"name": "simulator", "kwargs": {"n_cells": 500, "n_genes": 150}},
        "models": ["toy_cradle", "toy_no_alpha", "toy_plain"], "ks": [3], "seeds": [0],
        "model_options": {"alpha": 0.2, "published": True},
    })
    assert config.model_kwargs("toy_cradle")["alpha"] == 0.2 and config.model_kwargs("toy_cradle")["published"] is True
    assert (
        "alpha" not in config.model_kwargs("toy_no_alpha") and config.model_kwargs("toy_no_alpha")["published"] is True
    )
    assert not set(CRADLE_ONLY_OPTIONS) & set(config.model_kwargs("toy_plain"))
    with pytest.raises(ConfigError, match="CRADLE-VAE models only"):
        config_from_dict({
            "dataset": {"name": "simulator", "kwargs": {"n_cells": 500, "n_genes": 150}},
            "models": ["toy_plain"], "ks": [3], "seeds": [0], "model_overrides": {"toy_plain": {"alpha": 0.1}},
        })


def test_an_unknown_model_name_is_refused():
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        _options("nope")
    assert not uses_counterfactual("nope", {})
