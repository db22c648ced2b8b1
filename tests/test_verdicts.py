"""Verdict sentences of a grid against its baselines (cradlekit.experiments.verdicts) on rows built by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cradlekit.experiments.verdicts import MIN_SPLITS, verdict_lines


def _rows(model: str, values: list[float]) -> list[dict]:
    return [{"dataset": "screen", "model": model, "k": 3.0, "seed": s, "heldout_ate_pearson": v, "converged": True}
            for s, v in enumerate(values)]


def test_beating_falling_short_and_too_few_splits():
    rng = np.random.default_rng(0)
    base = 0.5 + rng.normal(0, 0.01, 7)
    rows = (_rows("linear", list(base)) + _rows("mean", list(base - 0.3))
            + _rows("good", list(base + 0.1)) + _rows("bad", list(base - 0.2))
            + _rows("tie", list(base + rng.normal(0, 0.05, 7)))
            + _rows("one_split", [0.99]))  # far above the baseline on its only split
    labels = {"linear": "Baseline: linear", "good": "Good", "bad": "Bad", "tie": "Tie", "one_split": "One split"}
    lines = verdict_lines(pd.DataFrame(rows), ["good", "bad", "tie", "one_split"], ["mean", "linear"], labels, k=3)
    text = lines[0]
    assert "strongest baseline is Baseline: linear" in text
    beaten = text.split("Beaten (CI above 0) by ", 1)[1].split(";", 1)[0]
    assert "Good" in beaten and "Bad" not in beaten and "Tie" not in beaten and "One split" not in beaten
    assert "1 of 3 trained models fall short of it" in text  # 'bad'; 'one_split' is not counted
    assert f"Too few converged splits to judge (under {MIN_SPLITS}): One split" in text


def test_no_model_beats_the_baseline_is_said_plainly():
    base = [0.6, 0.62, 0.58, 0.61, 0.59]
    rows = _rows("additive", base) + _rows("model", [b - 0.2 for b in base])
    rows += [{**r, "converged": False} for r in _rows("capped", [0.9] * 5)]  # capped runs never count
    text = verdict_lines(pd.DataFrame(rows), ["model", "capped"], ["additive"], {}, k=3)[0]
    assert "**No trained model beats it**" in text and "n = 5 splits" in text and "capped" not in text
