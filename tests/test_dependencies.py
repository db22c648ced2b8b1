"""The declared dependencies are what the code runs.

* Every third-party package the ``cradlekit`` package imports is declared in ``pyproject.toml``
  (runtime dependencies, or an optional extra for optional features), found by reading the imports.
* Doublets come from scanpy's port of scrublet (``sc.pp.scrublet``): the ``scrublet`` package is not a
  dependency and never imported; scikit-image, which the port needs for its automatic threshold, is.
  A fresh interpreter in which ``import scrublet`` fails runs the QC with doublet calling.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _extras_of(requirement: str) -> set[str]:
    """``dask[distributed]`` -> ``{"distributed"}``: an extra named after the package it installs."""
    found = re.search(r"\[([^\]]*)\]", requirement)
    return {e.strip().lower() for e in found.group(1).split(",")} if found else set()


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    optional = [r for reqs in project.get("optional-dependencies", {}).values() for r in reqs]
    extras = {_name(r) for r in optional} | {e for r in optional for e in _extras_of(r)}
    return runtime, extras


def _third_party_imports() -> dict[str, list[str]]:
    """Top-level third-party module names imported anywhere in the package -> files importing them."""
    found: dict[str, list[str]] = {}
    for path in (ROOT / "cradlekit").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "cradlekit":
                    found.setdefault(top, []).append(path.relative_to(ROOT).as_posix())
    return found


def test_every_imported_package_is_declared():
    runtime, extras = _declared()
    dists = packages_distributions()
    missing = {}
    for module, files in sorted(_third_party_imports().items()):
        names = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if not names & (runtime | extras):
            missing[module] = (sorted(names), sorted(set(files))[:3])
    assert not missing, f"imported but not declared in pyproject.toml (module: distributions, files): {missing}"


def test_scrublet_package_is_not_a_dependency_and_scikit_image_is():
    runtime, extras = _declared()
    assert "scrublet" not in runtime | extras
    assert "scikit-image" in runtime
    assert "scrublet" not in _third_party_imports()


def test_scanpy_scrublet_port_runs_without_the_scrublet_package():
    code = r'''
import json, sys
sys.modules["scrublet"] = None  # 'import scrublet' raises ImportError from here on
import cradlekit as ck
adata = ck.data.simulate_perturbseq(n_cells=600, n_genes=300, n_single=4, n_combinations=3, n_cell_states=3,
                                    true_ate_cells=10, seed=0)
ck.qc.label_artifacts(adata, run_scrublet=True)
print(json.dumps({"ran": bool(adata.uns["qc"]["scrublet"]["ran"]), "source": adata.uns["qc"]["scrublet"]["source"],
                  "scores": int(adata.obs["doublet_score"].notna().sum()),
                  "called": int(adata.obs["predicted_doublet"].sum()),
                  "skimage": "skimage.filters" in sys.modules}))
'''
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["ran"] and out["source"] == "scanpy.pp.scrublet" and out["scores"] == 600
    assert out["skimage"], "the automatic threshold (scikit-image's threshold_minimum) did not run"
    assert out["called"] > 0
