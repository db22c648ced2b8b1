"""Every warning reaches the user once: a message is either a Python warning (something to act on)
or a log record (progress and notes), never both; importing cradlekit installs no log handler.

The behavioural tests trigger each kind of warning of the QC, label and ATE code and count, per
message, the Python warnings plus the ``cradlekit`` log records carrying it: exactly one. A static
check keeps new code from pairing ``logger.warning(msg)`` with ``warnings.warn(msg)`` again, and a
fresh interpreter shows what a user sees on stderr without any logging configuration.
"""

from __future__ import annotations

import ast
import json
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import cradlekit as ck

PACKAGE = Path(__file__).resolve().parents[1] / "cradlekit"
LOG_METHODS = {"warning", "warn", "error", "critical", "info", "debug", "exception"}


def _emitted(caplog, fn, *args, **kwargs) -> tuple[list[str], list[str]]:
    """``(warning messages, cradlekit log messages at WARNING or above)`` emitted by ``fn(...)``."""
    caplog.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with caplog.at_level(logging.INFO, logger="cradlekit"):
            fn(*args, **kwargs)
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("cradlekit") and r.levelno >= logging.WARNING]
    return [str(w.message) for w in caught], logged


def _once(caplog, fragment: str, fn, *args, **kwargs) -> None:
    warned, logged = _emitted(caplog, fn, *args, **kwargs)
    n_warned = sum(fragment in m for m in warned)
    n_logged = sum(fragment in m for m in logged)
    assert n_warned + n_logged == 1, f"{fragment!r}: {n_warned} warning(s), {n_logged} log record(s)"
    # and no message of the call is both a warning and a log record
    assert not set(warned) & set(logged), set(warned) & set(logged)


def _two_batches(make_qc_adata):
    import anndata as ad

    a = make_qc_adata(n_cells=300, seed=1)
    b = make_qc_adata(n_cells=300, seed=2, lib_scale=20.0)
    both = ad.concat([a, b], index_unique="-")
    both.obs["batch"] = np.repeat(["small", "large"], 300)
    return both


def test_qc_warnings_appear_once(make_qc_adata, caplog):
    adata = make_qc_adata()
    # no scrublet, no precomputed doublets: the doublet criterion is skipped; a 200-gene panel
    _once(caplog, "QC criterion 'doublet' skipped", ck.qc.label_artifacts, adata.copy(), run_scrublet=False)
    _once(caplog, "genes", ck.qc.label_artifacts, adata.copy(), run_scrublet=False)  # the panel warning
    both = _two_batches(make_qc_adata)
    _once(caplog, "differ strongly between batches", ck.qc.label_artifacts, both, run_scrublet=False,
          batch_key="batch")  # fmt: skip


def test_precomputed_metric_warnings_appear_once(make_qc_adata, caplog):
    adata = make_qc_adata()
    adata.obs["mt_fraction"] = np.full(adata.n_obs, 0.05)
    _once(caplog, "looks like a fraction", ck.qc.compute_metrics, adata, precomputed={"pct_counts_mt": "mt_fraction"})
    adata.obs["too_small"] = 1.0
    _once(caplog, "is it the right column", ck.qc.compute_metrics, adata, precomputed={"total_counts": "too_small"})


def test_apply_thresholds_warning_appears_once(make_qc_adata, caplog):
    reference = make_qc_adata()
    ck.qc.label_artifacts(reference, run_scrublet=False)
    generated = make_qc_adata(seed=5)
    generated = generated[:, [g for g in generated.var_names if not g.startswith("MT-")]].copy()
    _once(caplog, "skipped here because their genes are absent", ck.qc.apply_thresholds, generated, reference,
          run_scrublet=False)  # fmt: skip


def test_label_and_ate_warnings_appear_once(caplog):
    obs = pd.DataFrame({"guide": ["ctrl", "A+A", "B", "A", "ctrl", "B"]}, index=[f"c{i}" for i in range(6)])
    import anndata as ad

    adata = ad.AnnData(X=np.ones((6, 3), dtype=np.float32), obs=obs)
    _once(caplog, "counted once", ck.data.standardize_perturbations, adata, perturbation_key="guide",
          control_label="ctrl")  # fmt: skip
    counts = ad.AnnData(X=np.array([[1, 2], [3, 4], [5, 6], [2, 2]], dtype=np.float32),
                        obs=pd.DataFrame({"perturbation": ["control", "A", "control", "A"]},
                                         index=list("abcd")))  # fmt: skip
    counts.uns["cradlekit"] = {"perturbation_key": "perturbation", "control_label": "control", "combo_sep": "+"}
    _once(caplog, "have no cells", ck.evaluate.data_ate, counts, perturbations=["A", "B"], on_empty="skip",
          qc_passed_only=False)  # fmt: skip


def test_metric_warning_appears_once(caplog):
    genes = [f"g{i}" for i in range(5)]
    flat = pd.DataFrame(np.zeros((2, 5)), index=["A", "B"], columns=genes)
    data = pd.DataFrame(np.arange(10.0).reshape(2, 5), index=["A", "B"], columns=genes)
    _once(caplog, "ATE-ρ undefined", ck.evaluate.ate_pearson, flat, data)


def test_no_function_logs_and_warns_the_same_message():
    """Static check over the package: no function passes one message to a logger and to warnings.warn."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            logged, warned = set(), set()
            for call in (n for n in ast.walk(func) if isinstance(n, ast.Call) and n.args):
                target = call.func
                if (
                    isinstance(target, ast.Attribute)
                    and target.attr == "warn"
                    and ast.unparse(target.value) == "warnings"
                ):
                    warned.add(ast.unparse(call.args[0]))
                elif (isinstance(target, ast.Attribute) and target.attr in LOG_METHODS
                      and ast.unparse(target.value).endswith("logger")):  # fmt: skip
                    logged.add(ast.unparse(call.args[0]))
            for message in logged & warned:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{func.lineno} {func.name}: {message}")
    assert not found, "logged and warned:\n" + "\n".join(found)


def test_import_installs_no_handler_and_a_warning_prints_once():
    """A fresh interpreter without logging configuration: the library logger has no handler and
    propagates; a skipped QC criterion prints one line on stderr, INFO progress prints nothing;
    enable_logging() (the command line's opt-in) prints INFO once per record."""
    code = r'''
import json, logging, sys, warnings
import numpy as np, scipy.sparse as sp, anndata as ad
import cradlekit as ck
lg = logging.getLogger("cradlekit")
state = {"handlers": [type(h).__name__ for h in lg.handlers], "propagate": lg.propagate,
         "root_handlers": len(logging.getLogger().handlers)}
rng = np.random.default_rng(0)
adata = ad.AnnData(sp.csr_matrix(rng.poisson(3.0, (200, 60))))
adata.var_names = ["MT-CO1", "MT-ND1", "RPL3", "RPS6", "HBB"] + [f"G{i}" for i in range(55)]
ck.qc.label_artifacts(adata, run_scrublet=False)
ck.enable_logging()
ck.enable_logging()
ck.logger.info("progress after enable_logging")
print(json.dumps(state))
'''
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads(done.stdout.strip().splitlines()[-1])
    assert state == {"handlers": [], "propagate": True, "root_handlers": 0}
    err = done.stderr
    assert err.count("QC criterion 'doublet' skipped") == 1, err
    assert "artifact cells (a_i = 1)" not in err  # INFO progress is silent by default
    assert err.count("progress after enable_logging") == 1, err
    assert "INFO [cradlekit] progress after enable_logging" in err
