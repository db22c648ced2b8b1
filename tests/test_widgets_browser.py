"""Real-browser test of the QC widget: Voilà on loopback, driven by Playwright with Debian's Chromium.

The test serves ``tests/data/qc_explorer_voila.ipynb`` (a :class:`cradlekit.widgets.QCExplorer`
on simulated cells) with Voilà on ``127.0.0.1`` and a free port, opens it in headless Chromium,
moves the ``k`` slider with the keyboard and checks that the displayed pass count changes. A
screenshot is saved to ``tests/artifacts/qc_explorer_voila.png``.

Needs the Python packages ``voila`` and ``playwright`` (the ``dev`` extra) and ``/usr/bin/chromium``
(Playwright's own browser download does not work offline): when Chromium is missing and the test
runs as root with ``apt-get``, it installs Debian's ``chromium`` package itself. Otherwise it is
skipped with the reason, unless ``CRADLEKIT_BROWSER_TEST=required``, which turns a skip into a
failure (for CI).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "data" / "qc_explorer_voila.ipynb"
ARTIFACTS = HERE / "artifacts"
CHROMIUM = os.environ.get("CRADLEKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--no-first-run"]  # fmt: skip
SERVER_TIMEOUT = 90  # seconds until Voilà answers
PAGE_TIMEOUT = 120  # seconds until the widget (notebook executed) is on the page
CHANGE_TIMEOUT = 30  # seconds for the pass count to change after the slider moved


def _unavailable(reason: str):
    if os.environ.get("CRADLEKIT_BROWSER_TEST", "").lower() == "required":
        pytest.fail(f"browser test required but cannot run: {reason}")
    pytest.skip(reason)


def _ensure_chromium() -> str:
    if Path(CHROMIUM).is_file():
        return CHROMIUM
    apt = shutil.which("apt-get")
    if CHROMIUM != "/usr/bin/chromium" or apt is None or os.geteuid() != 0:
        _unavailable(f"{CHROMIUM} not found; install Debian's chromium (apt-get install -y chromium) as root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt_get(*args: str) -> str:
        done = subprocess.run([apt, *args], env=env, capture_output=True, text=True, timeout=900, check=False)
        return (done.stdout + done.stderr)[-1500:]

    out = apt_get("install", "-y", "chromium")
    if not Path(CHROMIUM).is_file():  # stale package lists: refresh once and retry
        apt_get("update")
        out = apt_get("install", "-y", "chromium")
    if not Path(CHROMIUM).is_file():
        _unavailable(f"apt-get install -y chromium did not provide {CHROMIUM}:\n{out}")
    return CHROMIUM


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(port: int, proc: subprocess.Popen, log: Path) -> None:
    """Wait until the server listens (a TCP connection; a GET of the page would run the notebook)."""
    deadline = time.monotonic() + SERVER_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"Voilà exited with code {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.25)
    pytest.fail(f"Voilà did not answer within {SERVER_TIMEOUT} s:\n{log.read_text()[-3000:]}")


def _proc_stat(pid: int | str) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (ppid at 1, start time at 19)."""
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _descendants(pid: int) -> list[tuple[int, str]]:
    """``(pid, start time)`` of the processes started (transitively) by ``pid`` (kernels run in their own
    session, outside the server's process group)."""
    parents: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _proc_stat(entry.name)
        if fields:
            parents.setdefault(int(fields[1]), []).append((int(entry.name), fields[19]))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def _stop(proc: subprocess.Popen) -> None:
    """Terminate the Voilà server started by this test and every process it started (its kernel)."""
    children = _descendants(proc.pid) if Path("/proc").is_dir() else []
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)  # the server's own process group (start_new_session=True)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    for pid, started in children:  # a kernel the server could not shut down (same pid *and* start time)
        fields = _proc_stat(pid)
        if fields and fields[19] == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


def _pass_count(text: str) -> int:
    m = re.search(r"Total:\s*(\d+)\s+of", text)
    assert m, f"no pass count in {text!r}"
    return int(m.group(1))


def test_qc_slider_changes_pass_count_in_browser(tmp_path):
    t0 = time.monotonic()
    try:
        import voila
        from playwright.sync_api import sync_playwright

        del voila  # only its presence matters: the server runs as `python -m voila`
    except ImportError as err:
        _unavailable(f"needs the voila and playwright packages (pip install voila playwright): {err}")
    chromium = _ensure_chromium()

    port = _free_port()
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
        _wait_for_server(port, proc, log)
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
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "qc_explorer_voila.png"), full_page=True)
            finally:
                browser.close()
    finally:
        _stop(proc)

    after = _pass_count(after_text)
    assert after != before, f"pass count did not change: {before_text!r} -> {after_text!r}\n{log.read_text()[-2000:]}"
    assert after >= before  # a larger k passes at least as many cells
    m = re.search(r"at k = ([\d.]+)", after_text)
    assert m and float(m.group(1)) > 3.0
    assert (ARTIFACTS / "qc_explorer_voila.png").stat().st_size > 10_000
    print(f"browser test: {before} -> {after} cells pass; {time.monotonic() - t0:.1f} s")
