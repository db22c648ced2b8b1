"""Shared set-up of the real-browser tests: Chromium (installed here if missing), free ports, servers.

Every browser test gets Chromium through the ``chromium`` fixture, which installs Debian's
``chromium`` package itself (``apt-get install -y chromium``, as root) when ``/usr/bin/chromium`` is
missing: no test depends on another having installed it. Playwright's own browser download does not
work offline, so Playwright is pointed at that executable. Without ``playwright``, or where Chromium
cannot be installed, the tests are skipped with the reason, unless ``CRADLEKIT_BROWSER_TEST=required``,
which turns a skip into a failure (for CI).

Import the fixture into a test module with ``from _browser import chromium  # noqa: F401``.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CRADLEKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--no-first-run"]  # fmt: skip
#: Screenshots of the browser tests (``tests/artifacts``, git-ignored; ``CRADLEKIT_TEST_ARTIFACTS`` overrides).
ARTIFACTS = Path(os.environ.get("CRADLEKIT_TEST_ARTIFACTS", Path(__file__).resolve().parent / "artifacts"))
_INSTALL_LOCK = threading.Lock()


def unavailable(reason: str):
    """Skip (or, with ``CRADLEKIT_BROWSER_TEST=required``, fail) with ``reason``."""
    if os.environ.get("CRADLEKIT_BROWSER_TEST", "").lower() == "required":
        pytest.fail(f"browser test required but cannot run: {reason}")
    pytest.skip(reason)


def ensure_chromium() -> str:
    """Path of Chromium; installs Debian's package when it is missing and we may (root, apt-get)."""
    with _INSTALL_LOCK:
        if Path(CHROMIUM).is_file():
            return CHROMIUM
        apt = shutil.which("apt-get")
        if CHROMIUM != "/usr/bin/chromium" or apt is None or os.geteuid() != 0:
            unavailable(f"{CHROMIUM} not found; install Debian's chromium (apt-get install -y chromium) as root")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

        def apt_get(*args: str) -> str:
            done = subprocess.run([apt, *args], env=env, capture_output=True, text=True, timeout=900, check=False)
            return (done.stdout + done.stderr)[-1500:]

        out = apt_get("install", "-y", "chromium")
        if not Path(CHROMIUM).is_file():  # stale package lists: refresh once and retry
            apt_get("update")
            out = apt_get("install", "-y", "chromium")
        if not Path(CHROMIUM).is_file():
            unavailable(f"apt-get install -y chromium did not provide {CHROMIUM}:\n{out}")
        return CHROMIUM


@pytest.fixture(scope="session")
def chromium() -> str:
    """Path of a Chromium executable for Playwright (installed by this fixture when missing)."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as err:
        unavailable(f"needs the playwright package (pip install playwright): {err}")
    return ensure_chromium()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float, what: str) -> None:
    """Wait until ``proc`` listens on ``port`` (a TCP connection, no request)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited with code {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.25)
    pytest.fail(f"{what} did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


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


def stop_server(proc: subprocess.Popen) -> None:
    """Terminate a server started by a test (``start_new_session=True``) and every process it started."""
    children = _descendants(proc.pid) if Path("/proc").is_dir() else []
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)  # the server's own process group
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
