"""Experiment config: YAML schema, validation errors, per-model options and cache keys."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cradlekit.experiments import ConfigError, RunSpec, config_from_dict, expand_grid, load_config, run_key
from cradlekit.experiments.grid import prepared_key

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def base(**changes):
    raw = {
        "dataset": {"name": "simulator", "kwargs": {"n_cells": 500, "n_genes": 150}},
        "models": ["cradle", "cvae"],
        "ks": [3, 5],
        "seeds": [0, 1],
    }
    raw.update(changes)
    return raw


@pytest.mark.parametrize("name", ["smoke.yaml", "norman_subset.yaml"])
def test_shipped_configs_are_valid(name):
    config = load_config(CONFIGS / name)
    assert config.models and config.ks and config.seeds
    assert config_from_dict(config.to_dict()) == config


def test_norman_config_is_the_full_grid():
    config = load_config(CONFIGS / "norman_subset.yaml")
    assert len(config.models) == 7 and config.ks == (3, 4, 5) and len(config.seeds) == 3
    assert len(expand_grid(config)) == 63


def test_grid_order_is_k_then_model_then_seed():
    config = config_from_dict(base())
    assert expand_grid(config) == [RunSpec(m, k, s) for k in (3, 5) for m in ("cradle", "cvae") for s in (0, 1)]


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"models": ["cradle", "scvi"]}, r"unknown model name\(s\) \['scvi'\]"),
        ({"ks": [3, 0]}, "positive number"),
        ({"ks": [-4]}, "positive number"),
        ({"ks": ["three"]}, r"ks: invalid entries \['three'\]"),
        ({"ks": [3, 3]}, "duplicate"),
        ({"ks": []}, "non-empty list"),
        ({"seeds": [0, 1.5]}, "seeds: invalid entries"),
        ({"seeds": [-1]}, "non-negative"),
        ({"epochs": 3}, r"unknown key\(s\) \['epochs'\]"),
        ({"train": {"max_epoch": 3}}, r"train: unknown key\(s\) \['max_epoch'\]"),
        ({"train": {"max_epochs": 0}}, "train.max_epochs must be a positive integer"),
        ({"train": {"lr": -1.0}}, "train.lr must be positive"),
        ({"model_options": {"latent_dim": 0}}, "latent_dim must be a positive integer"),
        ({"evaluation": {"n_model_cells": 0}}, "n_model_cells"),
        ({"evaluation": {"model_ate": "means"}}, "model_ate must be 'sampled' or 'expected'"),
        ({"split": {"kind": "genes"}}, "split.kind"),
        ({"split": {"holdout_fraction": 1.5}}, "holdout_fraction"),
        ({"split": {"fractions": [0.5, 0.5, 0.5]}}, "fractions"),
        ({"dataset": {"name": "nomran"}}, "neither 'simulator' nor a manifest dataset"),
        (
            {"dataset": {"name": "simulator", "kwargs": {"n_cell": 5}}},
            r"\['n_cell'\] are not arguments of simulate_perturbseq",
        ),
        ({"model_overrides": {"cvae": {"alpha": 0.1}}}, "CRADLE-VAE models only"),
        ({"model_overrides": {"sams_vae": {}}}, "not in the grid"),
        ({"output_dir": 5}, "output_dir must be a string"),
        ({"save_models": "yes"}, "save_models must be true or false"),
    ],
)
def test_invalid_configs_raise_clear_errors(changes, match):
    with pytest.raises(ConfigError, match=match):
        config_from_dict(base(**changes))


def test_missing_required_key_and_bad_yaml(tmp_path):
    raw = base()
    del raw["models"]
    with pytest.raises(ConfigError, match="missing required key 'models'"):
        config_from_dict(raw)
    path = tmp_path / "c.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(path)


def test_load_config_overrides_output_dir(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(base()))
    assert load_config(path, output_dir=str(tmp_path / "out")).output_dir == str(tmp_path / "out")


def test_model_kwargs_route_cradle_options():
    config = config_from_dict(
        base(
            models=["cradle", "cradle_wo_cf", "cvae"],
            model_options={"alpha": 0.2, "published": True},
            model_overrides={"cvae": {"hidden_dim": 7}},
        )
    )
    assert config.model_kwargs("cradle")["alpha"] == 0.2 and config.model_kwargs("cradle")["published"] is True
    assert "alpha" not in config.model_kwargs("cradle_wo_cf")
    cvae = config.model_kwargs("cvae")
    assert not {"alpha", "published", "class_balanced"} & set(cvae) and cvae["hidden_dim"] == 7


def test_run_key_depends_on_the_run_only():
    config = config_from_dict(base())
    spec = RunSpec("cvae", 3, 0)
    key = run_key(config, spec)
    assert len(key) == 16
    assert run_key(config.replace(output_dir="elsewhere"), spec) == key
    assert run_key(config.replace(models=["cvae"], seeds=[0]), spec) == key  # other cells do not matter
    assert run_key(config.replace(model_options={"alpha": 0.1}), spec) == key  # alpha is not a cvae option
    assert run_key(config.replace(model_options={"alpha": 0.1}), RunSpec("cradle", 3, 0)) != run_key(
        config, RunSpec("cradle", 3, 0)
    )
    assert run_key(config.replace(train={"max_steps": 7}), spec) != key
    assert run_key(config, RunSpec("cvae", 3, 1)) != key and run_key(config, RunSpec("cvae", 5, 0)) != key
    assert prepared_key(config, 3) != prepared_key(config, 5) != prepared_key(config)


def test_an_option_added_later_at_its_default_keeps_finished_runs_keys():
    """A setting added after RUNNER_VERSION 4 enters a run's key only when it differs from its default,
    so adding an option to the config does not make every finished run look unfinished."""
    import dataclasses

    from cradlekit.experiments.config import TrainOptions
    from cradlekit.experiments.grid import _keyed

    @dataclasses.dataclass(frozen=True)
    class TrainWithNewOption(TrainOptions):
        new_option: int = 3

    before = _keyed("train", dataclasses.asdict(TrainOptions()), TrainOptions)
    assert _keyed("train", dataclasses.asdict(TrainWithNewOption()), TrainWithNewOption) == before
    changed = _keyed("train", dataclasses.asdict(TrainWithNewOption(new_option=4)), TrainWithNewOption)
    assert changed == {**before, "new_option": 4}
    # a version-4 setting stays in the key even at its default
    assert "max_steps" in before and before["max_steps"] is None
