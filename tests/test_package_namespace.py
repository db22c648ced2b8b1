"""``import cradlekit as ck`` gives every subpackage as an attribute (``ck.pl``, ``ck.widgets`` and
``ck.experiments`` on first use, PEP 562), without importing matplotlib or ipywidgets at start-up.

Each check runs in a fresh interpreter (a subprocess): in the test process these modules are
already imported by other tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cradlekit"
HEAVY = ("matplotlib", "matplotlib.pyplot", "ipywidgets", "ipympl", "openTSNE")


def _run(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_import_does_not_load_plotting_or_widgets():
    found = _run(
        "import json, sys\nimport cradlekit\n"
        f"print(json.dumps({{m: m in sys.modules for m in "
        f"{list(HEAVY) + ['cradlekit.pl', 'cradlekit.widgets', 'cradlekit.experiments']!r}}}))"
    )
    assert not any(found.values()), f"imported by 'import cradlekit': {[m for m, v in found.items() if v]}"


def test_every_subpackage_is_an_attribute_after_import_cradlekit():
    subpackages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert {"pl", "widgets", "experiments", "qc", "data"} <= set(subpackages)
    found = _run(
        "import json, sys\nimport cradlekit as ck\n"
        "out = {}\n"
        f"for name in {subpackages!r}:\n"
        "    module = getattr(ck, name)\n"
        "    out[name] = [module.__name__, name in dir(ck), name in ck.__all__]\n"
        "out['pl.qc_violins'] = callable(ck.pl.qc_violins)\n"
        "out['widgets.QCExplorer'] = ck.widgets.QCExplorer.__name__\n"
        "out['experiments.run_grid'] = callable(ck.experiments.run_grid)\n"
        "out['matplotlib after ck.pl'] = 'matplotlib' in sys.modules\n"
        "out['same module'] = ck.pl is sys.modules['cradlekit.pl']\n"
        "print(json.dumps(out))"
    )
    for name in subpackages:
        assert found[name] == [f"cradlekit.{name}", True, True], (name, found[name])
    assert found["pl.qc_violins"] and found["experiments.run_grid"]
    assert found["widgets.QCExplorer"] == "QCExplorer"
    assert found["matplotlib after ck.pl"] and found["same module"]


def test_unknown_attribute_still_raises_attribute_error():
    found = _run(
        "import json\nimport cradlekit as ck\n"
        "try:\n    ck.not_a_submodule\n    out = 'no error'\n"
        "except AttributeError as err:\n    out = str(err)\n"
        "print(json.dumps({'error': out, 'hasattr': hasattr(ck, 'plots')}))"
    )
    assert found == {"error": "module 'cradlekit' has no attribute 'not_a_submodule'", "hasattr": False}
