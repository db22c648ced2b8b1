"""Peak resident memory per phase of a benchmark: a sampling thread plus ``getrusage``."""

from __future__ import annotations

import resource
import threading
import time
from contextlib import contextmanager


def rss_gb() -> float:
    """Current resident memory of this process, in GB (Linux ``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 1e9


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (``ru_maxrss``), in GB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


class PhaseMemory:
    """Samples RSS every ``interval`` seconds; :meth:`phase` records time and peak RSS of a block."""

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.phases: list[dict] = []
        self._peak = rss_gb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, rss_gb())
            time.sleep(self.interval)

    @contextmanager
    def phase(self, name: str):
        start_rss = rss_gb()
        self._peak = start_rss
        t0 = time.perf_counter()
        try:
            yield
        finally:
            end = rss_gb()
            self.phases.append({
                "phase": name, "seconds": time.perf_counter() - t0, "rss_start_gb": start_rss,
                "peak_rss_gb": max(self._peak, end), "rss_end_gb": end, "process_peak_rss_gb": peak_rss_gb(),
            })

    def report(self) -> dict:
        self._stop.set()
        return {"phases": self.phases, "process_peak_rss_gb": peak_rss_gb()}
