"""Every config field is type-checked when the config is read, before anything runs (issue 12)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cradlekit.experiments import load_config
from cradlekit.experiments.config import ConfigError

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"


def _with(tmp_path, old: str, new: str) -> Path:
    text = SMOKE.read_text()
    assert old in text
    path = tmp_path / "c.yaml"
    path.write_text(text.replace(old, new))
    return path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("lr: 3.0e-3", "lr: 3e-3", r"train\.lr must be a number, got '3e-3' \(str\) \(YAML reads 3e-3 as text"),
        ("lr: 3.0e-3", 'lr: "0.003"', r"train\.lr must be a number, got '0\.003'"),
        ("max_steps: 4000", "max_steps: 2.5", r"train\.max_steps must be an integer or null, got 2\.5"),
        ("accelerator: cpu", "accelerator: tpu", r"train\.accelerator must be 'auto', 'cpu', 'cuda'"),
        ("accelerator: cpu", "accelerator: 1", r"train\.accelerator must be a string, got 1"),
        ("save_models: false", "save_models: 'no'", r"save_models must be true or false"),
        ("run_scrublet: true, seed: 0}", "run_scrublet: 'yes', seed: 0}", r"qc\.run_scrublet must be true or false"),
        ("n_max: 50", "n_max: fifty", r"counterfactual\.n_max must be an integer, got 'fifty'"),
        (
            "mask_prior: 0.01",
            "mask_prior: [0.01]",
            r"model_options\.mask_prior must be a number or null, got \[0\.01\]",
        ),
        ("jaccard_k: 50", "jaccard_k: true", r"evaluation\.jaccard_k must be an integer, got True"),
        ("description: simulator", "description: 7 #", r"description must be a string"),
    ],
)
def test_wrong_types_are_refused_when_the_config_is_read(tmp_path, old, new, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_with(tmp_path, old, new))


def test_valid_values_still_load(tmp_path):
    config = load_config(_with(tmp_path, "accelerator: cpu", "accelerator: 'cuda:1'"))
    assert config.train.accelerator == "cuda:1"  # checked for form here, for availability when training
    assert load_config(_with(tmp_path, "lr: 3.0e-3", "lr: 1")).train.lr == 1  # an integer is a number
