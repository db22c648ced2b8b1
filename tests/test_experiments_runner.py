"""The experiment grid on the simulator (configs/smoke.yaml: 2 models x k 3/5 x 2 seeds, early stopping with
patience 3): tables, caching, resume after an interruption, determinism, and the same table through a local Dask
cluster."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cradlekit.cli import main
from cradlekit.experiments import METRICS, load_config, run_grid, run_one, runner as runner_module
from cradlekit.experiments.grid import RunSpec, expand_grid, run_json_path

SMOKE = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"
#: Columns that must agree between two runs of the same cell (timings and host facts excluded).
STABLE = ["dataset", "model", "k", "seed", "split", *METRICS, "heldout_n_perturbations", "heldout_n_excluded",
          "all_n_perturbations", "all_n_excluded", "qcpr_doublets", "epochs", "best_epoch", "steps", "config_hash",
          "run"]


class Interrupt(RuntimeError):
    pass


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """The smoke grid, run once sequentially."""
    config = load_config(SMOKE, output_dir=str(tmp_path_factory.mktemp("smoke")))
    return config, run_grid(config)


def copy_grid(config, dest: Path):
    """The same grid in another folder, finished runs and prepared data included."""
    shutil.copytree(config.output_path, dest)
    return config.replace(output_dir=str(dest))


def test_grid_writes_results_and_table2(grid):
    config, result = grid
    res = result.results
    assert len(result.ran) == 8 and not result.cached and not result.failed
    expected = [(s.k, s.model, s.seed) for s in expand_grid(config)]
    assert list(zip(res["k"], res["model"], res["seed"], strict=True)) == expected
    assert set(STABLE) <= set(res.columns)
    assert {"train_seconds", "device", "n_model_cells", "n_qcpr_cells"} <= set(res.columns)
    assert (res["device"] == "cpu").all() and (res["n_model_cells"] == 200).all() and (res["n_qcpr_cells"] == 20).all()
    assert (res["heldout_n_perturbations"] + res["heldout_n_excluded"] == 2).all()  # 25% of 8 combinations
    # "all": every perturbation with training cells (16 - 2 held out), the same n for every model
    assert (res["all_n_perturbations"] == 14).all() and (res["all_n_excluded"] == 0).all()
    # values are checked against a direct computation in test_row_metrics_equal_a_direct_computation;
    # here: QCPR is a pooled pass rate over 17 groups (control + 16) x 20 generated cells, so a whole number of cells
    n_cells = 20 * (1 + res["all_n_perturbations"] + res["heldout_n_perturbations"])
    assert (n_cells == 340).all()
    passed = res["qcpr"] * n_cells / 100
    np.testing.assert_allclose(passed, passed.round(), atol=1e-6)
    assert (passed <= n_cells).all() and (res["qcpr_doublets"] == "scrublet on all 340 generated cells together").all()
    assert res[["all_ate_pearson", "all_ate_r2", "all_jaccard"]].notna().all().all()
    assert res["config_hash"].is_unique

    out = config.output_path
    assert pd.read_csv(out / "results.csv")[["model", "k", "seed"]].equals(res[["model", "k", "seed"]])
    assert len(list((out / "runs").glob("*.json"))) == 8 and len(list((out / "prepared").glob("*_k*.h5ad"))) == 2
    md = (out / "table2.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| Model | QC thr. | Held-out ATE-ρ") and "| QCPR (%) | Seeds |" in rows[0]
    assert [r.split(" | ")[0:2] for r in rows[1:]] == [["| Conditional VAE", "3σ"], ["| CRADLE-VAE", ""],
                                                     ["| Conditional VAE", "5σ"], ["| CRADLE-VAE", ""]]
    assert all(" ± " in r and r.endswith("| 2 |") for r in rows[1:])
    assert md.count("**") >= 2 * 7 and "<u>" in md  # a best and a second per k and metric
    assert (out / "table2.html").read_text().count("<tr>") == 5 and not (out / "table3.md").exists()


def test_rerun_skips_every_finished_run(grid, monkeypatch):
    config, first = grid
    mtimes = {p: p.stat().st_mtime_ns for p in (config.output_path / "runs").glob("*.json")}

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(runner_module, "run_one", must_not_run)
    again = run_grid(config)
    assert not again.ran and len(again.cached) == 8
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    pd.testing.assert_frame_equal(again.results, first.results)


def test_interrupted_grid_resumes(grid, tmp_path):
    config, first = grid
    config = copy_grid(config, tmp_path / "resume")
    lost = [RunSpec("cradle", 5, 1), RunSpec("cvae", 5, 0), RunSpec("cvae", 5, 1)]
    for spec in lost:  # as if the grid had stopped before these
        run_json_path(config, spec).unlink()
    seen: list[RunSpec] = []

    def stop_after_first_new_run(spec, row):
        seen.append(spec)
        if spec in lost:
            raise Interrupt(spec)

    with pytest.raises(Interrupt):
        run_grid(config, callback=stop_after_first_new_run)
    assert sum(run_json_path(config, s).exists() for s in lost) == 1
    assert len(seen) == 6  # 5 cached runs reported, then the first new one

    resumed = run_grid(config)
    assert len(resumed.ran) == 2 and len(resumed.cached) == 6
    pd.testing.assert_frame_equal(resumed.results[STABLE], first.results[STABLE])  # retrained runs: same metrics


def test_same_seed_gives_identical_metrics(grid):
    config, first = grid
    a = run_one(config, "cradle", 3, 0, write=False)
    b = run_one(config, "cradle", 3, 0, write=False)
    stable = [c for c in STABLE if c in a]
    assert {c: a[c] for c in stable} == {c: b[c] for c in stable}
    cached = first.results.set_index(["model", "k", "seed"]).loc[("cradle", 3, 0)]
    for metric in METRICS:
        assert a[metric] == pytest.approx(cached[metric], rel=0, abs=0, nan_ok=True)


def test_cli_run_and_table(grid, tmp_path, capsys):
    config, _ = grid
    assert main(["run", str(SMOKE), "--out", str(config.output_path)]) == 0  # all cached
    assert "0 ran, 8 cached" in capsys.readouterr().out
    assert main(["table", str(config.output_path / "results.csv"), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "table2.md").read_text() == (config.output_path / "table2.md").read_text()


def test_cell_split_scores_every_perturbation_on_test_cells(grid, tmp_path):
    config, _ = grid
    from cradlekit.experiments import load_prepared, load_trained

    config = config.replace(output_dir=str(tmp_path / "cells"), split={"kind": "cells", "seed": 0}, models=["cvae"],
                            save_models=True)
    row = run_one(config, "cvae", 3, 0)
    assert row["split"] == "cells 0.64/0.16/0.2 seed=0"
    assert row["heldout_n_perturbations"] + row["heldout_n_excluded"] == 16 == row["all_n_perturbations"]
    model, adata = load_trained(config, "cvae", 3, 0, accelerator="cpu"), load_prepared(config, 3)
    labels = sorted(set(adata.obs["perturbation"].astype(str)) - {"control"})
    expected = direct_metrics(model, adata, "artifact_k3", labels, labels, 200, 50, 0, heldout_split="test")
    for key, value in expected.items():  # held-out: test cells only; all: every cell
        assert row[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    assert abs(expected["heldout_ate_pearson"] - expected["all_ate_pearson"]) > 1e-3


@pytest.mark.slow
def test_dask_local_cluster_gives_the_sequential_table(grid, tmp_path):
    distributed = pytest.importorskip("distributed")
    config, first = grid
    config = config.replace(output_dir=str(tmp_path / "dask"))
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                       dashboard_address=None, scheduler_kwargs=runner_module.LOOPBACK_SCHEDULER)
    client = distributed.Client(cluster)
    try:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        assert all(addr.startswith("tcp://127.0.0.1:") for addr in client.scheduler_info()["workers"])
        result = run_grid(config, executor="dask", client=client)
    finally:
        client.close()
        cluster.close()
    assert len(result.ran) == 8
    pd.testing.assert_frame_equal(result.results[STABLE], first.results[STABLE])
    assert (config.output_path / "table2.md").read_text() == (first.files["table2_md"]).read_text()


# --- an independent computation of a result row's metrics ------------------------------------------
def _lognorm(X) -> np.ndarray:
    """log2(1e4 x / sum(x) + 1) per cell (the paper's metric space)."""
    X = np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float64)
    return np.log2(1e4 * X / X.sum(1, keepdims=True) + 1)


def _ate(values: np.ndarray, labels: np.ndarray, perturbations, control="control") -> np.ndarray:
    base = values[labels == control].mean(0)
    return np.stack([values[labels == p].mean(0) - base for p in perturbations])


def _scores(model: np.ndarray, data: np.ndarray, k: int) -> dict[str, float]:
    x, y = data.ravel(), model.ravel()
    top = lambda row: set(np.argsort(-np.abs(row), kind="stable")[:k].tolist())  # noqa: E731
    jac = [len(top(m) & top(d)) / len(top(m) | top(d)) for m, d in zip(model, data, strict=True)]
    return {"ate_pearson": float(np.corrcoef(x, y)[0, 1]),
            "ate_r2": float(1 - ((x - y) ** 2).sum() / ((x - x.mean()) ** 2).sum()),
            "jaccard": float(np.mean(jac))}


def _dense(X) -> np.ndarray:
    return np.asarray(X.toarray() if hasattr(X, "toarray") else X, dtype=np.float64)


def direct_metrics(model, adata, artifact_key, heldout, labels, n, jaccard_k, seed, heldout_split=None,
                   sampled=True):
    """ATE-rho / R2 / Jaccard written out with numpy on the cells the runner generates.

    The runner draws the control with ``seed`` and the perturbations (one chunk here) with
    ``seed + 1``, at library size 1e4 (``sampled``: NB counts, log-normalised; else expected
    expressions, ``log2(x + 1)``); the data ATE uses the QC-passed cells.
    """
    from cradlekit.experiments.run_one import _CHUNK_ENTRIES

    assert len(labels) <= max(1, _CHUNK_ENTRIES // (n * adata.n_vars))  # one generation chunk
    draw = model.generate if sampled else model.predict_mean
    ctrl = draw(["control"], n=n, library_size=1e4, seed=seed)
    cells = draw(labels, n=n, library_size=1e4, seed=seed + 1)
    gen_labels = np.r_[ctrl.obs["perturbation"].astype(str), cells.obs["perturbation"].astype(str)]
    values = np.vstack([_dense(ctrl.X), _dense(cells.X)])
    gen = _lognorm(values) if sampled else np.log2(values + 1)
    passed = adata.obs[artifact_key].to_numpy() == 0
    data_all = _lognorm(adata.X)
    data_labels = adata.obs["perturbation"].astype(str).to_numpy()
    out = {}
    seen = labels if heldout_split is not None else [p for p in labels if p not in set(heldout)]
    for scope, wanted in (("heldout", heldout), ("all", seen)):  # "all": perturbations with training cells
        use = (passed if scope == "all" or heldout_split is None
               else passed & (adata.obs["split"] == heldout_split).to_numpy())
        model_ate = _ate(gen, gen_labels, wanted)
        data_ate = _ate(data_all[use], data_labels[use], wanted)
        for key, value in _scores(model_ate, data_ate, jaccard_k).items():
            out[f"{scope}_{key}"] = value
    return out


def test_row_metrics_equal_a_direct_computation(grid, tmp_path):
    """Oracle: the metrics recomputed with numpy (ATE-rho, R2, Jaccard) and QCPR recomputed by
    ``qc_pass_rate`` on the same generated cells from the saved model. Tolerance: float64 sums of
    ~2,500 terms, agreement to 1e-6 relative; QCPR counts cells, so it is exact."""
    from cradlekit.evaluate import qc_pass_rate
    from cradlekit.experiments import load_prepared, load_trained

    config, _ = grid
    saving = copy_grid(config, tmp_path / "direct").replace(save_models=True)
    row = run_one(saving, "cradle", 3, 0)
    model, adata = load_trained(saving, "cradle", 3, 0, accelerator="cpu"), load_prepared(saving, 3)
    labels = sorted(set(adata.obs["perturbation"].astype(str)) - {"control"})
    heldout = sorted(str(p) for p in adata.uns["split"]["heldout"])
    assert all(model.can_generate(p) for p in labels) and row["all_n_excluded"] == 0
    expected = direct_metrics(model, adata, "artifact_k3", heldout, labels, 200, 50, 0)
    for key, value in expected.items():
        assert row[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    # 200 steps of training: weak but real signal; an unrelated ATE has rho ~ N(0, 1 / n_values)
    assert expected["all_ate_pearson"] > 3 / np.sqrt(len(labels) * adata.n_vars)
    generated = model.generate(["control", *labels], n=20, library_size=1e4, seed=0)
    per_group = qc_pass_rate(generated, adata, ks=[3], run_scrublet=True, seed=0, groupby="perturbation").iloc[:, 0]
    assert row["qcpr"] == pytest.approx(float(per_group.mean()), abs=1e-9)
    assert row["qcpr_heldout"] == pytest.approx(float(per_group.loc[heldout].mean()), abs=1e-9)


def test_saved_models_reopen_on_the_prepared_data(grid, tmp_path):
    from cradlekit.experiments import load_prepared, load_trained

    config, _ = grid
    with pytest.raises(FileNotFoundError, match="save_models: false"):
        load_trained(config, "cradle", 3, 0)
    with pytest.raises(ValueError, match="not in the grid"):
        load_prepared(config, 4)
    with pytest.raises(ValueError, match="not a run of the grid"):
        load_trained(config, "sams_vae", 3, 0)
    # one run again, now saving its model: it reopens and predicts exactly what the runner evaluated
    saving = copy_grid(config, tmp_path / "saving").replace(save_models=True)
    row = run_one(saving, "cradle", 3, 0)
    model = load_trained(saving, "cradle", 3, 0, accelerator="cpu")
    adata = load_prepared(saving, 3)
    assert model.is_trained and model.registry["artifact_key"] == "artifact_k3"
    assert list(model.registry["genes"]) == list(adata.var_names)
    assert model.train_info["epochs"] == row["epochs"]
    before = model.predict_mean(["control"], n=50, seed=0).X
    adata.obs["scratch"] = 1  # load_prepared returns a copy: the runner's cached object is unchanged
    assert "scratch" not in load_prepared(saving, 3).obs
    reloaded = load_trained(saving, "cradle", 3, 0, accelerator="cpu")
    assert (reloaded.predict_mean(["control"], n=50, seed=0).X == before).all()


def test_model_ate_from_sampled_or_expected_cells(grid, tmp_path):
    import dataclasses

    from cradlekit.experiments import load_prepared, load_trained

    config, first = grid
    assert config.evaluation.model_ate == "sampled"  # the paper: generated cells
    expected = copy_grid(config, tmp_path / "expected").replace(
        evaluation={**dataclasses.asdict(config.evaluation), "model_ate": "expected"}, save_models=True)
    a = run_one(expected, "cradle", 3, 0)
    b = first.results.set_index(["model", "k", "seed"]).loc[("cradle", 3, 0)]
    assert a["config_hash"] != b["config_hash"]  # a different evaluation is a different cached run
    # the expected-expression metrics equal a numpy recomputation from predict_mean (the sampled
    # ones are checked the same way in test_row_metrics_equal_a_direct_computation)
    model, adata = load_trained(expected, "cradle", 3, 0, accelerator="cpu"), load_prepared(expected, 3)
    labels = sorted(set(adata.obs["perturbation"].astype(str)) - {"control"})
    heldout = sorted(str(p) for p in adata.uns["split"]["heldout"])
    direct = direct_metrics(model, adata, "artifact_k3", heldout, labels, 200, 50, 0, sampled=False)
    for key, value in direct.items():
        assert a[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    assert abs(a["all_ate_pearson"] - b["all_ate_pearson"]) > 1e-3  # the NB noise of sampled cells
    assert a["qcpr"] == pytest.approx(b["qcpr"])  # QCPR uses sampled cells either way


# ------------------------------------------------------------------ shared folders (issue 12)
_HOLDER = """
import fcntl, os, pathlib, shutil, sys, time
lock, go, src, dst = sys.argv[1:]
fh = open(lock, "a+")
fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
print("locked", flush=True)
while not pathlib.Path(go).exists():
    time.sleep(0.02)
if src != "-":  # finish the run: its JSON appears, then the lock is released
    shutil.copy(src, dst + ".tmp")
    os.replace(dst + ".tmp", dst)
"""


def test_two_runners_share_the_work(grid, tmp_path, monkeypatch):
    """Another runner holds one missing run: this runner does the other, waits, and does not repeat it."""
    import subprocess
    import sys

    from cradlekit.experiments.locks import RunLock

    config, first = grid
    config = copy_grid(config, tmp_path / "shared")
    theirs, mine = RunSpec("cvae", 5, 1), RunSpec("cradle", 5, 1)
    saved = tmp_path / "theirs.json"
    shutil.copy(run_json_path(config, theirs), saved)
    for spec in (theirs, mine):
        run_json_path(config, spec).unlink()
    lock = runner_module._lock(config, theirs).path
    lock.parent.mkdir(parents=True, exist_ok=True)
    go = tmp_path / "go"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(lock), str(go), str(saved),
                               str(run_json_path(config, theirs))], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    assert not RunLock(lock).acquire()  # the other runner really holds it
    trained = []
    real = runner_module.run_one
    monkeypatch.setattr(runner_module, "run_one",
                        lambda c, m, k, s, **kw: trained.append((m, k, s)) or real(c, m, k, s, **kw))

    def release_theirs(spec, row):  # the other runner finishes once this one has done its own run
        if spec == mine:
            go.touch()

    result = run_grid(config, callback=release_theirs)
    holder.wait(timeout=60)
    assert trained == [("cradle", 5, 1)]  # the held run was not trained again
    assert result.ran == [mine] and theirs in result.cached and len(result.cached) == 7
    pd.testing.assert_frame_equal(result.results[STABLE], first.results[STABLE])


def test_a_dead_runners_lock_does_not_block(tmp_path):
    import signal
    import subprocess
    import sys

    from cradlekit.experiments.locks import RunLock

    lock = tmp_path / "x.lock"
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(lock), str(tmp_path / "never"), "-", "-"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    assert not RunLock(lock).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert RunLock(lock).acquire()  # released by the operating system


def test_results_cover_every_matching_run_in_a_shared_folder(grid, tmp_path, cradlekit_log):
    """Two grids in one folder: each results.csv has every run with matching settings, not just its own."""
    config, first = grid
    config = copy_grid(config, tmp_path / "two_grids")
    only_cvae = config.replace(models=["cvae"])  # a second grid over the same folder (all its runs cached)
    result = run_grid(only_cvae)
    assert not result.ran and len(result.cached) == 4
    assert len(result.results) == 8  # the cradle runs of the first grid are kept
    assert list(result.results["model"][:4]) == ["cvae"] * 4  # this grid's own runs first
    assert set(pd.read_csv(config.output_path / "results.csv")["config_hash"]) == set(first.results["config_hash"])
    assert "CRADLE-VAE" in (config.output_path / "table2.md").read_text()
    other = config.replace(train={**config.to_dict()["train"], "lr": 1e-3})  # other settings: not mixed in
    assert runner_module.collect_results(other).empty
    assert "8 finished run(s)" in cradlekit_log.text
