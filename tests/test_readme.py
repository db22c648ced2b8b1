"""The README's two set-up commands are exactly what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "README has no bash block"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


def test_readme_opens_with_two_commands():
    text = (ROOT / "README.md").read_text()
    first_block = text.index("```bash")
    assert "```" not in text[:first_block], "the set-up block must be the first code block"
    assert len(_readme_commands()) == 2


def test_ci_runs_exactly_the_readme_commands():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    ci_cmds = [line for line in ci if line.strip() and not line.startswith(("#", "set ", "cd "))]
    assert ci_cmds == _readme_commands()


# --- "Your own data": the README's lines run, exactly, on a simulated screen written as own data ---------
def _block_under(heading: str, lang: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    block = re.search(rf"```{lang}\n(.*?)```", text[start:end], re.S)
    assert block, f"README section {heading!r} has no {lang} block"
    return block.group(1)


@pytest.mark.parametrize("split_kind", ["combinations", "cells"])
def test_readme_own_data_lines_run_on_an_own_layout_screen(tmp_path, monkeypatch, split_kind):
    """The ten lines as printed on a combination screen; on a one-target-per-cell screen with the split
    line swapped for ``split_cells``, as the README says (every other line unchanged)."""
    import warnings

    import torch

    import cradlekit as ck

    code = _block_under("Your own data", "python")
    n_lines = [ln for ln in code.splitlines() if ln.strip() and not ln.lstrip().startswith(("#", "import"))]
    assert len(n_lines) == 10, n_lines
    assert 'uns["split"]["heldout"]' not in code  # absent after split_cells: the README must not need it
    combos = split_kind == "combinations"
    if not combos:
        split_line = next(ln for ln in n_lines if "split_combinations(adata, seed=0)" in ln)
        assert "split_cells" in split_line  # the line itself points to the alternative
        code = code.replace("ck.data.split_combinations(adata, seed=0)", "ck.data.split_cells(adata, seed=0)")
    monkeypatch.chdir(tmp_path)
    ck.data.write_example_screen("screen.h5ad", n_cells=1500, n_genes=180, seed=1, n_combinations=16 if combos else 0)
    raw = ck.data.read_h5ad("screen.h5ad")
    assert "perturbation" not in raw.obs and not raw.var_names.str.startswith("MT-").any()
    reversed_order = {g for g in raw.obs["guide"].unique() if "+" in g and g.split("+") != sorted(g.split("+"))}
    assert bool(reversed_order) == combos  # the combination file writes some combinations as B+A
    torch.set_num_threads(1)
    namespace: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        exec(compile(code, "README.md (Your own data)", "exec"), namespace)  # noqa: S102 - the README's own lines
    adata, metrics, heldout, split = (namespace[k] for k in ("adata", "metrics", "heldout", "split"))
    # labels canonical, originals kept, combinations in either order are one perturbation
    labels = set(adata.obs["perturbation"].astype(str))
    assert not labels & reversed_order and "control" in labels and "guide" in adata.obs
    # QC used the full-transcriptome metrics from obs, and nothing warned about panel metrics
    source = adata.uns["qc"]["metric_source"]
    assert (
        source["pct_counts_mt"] == "obs['pct_counts_mt_full']" and source["total_counts"] == "obs['total_counts_full']"
    )
    assert not any("computed from the genes in adata" in str(w.message) for w in caught)
    cell_split = adata.obs["split"].astype(str)
    if combos:  # held-out combinations have no training cell, whatever order their labels had in the file
        assert split is None and heldout == sorted(map(str, adata.uns["split"]["heldout"]))
        assert set(cell_split[adata.obs["perturbation"].isin(heldout)]) == {"test"} and heldout
    else:  # every perturbation keeps training cells and is measured on its test cells only
        assert "heldout" not in adata.uns["split"] and split == "test"
        assert heldout == sorted(labels - {"control"})
        train = set(adata.obs["perturbation"][cell_split == "train"].astype(str))
        assert set(heldout) <= train
    assert metrics["n_perturbations"] == len(heldout) and -1 <= metrics["ate_pearson"] <= 1


def test_readme_own_data_runner_config_runs(tmp_path, capsys):
    import yaml

    from cradlekit.cli import main
    from cradlekit.data import write_example_screen

    config = yaml.safe_load(_block_under("Your own data", "yaml"))
    write_example_screen(tmp_path / "screen.h5ad", n_cells=1200, n_genes=160, seed=2)
    # the README's config with a tiny budget (one model, one k, a few steps, few generated cells)
    config.update(models=["cradle"], ks=[3], seeds=[0], output_dir=str(tmp_path / "out"))
    config["train"].update(max_epochs=2, max_steps=4, batch_size=256)
    config.update(
        qc={"run_scrublet": False}, evaluation={"n_model_cells": 40, "n_qcpr_cells": 10, "run_scrublet": False}
    )
    (tmp_path / "my_screen.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "my_screen.yaml")]) == 0
    out = capsys.readouterr().out
    assert "1 ran" in out and "0 failed" in out
    import pandas as pd

    results = pd.read_csv(tmp_path / "out" / "results.csv")
    assert len(results) == 1 and results["dataset"].iloc[0] == "screen"
