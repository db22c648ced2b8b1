"""Real-browser test of the QC widget: Voilà on loopback, driven by Playwright with Debian's Chromium.

The test serves ``tests/data/qc_explorer_voila.ipynb`` (a :class:`cradlekit.widgets.QCExplorer`
on simulated cells) with Voilà on ``127.0.0.1`` and a free port, opens it in headless Chromium,
moves the ``k`` slider with the keyboard and checks that the displayed pass count changes. A
screenshot is saved to ``tests/artifacts/qc_explorer_voila.png``.

Needs the Python packages ``voila`` and ``playwright`` (the ``dev`` extra); Chromium comes from the
shared ``chromium`` fixture of ``tests/_browser.py`` (it installs Debian's package when missing).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from _browser import ARTIFACTS, CHROMIUM_FLAGS, chromium, free_port, stop_server, unavailable, wait_for_port  # noqa: F401

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "data" / "qc_explorer_voila.ipynb"
SERVER_TIMEOUT = 90  # seconds until Voilà answers
PAGE_TIMEOUT = 120  # seconds until the widget (notebook executed) is on the page
CHANGE_TIMEOUT = 30  # seconds for the pass count to change after the slider moved


def _pass_count(text: str) -> int:
    m = re.search(r"Total:\s*(\d+)\s+of", text)
    assert m, f"no pass count in {text!r}"
    return int(m.group(1))


def test_qc_slider_changes_pass_count_in_browser(tmp_path, chromium):
    t0 = time.monotonic()
    try:
        import voila

        del voila  # only its presence matters: the server runs as `python -m voila`
    except ImportError as err:
        unavailable(f"needs the voila package (pip install voila): {err}")
    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = tmp_path / "voila.log"
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter_config"),  # no user or global server config
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter_runtime"),
        "MPLBACKEND": "Agg",
    }
    cmd = [
        sys.executable, "-m", "voila", str(NOTEBOOK), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
        "--show_tracebacks=True", "--ServerApp.port_retries=0",
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=NOTEBOOK.parent,
                                start_new_session=True)  # fmt: skip
    try:
        wait_for_port(port, proc, log, SERVER_TIMEOUT, "Voilà")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.set_default_timeout(PAGE_TIMEOUT * 1000)
                page.goto(url, wait_until="domcontentloaded")
                total = page.locator(".cradlekit-qc-total")
                total.wait_for(state="visible")
                page.wait_for_function(
                    "() => /Total:\\s*\\d+/.test(document.querySelector('.cradlekit-qc-total')?.innerText || '')"
                )
                before_text = total.inner_text()
                before = _pass_count(before_text)
                assert "at k = 3" in before_text

                handle = page.locator(".cradlekit-qc-k .noUi-handle")
                handle.focus()
                deadline = time.monotonic() + CHANGE_TIMEOUT
                after_text = before_text
                while time.monotonic() < deadline:
                    handle.press("ArrowRight")  # one step (0.25) up
                    try:
                        page.wait_for_function(
                            "before => (document.querySelector('.cradlekit-qc-total')?.innerText || '') !== before",
                            arg=before_text, timeout=5000,
                        )  # fmt: skip
                    except Exception:  # noqa: BLE001 - no change yet: move once more
                        continue
                    after_text = total.inner_text()
                    if _pass_count(after_text) != before:
                        break
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "qc_explorer_voila.png"), full_page=True)
            finally:
                browser.close()
    finally:
        stop_server(proc)

    after = _pass_count(after_text)
    assert after != before, f"pass count did not change: {before_text!r} -> {after_text!r}\n{log.read_text()[-2000:]}"
    assert after >= before  # a larger k passes at least as many cells
    m = re.search(r"at k = ([\d.]+)", after_text)
    assert m and float(m.group(1)) > 3.0
    assert (ARTIFACTS / "qc_explorer_voila.png").stat().st_size > 10_000
    print(f"browser test: {before} -> {after} cells pass; {time.monotonic() - t0:.1f} s")
