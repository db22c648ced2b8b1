"""Table 2/3 rendering on a hand-made results frame: mean ± sd, bold best, underlined second."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from cradlekit.experiments.tables import TABLE2_MODELS, TABLE3_MODELS, rank_marks, render_table, summarize, write_tables

METRICS = [
    "heldout_ate_pearson",
    "heldout_ate_r2",
    "heldout_jaccard",
    "all_ate_pearson",
    "all_ate_r2",
    "all_jaccard",
    "qcpr",
]


def frame() -> pd.DataFrame:
    """Two seeds each; at k=3 ρ: cradle 0.70 > sams 0.60 > cvae 0.50; at k=5 cvae is best.
    QCPR at k=3 ties cvae and sams for second place; held-out Jaccard of sams is NaN."""
    values = {  # (k, model): (held-out rho per seed, qcpr per seed)
        (3, "cvae"): ((0.49, 0.51), (80.0, 80.0)),
        (3, "sams_vae"): ((0.58, 0.62), (79.995, 80.004)),
        (3, "cradle"): ((0.69, 0.71), (95.0, 97.0)),
        (5, "cvae"): ((0.90, 0.90), (90.0, 91.0)),
        (5, "sams_vae"): ((0.10, 0.20), (85.0, 86.0)),
        (5, "cradle"): ((0.80, 0.82), (99.0, 99.0)),
        (3, "cradle_wo_cf"): ((0.65, 0.66), (90.0, 90.0)),
    }
    rows = []
    for (k, model), (rho, qcpr) in values.items():
        for seed in (0, 1):
            row = {"dataset": "toy", "model": model, "k": k, "seed": seed, **{m: 0.1 for m in METRICS}}
            row.update(heldout_ate_pearson=rho[seed], qcpr=qcpr[seed])
            if model == "sams_vae":
                row["heldout_jaccard"] = math.nan
            rows.append(row)
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # order must not matter


def test_summary_mean_sd_and_order():
    s = summarize(frame(), TABLE2_MODELS)
    assert list(s.index) == [("toy", 3, "cvae"), ("toy", 3, "sams_vae"), ("toy", 3, "cradle"),
                             ("toy", 5, "cvae"), ("toy", 5, "sams_vae"), ("toy", 5, "cradle")]
    assert s.loc[("toy", 3, "cradle"), "heldout_ate_pearson_mean"] == pytest.approx(0.70)
    assert s.loc[("toy", 3, "cradle"), "heldout_ate_pearson_sd"] == pytest.approx(0.0141421, rel=1e-4)
    assert (s["n_seeds"] == 2).all()


def test_best_bold_second_underlined_per_k_and_metric():
    marks = rank_marks(summarize(frame(), TABLE2_MODELS))
    rho = marks["heldout_ate_pearson"]
    assert (
        rho[("toy", 3, "cradle")] == "best"
        and rho[("toy", 3, "sams_vae")] == "second"
        and rho[("toy", 3, "cvae")] == ""
    )
    assert (
        rho[("toy", 5, "cvae")] == "best"
        and rho[("toy", 5, "cradle")] == "second"
        and rho[("toy", 5, "sams_vae")] == ""
    )
    qcpr = marks["qcpr"]  # 80.00 vs 80.00 at two decimals: both second
    assert qcpr[("toy", 3, "cradle")] == "best" and qcpr[("toy", 3, "cvae")] == qcpr[("toy", 3, "sams_vae")] == "second"
    jac = marks["heldout_jaccard"]  # all equal 0.1 except NaN: tie for best, NaN unmarked
    assert jac[("toy", 3, "cvae")] == jac[("toy", 3, "cradle")] == "best" and jac[("toy", 3, "sams_vae")] == ""


def test_markdown_layout():
    md = render_table(frame(), TABLE2_MODELS, fmt="md", title="Table 2")
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    assert lines[0].split(" | ")[:3] == ["| Model", "QC thr.", "Held-out ATE-ρ"] and "QCPR (%)" in lines[0]
    body = lines[1:]
    assert len(body) == 6  # 3 models x 2 ks, ablation left out of Table 2
    assert body[0].startswith("| Conditional VAE | 3σ |") and body[1].startswith("| SAMS-VAE |  |")
    assert body[3].startswith("| Conditional VAE | 5σ |")
    assert "**0.7000 ± 0.0141**" in body[2] and "<u>0.6000 ± 0.0283</u>" in body[1]
    assert "| 0.5000 ± 0.0141 |" in body[0]  # third place: plain
    assert "**96.00 ± 1.41**" in body[2]  # QCPR in %, two decimals
    assert "| – |" in body[1]  # NaN Jaccard
    assert "w/o CF" not in md


def test_html_and_table3(tmp_path):
    html = render_table(frame(), TABLE3_MODELS, fmt="html", title="Table 3")
    assert "<b>0.7000 ± 0.0141</b>" in html and "<u>0.6550 ± 0.0071</u>" in html and "CRADLE-VAE w/o CF" in html
    single = frame().query("seed == 0")
    assert "| **0.6900** |" in render_table(single, TABLE3_MODELS)  # one seed: no ± sd
    files = write_tables(frame(), tmp_path)
    assert set(files) == {"table2_md", "table2_html", "table3_md", "table3_html"}
    files = write_tables(frame().query("model != 'cradle_wo_cf'"), tmp_path / "no_ablation")
    assert set(files) == {"table2_md", "table2_html"}


def test_html_fragment_for_pages():
    page = render_table(frame(), TABLE3_MODELS, fmt="html", title="Table 3", standalone=False)
    whole = render_table(frame(), TABLE3_MODELS, fmt="html", title="Table 3")
    assert whole.startswith("<!DOCTYPE html>") and "<body>" in whole
    assert "<html" not in page and "<body" not in page and "<h1>" not in page
    assert page.count("<table") == whole.count("<table") == 1 and "<b>0.7000 ± 0.0141</b>" in page
    assert "white-space:nowrap" in page  # one line per cell inside a narrow page column
