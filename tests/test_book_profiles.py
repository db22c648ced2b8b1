"""The book's execution profiles: one environment variable, validated files, the paper's settings in ``full``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cradlekit.experiments import PROFILE_ENV, ConfigError, expand_grid, load_profile, profile_name

PROFILES = Path(__file__).resolve().parent.parent / "book" / "profiles"


def test_env_variable_selects_the_profile(monkeypatch):
    monkeypatch.delenv(PROFILE_ENV, raising=False)
    assert profile_name() == "quick"
    monkeypatch.setenv(PROFILE_ENV, "FULL ")
    assert profile_name() == "full"
    assert load_profile(directory=PROFILES).name == "full"
    assert profile_name("quick") == "quick"  # an explicit name wins


def test_unknown_profile_name_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(PROFILE_ENV, "fast")
    with pytest.raises(ConfigError, match="CRADLEKIT_BOOK_PROFILE='fast'.*quick, full"):
        load_profile(directory=PROFILES)


def test_quick_profile_is_a_cpu_budget_on_local_data():
    p = load_profile("quick", directory=PROFILES)
    assert p.accelerator == "cpu" and p.dataset.name == "norman_subset"
    assert p.grid.dataset.name == "norman_subset"
    assert set(p.grid.models) == {
        "no_change",
        "mean",
        "additive",
        "linear",  # the baselines beside every model
        "cvae",
        "cpa_vae",
        "svae_plus",
        "sams_vae",
        "cradle",
        "cradle_wo_cf",
        "cradle_wo_causal",
    }
    assert tuple(p.grid.ks) == (3, 4, 5) and len(p.grid.seeds) >= 2  # a mean ± sd in every table cell
    assert p.grid.save_models  # chapters 7 and 8 reopen the trained models
    assert p.grid.model_options.objective == "published" and p.grid.split.seed == "run"
    assert p.grid.train.batch_size == 512  # the published J2 is a sum over the batch: its scale needs 512
    # the cache sits in the book folder, whatever the working directory
    assert Path(p.grid.output_dir) == (PROFILES.parent / "_cache" / "quick").resolve()
    assert p.train_kwargs(max_epochs=3)["max_epochs"] == 3 and p.train_kwargs()["accelerator"] == "cpu"


def test_full_profile_has_the_papers_settings():
    p = load_profile("full", directory=PROFILES)
    g = p.grid
    assert p.accelerator == "auto" and g.dataset.name == "norman"
    assert len(expand_grid(g)) == 13 * 3 * 5  # four baselines, the seven models, our exact and unweighted arms
    # the paper's objective and the authors' protocol
    assert g.model_options.objective == "published" and g.model_kwargs("cradle")["objective"] == "published"
    assert g.model_kwargs("cradle_exact")["objective"] == "exact" and g.base_model("cradle_exact") == "cradle"
    assert g.split.seed == "run" and g.train.model_seed == 0 and g.model_options.mask_prior == 0.01
    assert g.model_options.latent_dim == 200 and g.model_options.hidden_dim == 400
    assert g.model_options.num_particles == 5 and g.model_options.alpha == 0.5
    assert (g.train.lr, g.train.batch_size, g.train.max_epochs, g.train.patience) == (3e-4, 512, 2000, 50)
    assert g.train.weight_decay == 1e-6 and g.train.grad_clip == 100.0
    assert (g.evaluation.n_model_cells, g.evaluation.n_qcpr_cells, g.evaluation.jaccard_k) == (2500, 100, 50)
    assert p.model_options["latent_dim"] == 200 and p.train["max_epochs"] == 2000


@pytest.mark.parametrize(
    "change, match",
    [
        ({"colour": "blue"}, "unknown profile keys"),
        ({"name": "full"}, "does not match"),
        ({"grid": None}, "grid .* is required"),
        ({"executor": "threads"}, "executor"),
        ({"train": [1, 2]}, "train must be a mapping"),
        ({"grid": {"models": ["nope"], "dataset": {"name": "simulator"}, "ks": [3], "seeds": [0]}}, "nope"),
    ],
)
def test_invalid_profile_files_raise(tmp_path, change, match):
    raw = yaml.safe_load((PROFILES / "quick.yaml").read_text())
    raw.update(change)
    (tmp_path / "quick.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=match):
        load_profile("quick", directory=tmp_path)


def test_missing_profile_file(tmp_path):
    with pytest.raises(ConfigError, match="no file"):
        load_profile("quick", directory=tmp_path)
