"""Run a whole grid, sequentially or on a Dask cluster, with a cache of finished runs.

Every finished run leaves ``runs/<model>_k<k>_s<seed>_<key>.json`` in the output folder (written
atomically by :func:`~cradlekit.experiments.run_one.run_one`). A run whose JSON exists is not
run again, so re-running a grid is free and an interrupted grid resumes where it stopped.
At the end the rows of the grid's runs are collected (in :func:`~.grid.expand_grid` order) into
``results.csv`` (and ``results.parquet`` when pyarrow is installed) and the tables are rendered.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from .._logging import logger
from .config import ExperimentConfig
from .grid import RunSpec, expand_grid, run_json_path
from .prepare import prepare_all
from .run_one import METRICS, read_run, run_one
from .tables import write_tables

__all__ = ["run_grid", "GridResult", "collect_results", "write_results", "local_dask_client", "LOOPBACK_SCHEDULER"]

Executor = Literal["sequential", "dask"]
#: Scheduler options of the local cluster: no dashboard, and its HTTP endpoint on a free loopback port
#: (the default would try port 8787 and collide with another cluster on the machine).
LOOPBACK_SCHEDULER = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}


@dataclass
class GridResult:
    """Outcome of :func:`run_grid`: the results table, what ran, what came from the cache, files written."""

    results: pd.DataFrame
    ran: list[RunSpec] = field(default_factory=list)
    cached: list[RunSpec] = field(default_factory=list)
    failed: dict[RunSpec, str] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0


def local_dask_client(n_workers: int = 2) -> Any:
    """A ``distributed.Client`` on a local cluster bound to loopback (scheduler, workers and HTTP
    endpoint on 127.0.0.1): ``n_workers`` processes of one thread each, no dashboard. Close it (``client.close(); client.cluster.close()``) when done."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("executor='dask' needs dask[distributed]: pip install 'cradlekit[distributed]'") from err
    cluster = LocalCluster(
        n_workers=int(n_workers), threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, scheduler_kwargs=LOOPBACK_SCHEDULER, silence_logs=40,
    )
    return Client(cluster)


def run_grid(
    config: ExperimentConfig,
    *,
    executor: Executor = "sequential",
    client: Any = None,
    n_workers: int = 2,
    on_error: Literal["raise", "continue"] = "raise",
    callback: Callable[[RunSpec, dict[str, Any]], Any] | None = None,
    write: bool = True,
) -> GridResult:
    """Run every (model, k, seed) of ``config`` that has no finished JSON yet, then write the results.

    Parameters
    ----------
    config
        The grid.
    executor
        ``"sequential"`` (this process) or ``"dask"`` (each run a task calling :func:`run_one`).
    client
        A ``distributed.Client`` to use; ``None`` with ``executor="dask"`` starts
        :func:`local_dask_client` (``n_workers`` processes, loopback only) and closes it at the end.
    n_workers
        Workers of the cluster started here.
    on_error
        ``"raise"``: stop at the first failed run; ``"continue"``: log it, leave it out, go on
        (it is tried again by the next call).
    callback
        Called as ``callback(spec, row)`` after each run finishes (also for cached runs), in the
        main process; an exception from it stops the grid (finished runs stay cached).
    write
        Write ``results.csv`` (+ parquet) and the tables.

    Returns
    -------
    GridResult
    """
    if executor not in ("sequential", "dask"):
        raise ValueError(f"executor must be 'sequential' or 'dask', got {executor!r}")
    start = time.perf_counter()
    specs = expand_grid(config)
    result = GridResult(results=pd.DataFrame())
    todo = []
    for spec in specs:
        row = read_run(run_json_path(config, spec))
        if row is None:
            todo.append(spec)
        else:
            result.cached.append(spec)
            if callback is not None:
                callback(spec, row)
    logger.info("grid %s: %d runs, %d cached, %d to run (%s)", config.name, len(specs), len(result.cached), len(todo), executor)
    if todo:
        prepare_all(config)  # in this process, before any worker needs the files
        if executor == "sequential":
            _run_sequential(config, todo, result, on_error, callback)
        else:
            _run_dask(config, todo, result, on_error, callback, client, n_workers)
    result.results = collect_results(config)
    if write:
        result.files = write_results(result.results, config.output_path)
    result.seconds = time.perf_counter() - start
    logger.info("grid %s: %d ran, %d cached, %d failed in %.1f s", config.name, len(result.ran), len(result.cached),
                len(result.failed), result.seconds)
    return result


def _finish(config: ExperimentConfig, spec: RunSpec, result: GridResult, callback: Callable | None) -> None:
    result.ran.append(spec)
    if callback is not None:
        callback(spec, read_run(run_json_path(config, spec)) or {})


def _fail(spec: RunSpec, err: BaseException, result: GridResult, on_error: str) -> None:
    logger.error("run %s failed: %s: %s", spec, type(err).__name__, err)
    if on_error == "raise":
        raise err
    result.failed[spec] = f"{type(err).__name__}: {err}"


def _run_sequential(config, todo, result, on_error, callback) -> None:
    for spec in todo:
        try:
            run_one(config, spec.model, spec.k, spec.seed)
        except Exception as err:
            _fail(spec, err, result, on_error)
            continue
        _finish(config, spec, result, callback)


def _run_dask(config, todo, result, on_error, callback, client, n_workers) -> None:
    from distributed import as_completed

    own = client is None
    if own:
        client = local_dask_client(n_workers)
    try:
        futures = {
            client.submit(run_one, config, s.model, s.k, s.seed, pure=False): s
            for s in todo
        }
        try:
            for future in as_completed(list(futures)):
                spec = futures[future]
                try:
                    future.result()
                except Exception as err:
                    _fail(spec, err, result, on_error)
                    continue
                _finish(config, spec, result, callback)
        finally:
            client.cancel([f for f in futures if not f.done()])
    finally:
        if own:
            cluster = client.cluster
            client.close()
            cluster.close()


def collect_results(config: ExperimentConfig) -> pd.DataFrame:
    """The finished runs of the grid as one row each, in grid order (k, model, seed)."""
    rows = [row for spec in expand_grid(config) if (row := read_run(run_json_path(config, spec))) is not None]
    frame = pd.DataFrame(rows)
    for col in METRICS:
        if col in frame:
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


def write_results(results: pd.DataFrame, out: str | Path) -> dict[str, Path]:
    """``results.csv`` (+ ``results.parquet`` if pyarrow is installed) and the tables in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": out / "results.csv"}
    results.to_csv(files["csv"], index=False)
    if importlib.util.find_spec("pyarrow") is None:
        logger.debug("pyarrow not installed: no results.parquet")
    else:
        files["parquet"] = out / "results.parquet"
        results.to_parquet(files["parquet"], index=False)
    if len(results):
        files.update(write_tables(results, out))
    return files
