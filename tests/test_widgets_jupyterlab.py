"""Real-browser test in JupyterLab 4: a notebook with all four controllers is opened, run and driven in Chromium.

The test writes a notebook (small simulated data, a tiny trained model, then one cell per controller)
into ``tmp_path``, starts JupyterLab on loopback with its own configuration folder (``allow_root``,
no token, no news or update checks; nothing global is changed), opens the notebook in headless
Chromium, runs all cells and drives each controller like a user: the QC ``k`` slider, training Start,
PerturbationExplorer's artifact toggle, LatentExplorer's colouring (a shrinking category list, the
case that used to raise ``Cannot set properties of undefined (setting 'selected')``) and its switch
to generated cells (a busy bar, then the new plot). It asserts that the shown outputs change as
expected and that the browser console has no errors. Screenshots are saved to ``tests/artifacts``
(``CRADLEKIT_TEST_ARTIFACTS`` overrides).

Needs ``jupyterlab`` 4 and ``playwright`` (the ``dev`` extra); Chromium comes from the shared
``chromium`` fixture (``tests/_browser.py``), which installs it when missing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _browser import ARTIFACTS, CHROMIUM_FLAGS, chromium, free_port, stop_server, unavailable, wait_for_port  # noqa: F401

SERVER_TIMEOUT = 120  # seconds until JupyterLab listens
RUN_TIMEOUT = int(
    os.environ.get("CRADLEKIT_LAB_TIMEOUT", 180)
)  # seconds for all cells to run (a kernel start, a 2-epoch model)
STEP_TIMEOUT = 60  # seconds for one interaction to show its result

SETUP = """\
import cradlekit as ck
from cradlekit.widgets import LatentExplorer, PerturbationExplorer, QCExplorer, TrainingController

adata = ck.data.simulate_perturbseq(n_cells=400, n_genes=200, n_single=4, n_combinations=4, true_ate_cells=20, seed=0)
ck.qc.label_artifacts(adata)
ck.data.split_combinations(adata, seed=0)
ck.data.counterfactual_references(adata)
model = ck.PerturbationModel(adata, latent_dim=4, hidden_dim=8, num_particles=1)
model.train(max_epochs=2, batch_size=128, progress_bar=False)"""
CELLS = [
    SETUP,
    "QCExplorer(adata)",
    "TrainingController(adata, max_epochs=2, latent_dim=4, hidden_dim=8, batch_size=128, patience=0,\n"
    "                   model_options={'num_particles': 1})",
    "PerturbationExplorer(model, adata, perturbation='KLF1', n=40, run_scrublet=False)",
    "LatentExplorer(adata, model=model, method='tsne', n_per_perturbation=10, color_by='perturbation')",
]


def _notebook(path: Path) -> None:
    cells = [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [],
              "source": src} for i, src in enumerate(CELLS)]  # fmt: skip
    nb = {"cells": cells, "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python",
                                                      "name": "python3"}},
          "nbformat": 4, "nbformat_minor": 5}  # fmt: skip
    path.write_text(json.dumps(nb))


def _config(folder: Path) -> None:
    """allow_root, no token, no network checks: in this test's own JUPYTER_CONFIG_DIR only."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "jupyter_server_config.json").write_text(json.dumps({
        "ServerApp": {"allow_root": True, "token": "", "password": "", "open_browser": False, "ip": "127.0.0.1",
                      "port_retries": 0, "disable_check_xsrf": True},
        "LabApp": {"news_url": None, "check_for_updates_class": "jupyterlab.NeverCheckForUpdate"},
    }))  # fmt: skip
    settings = folder / "lab" / "user-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True, exist_ok=True)
    (settings / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false",
                                                                           "checkForUpdates": False}))


def _text(page, selector: str) -> str:
    return page.locator(selector).first.inner_text()


def test_all_four_controllers_in_jupyterlab(tmp_path, chromium):
    t0 = time.monotonic()
    try:
        import jupyterlab

        del jupyterlab
    except ImportError as err:
        unavailable(f"needs jupyterlab 4 (pip install 'jupyterlab>=4'): {err}")
    from playwright.sync_api import sync_playwright

    root = tmp_path / "lab"
    root.mkdir()
    _notebook(root / "widgets.ipynb")
    config = tmp_path / "jupyter_config"
    _config(config)
    port = free_port()
    log = tmp_path / "jupyterlab.log"
    env = {
        **os.environ, "JUPYTER_CONFIG_DIR": str(config), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(config / "lab" / "user-settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "workspaces"), "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[1]),
                                                                            os.environ.get("PYTHONPATH")])),
    }  # fmt: skip
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", f"--ServerApp.root_dir={root}"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True)
    errors: list[str] = []
    shots: list[Path] = []
    try:
        wait_for_port(port, proc, log, SERVER_TIMEOUT, "JupyterLab")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1500, "height": 1100})
                page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
                page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
                page.set_default_timeout(STEP_TIMEOUT * 1000)
                try:
                    _drive(page, port, shots)
                except Exception:
                    ARTIFACTS.mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(ARTIFACTS / "jupyterlab_failure.png"), full_page=True)
                    print("console errors:", errors, "\nserver log:", log.read_text()[-3000:])
                    raise
            finally:
                browser.close()
    finally:
        stop_server(proc)
    assert not errors, "browser console errors:\n" + "\n".join(errors[:20])
    assert all(p.stat().st_size > 10_000 for p in shots)
    print(f"JupyterLab browser test: {time.monotonic() - t0:.1f} s")


def _drive(page, port: int, shots: list[Path]) -> None:
    """Open the notebook, run all cells and drive the four controllers."""
    if True:
        if True:
            if True:
                page.goto(f"http://127.0.0.1:{port}/lab/tree/widgets.ipynb", wait_until="domcontentloaded")
                page.locator(".jp-Notebook .jp-Cell").first.wait_for(state="visible", timeout=RUN_TIMEOUT * 1000)
                page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first.wait_for(
                    state="attached", timeout=RUN_TIMEOUT * 1000)  # fmt: skip
                for i in range(len(CELLS)):  # run each cell in place; early key presses can be lost
                    cell = page.locator(".jp-Notebook .jp-Cell").nth(i)
                    for _ in range(6):
                        cell.locator(".jp-InputPrompt").click()
                        page.keyboard.press("Control+Enter")
                        try:
                            page.wait_for_function(
                                "i => document.querySelectorAll('.jp-Notebook .jp-Cell')[i]"
                                "?.querySelector('.jp-InputPrompt')?.innerText.trim() !== '[ ]:'", arg=i, timeout=5000)
                            break
                        except Exception:  # noqa: BLE001 - not queued yet (kernel connecting): press again
                            continue
                latent = page.locator(".cradlekit-latent")
                latent.wait_for(state="visible", timeout=RUN_TIMEOUT * 1000)
                ARTIFACTS.mkdir(parents=True, exist_ok=True)

                def shot(name: str) -> None:
                    path = ARTIFACTS / f"jupyterlab_{name}.png"
                    page.screenshot(path=str(path), full_page=True)
                    shots.append(path)

                shot("opened")
                # QCExplorer: the k slider moves, the pass count follows
                total = page.locator(".cradlekit-qc-total")
                total.scroll_into_view_if_needed()
                page.wait_for_function("() => /Total:\\s*\\d+/.test(document.querySelector('.cradlekit-qc-total')"
                                       "?.innerText || '')")  # fmt: skip
                before = _text(page, ".cradlekit-qc-total")
                handle = page.locator(".cradlekit-qc-k .noUi-handle")
                handle.focus()
                for _ in range(8):  # 8 steps of 0.25: k = 5
                    handle.press("ArrowRight")
                page.wait_for_function("() => (document.querySelector('.cradlekit-qc-total')?.innerText || '')"
                                       ".includes('at k = 5')")  # fmt: skip
                after = _text(page, ".cradlekit-qc-total")
                assert int(re.search(r"Total:\s*(\d+)", after).group(1)) > int(re.search(r"Total:\s*(\d+)", before)
                                                                             .group(1)), (before, after)  # fmt: skip
                assert page.locator(".cradlekit-qc-group-table").count() == 1
                # TrainingController: Start, the status and the loss curves follow
                training = page.locator(".cradlekit-training")
                training.scroll_into_view_if_needed()
                training.get_by_role("button", name="Start").click()
                page.wait_for_function("() => (document.querySelector('.cradlekit-training-status')?.innerText "
                                       "|| '').includes('status: finished')", timeout=RUN_TIMEOUT * 1000)  # fmt: skip
                assert "epoch 2/2" in _text(page, ".cradlekit-training-status")
                # PerturbationExplorer: artifact on regenerates (in the background) and the headline says so
                summary = page.locator(".cradlekit-perturbation-summary")
                summary.scroll_into_view_if_needed()
                assert "artifact off" in summary.inner_text()
                page.locator(".cradlekit-perturbation").get_by_role("button", name="artifact on").click()
                page.wait_for_function("() => (document.querySelector('.cradlekit-perturbation-summary')?.innerText"
                                       " || '').includes('artifact on')")  # fmt: skip
                assert "five MAD criteria" in summary.inner_text()
                shot("qc_training_perturbation")
                # LatentExplorer: colour by artifact (category list shrinks), then generated cells
                latent.scroll_into_view_if_needed()
                options = latent.locator("select").first.locator("option")
                n_perturbations = options.count()
                latent.get_by_role("button", name="artifact", exact=True).click()
                page.wait_for_function("n => document.querySelectorAll('.cradlekit-latent select')[0].options.length"
                                       " !== n", arg=n_perturbations)  # fmt: skip
                assert options.count() == 2 and n_perturbations > 2
                latent.get_by_role("button", name="group", exact=True).click()
                page.wait_for_function("() => [...document.querySelectorAll('.cradlekit-latent select')[0].options]"
                                       ".some(o => o.text === 'single')")  # fmt: skip
                latent.get_by_role("button", name="artifact", exact=True).click()
                latent.get_by_role("button", name="generated", exact=True).click()
                page.wait_for_function("() => [...document.querySelectorAll('.cradlekit-latent select')[0].options]"
                                       ".some(o => o.text.replace(/\\s/g, ' ') === 'artifact on')",
                                       timeout=RUN_TIMEOUT * 1000)  # fmt: skip
                latent.locator(".cradlekit-busy progress").wait_for(state="detached")  # done: the busy bar goes
                # hover (ipympl canvas): moving over the cells shows one's id, perturbation, split and QC status
                canvas = latent.locator("canvas").last
                box = canvas.bounding_box()
                hover = latent.locator(".cradlekit-latent-hover")
                for fx in np.linspace(0.3, 0.7, 9):
                    for fy in np.linspace(0.3, 0.7, 9):
                        page.mouse.move(box["x"] + fx * box["width"] * 0.62, box["y"] + fy * box["height"])
                        page.wait_for_timeout(60)
                    if "perturbation" in hover.inner_text():
                        break
                assert "cell" in hover.inner_text() and "QC" in hover.inner_text(), hover.inner_text()
                # lasso: a drag around the middle selects cells, which can be named
                x0, y0 = box["x"] + 0.25 * box["width"] * 0.62, box["y"] + 0.25 * box["height"]
                x1, y1 = box["x"] + 0.75 * box["width"] * 0.62, box["y"] + 0.75 * box["height"]
                page.mouse.move(x0, y0)
                page.mouse.down()
                for x, y in ((x1, y0), (x1, y1), (x0, y1), (x0, y0)):
                    page.mouse.move(x, y, steps=8)
                page.mouse.up()
                page.wait_for_function("() => /\\d+ cells in the lasso/"
                                       ".test(document.querySelector('.cradlekit-latent')?.innerText || '')")
                shot("latent_generated")
