"""Renamed modules and functions (issue 22, one name per idea) keep their old names importable.

Every old name warns with one ``DeprecationWarning`` on its first use and none after, logs nothing,
and gives the same results as the new name: the oracle is the new function called on the same
input (an alias that pointed at the wrong function, a copy that drifted, or a missing alias fails).
The checks run in a fresh interpreter: "once per interpreter" cannot be seen in the test process,
where other tests may already have used an old name.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cradlekit._deprecated import MOVED_MODULES

PACKAGE = Path(__file__).resolve().parents[1] / "cradlekit"

SCRIPT = r'''
import json, logging, warnings
import numpy as np, pandas as pd, scipy.sparse as sp
from anndata import AnnData

records = []
logging.getLogger("cradlekit").addHandler(type("H", (logging.Handler,), {"emit": lambda self, r: records.append(r)})())
warnings.simplefilter("always")
out = {}

def uses(code, **names):
    """Run ``code`` twice; the DeprecationWarnings of each run and the value of ``result``."""
    counts, result = [], None
    for _ in range(2):
        scope = dict(names)
        with warnings.catch_warnings(record=True) as caught:
            exec(code, scope)
        counts.append([str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)])
        result = scope.get("result")
    return counts, result

import cradlekit as ck

rng = np.random.default_rng(0)
labelled = AnnData(X=np.ones((40, 3), dtype=np.float32))
labelled.obs["artifact_k3"] = rng.integers(0, 2, 40)
data = pd.DataFrame(rng.normal(size=(4, 6)), index=list("abcd"), columns=list("uvwxyz"))
model = data + rng.normal(scale=0.5, size=data.shape)
counts = rng.poisson(3.0, size=(8, 5)).astype(np.float64)

from cradlekit.train import CellBatches
source = CellBatches(sp.csr_matrix(counts), np.arange(8))

cases = {
    "qc.pass_rate": ("from cradlekit.qc import pass_rate\nresult = pass_rate(labelled, 3)",
                     ck.qc.pass_fraction(labelled, 3)),
    "qc.apply.pass_rate": ("import cradlekit.qc.apply as m\nresult = m.pass_rate(labelled, 3)",
                           ck.qc.pass_fraction(labelled, 3)),
    "train.fingerprint.data_fingerprint": (
        "from cradlekit.train.fingerprint import data_fingerprint\nresult = data_fingerprint(source, None)",
        __import__("cradlekit.train.fingerprint", fromlist=["x"]).batch_source_fingerprint(source, None)),
    "evaluate.metrics": ("import cradlekit.evaluate.metrics as m\n"
                         "result = [m.ate_pearson(model, data), m.ate_r2(model, data)]",
                         [ck.evaluate.agreement.ate_pearson(model, data), ck.evaluate.agreement.ate_r2(model, data)]),
    "evaluate.normalize": ("from cradlekit.evaluate.normalize import perturbseq_normalize\n"
                           "result = perturbseq_normalize(counts).tolist()",
                           ck.evaluate.log_normalize.perturbseq_normalize(counts).tolist()),
    "data.normalizers": ("from cradlekit.data import normalizers\n"
                         "result = normalizers.get_normalizer('norman').__name__",
                         __import__("cradlekit.data.label_layouts", fromlist=["x"]).get_normalizer("norman").__name__),
    "module.normalization": ("import cradlekit.module.normalization as m\n"
                             "result = [t.tolist() for t in m.log_standardize_stats(counts)]",
                             [t.tolist() for t in ck.module.standardize.log_standardize_stats(counts)]),
    "qc.batches": ("result = ck.qc.batches.BATCH_SPREAD_MADS", ck.qc.sample_batches.BATCH_SPREAD_MADS),
}
for name, (code, expected) in cases.items():
    counts_per_use, result = uses(code, ck=ck, labelled=labelled, data=data, model=model, counts=counts, source=source)
    out[name] = {"warnings": counts_per_use, "equal": result == expected}
out["logged"] = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def old_names() -> dict:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", ["qc.pass_rate", "qc.apply.pass_rate", "train.fingerprint.data_fingerprint",
                                  "evaluate.metrics", "evaluate.normalize", "data.normalizers",
                                  "module.normalization", "qc.batches"])
def test_an_old_name_warns_once_and_gives_the_new_names_results(old_names, name):
    first, second = old_names[name]["warnings"]
    assert len(first) == 1 and f"cradlekit.{name}" in first[0] and "deprecated" in first[0], first
    assert second == [], f"{name} warned again on its second use: {second}"
    assert old_names[name]["equal"], f"{name} gave other results than its new name"


def test_old_names_log_nothing(old_names):
    assert old_names["logged"] == []


def test_every_moved_module_has_its_new_file_and_no_old_one():
    """A file left at an old path would shadow the alias (Python's own finder runs first)."""
    for old, new in MOVED_MODULES.items():
        assert (PACKAGE.parent / (new.replace(".", "/") + ".py")).is_file(), new
        assert not (PACKAGE.parent / (old.replace(".", "/") + ".py")).exists(), old


def test_old_names_stay_out_of_the_public_lists():
    """The API page is generated from ``__all__``: it lists the new names only."""
    import cradlekit as ck
    from cradlekit.train import fingerprint

    assert "pass_fraction" in ck.qc.__all__ and "pass_rate" not in ck.qc.__all__
    assert "batch_source_fingerprint" in fingerprint.__all__ and "data_fingerprint" not in fingerprint.__all__


def test_the_module_finder_answers_only_for_moved_names():
    with pytest.raises(ModuleNotFoundError):
        __import__("cradlekit.evaluate.no_such_module")
    import cradlekit as ck

    with pytest.raises(AttributeError):
        ck.evaluate.no_such_name  # noqa: B018
