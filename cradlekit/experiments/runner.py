"""Run a whole grid, sequentially or on a Dask cluster, with a cache of finished runs.

Every finished run leaves ``runs/<model>_k<k>_s<seed>_<key>.json`` in the output folder (written
atomically by :func:`~cradlekit.experiments.run_one.run_one`). A run whose JSON exists is not
run again, so re-running a grid is free and an interrupted grid resumes where it stopped.

Several runners may share an output folder: each run is taken under a lock
(:class:`~.locks.RunLock`, released by the operating system if the runner dies), a runner skips
runs another one holds, and at the end waits for them (and runs any whose holder failed).

Runners of *one* grid share a folder; a grid with other settings is refused while one runs there
(:class:`~cradlekit.errors.FolderInUseError`): both would rewrite ``results.csv`` and the tables, each
with its own runs only. Every runner holds a shared lock ``.locks/grid-<settings digest>.lock`` in the
output folder for as long as it runs, and refuses to start while a lock of another digest is held.

At the end every finished run in the folder whose settings match the config (its cache key is the
one this config gives its model, k and seed; :func:`collect_results`) is collected into
``results.csv`` (and ``results.parquet`` when pyarrow is installed) and the tables are rendered, so
two grids sharing a folder one after the other, or two runners, each leave a table of all the matching
runs (a warning names the runs of other settings that the new ``results.csv`` leaves out). Files are
written atomically.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from .._atomic import atomic_path
from .._locks import held_elsewhere, holder
from .._logging import logger
from ..errors import FolderInUseError
from .config import ExperimentConfig
from .grid import MODEL_ORDER, RunSpec, expand_grid, run_json_path, run_key, run_name
from .locks import LOCK_DIR, RunLock
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
    endpoint on 127.0.0.1): ``n_workers`` processes of one thread each, no dashboard. Close it
    (``client.close(); client.cluster.close()``) when done."""
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

    Raises
    ------
    cradlekit.errors.FolderInUseError
        A grid with other settings is running in the same output folder (nothing is changed).
    """
    if executor not in ("sequential", "dask"):
        raise ValueError(f"executor must be 'sequential' or 'dask', got {executor!r}")
    folder = _claim_folder(config)
    try:
        return _run_grid(config, executor, client, n_workers, on_error, callback, write)
    finally:
        folder.release()


def _grid_digest(config: ExperimentConfig) -> str:
    """Digest of a grid's settings (everything but the output folder): runners of one grid share it."""
    payload = {k: v for k, v in config.to_dict().items() if k != "output_dir"}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _claim_folder(config: ExperimentConfig) -> RunLock:
    """Hold this grid's shared lock on the output folder; refuse while a grid with other settings holds one."""
    locks = config.output_path / LOCK_DIR
    mine = RunLock(locks / f"grid-{_grid_digest(config)}.lock", shared=True)
    mine.acquire(blocking=True)
    for other in sorted(locks.glob("grid-*.lock")):
        if other != mine.path and held_elsewhere(other):
            mine.release()
            raise FolderInUseError(
                f"output folder {config.output_path} is in use by a grid with other settings ({holder(other)}; lock "
                f"{other.name}): both would rewrite results.csv and the tables with their own runs only. Use another "
                "output folder (output_dir, or --out), or wait until that grid ends."
            )
    return mine


def _run_grid(config, executor, client, n_workers, on_error, callback, write) -> GridResult:
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
    logger.info(
        "grid %s: %d runs, %d cached, %d to run (%s)", config.name, len(specs), len(result.cached), len(todo), executor
    )
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


def _lock(config: ExperimentConfig, spec: RunSpec) -> RunLock:
    return RunLock(config.output_path / "runs" / LOCK_DIR / f"{run_name(config, spec)}.lock")


def _done_elsewhere(config: ExperimentConfig, spec: RunSpec, result: GridResult, callback: Callable | None) -> bool:
    """With the run's lock held: whether another runner finished it meanwhile (then it counts as cached)."""
    row = read_run(run_json_path(config, spec))
    if row is None:
        return False
    logger.info("run %s was finished by another runner", run_name(config, spec))
    result.cached.append(spec)
    if callback is not None:
        callback(spec, row)
    return True


def _finish(config: ExperimentConfig, spec: RunSpec, result: GridResult, callback: Callable | None) -> None:
    result.ran.append(spec)
    if callback is not None:
        callback(spec, read_run(run_json_path(config, spec)) or {})


def _fail(spec: RunSpec, err: BaseException, result: GridResult, on_error: str) -> None:
    logger.error("run %s failed: %s: %s", spec, type(err).__name__, err)
    if on_error == "raise":
        raise err
    result.failed[spec] = f"{type(err).__name__}: {err}"


def _run_locked(config, spec, result, on_error, callback) -> None:
    if _done_elsewhere(config, spec, result, callback):
        return
    try:
        run_one(config, spec.model, spec.k, spec.seed)
    except Exception as err:
        _fail(spec, err, result, on_error)
        return
    _finish(config, spec, result, callback)


def _run_sequential(config, todo, result, on_error, callback) -> None:
    busy = []
    for spec in todo:
        lock = _lock(config, spec)
        if not lock.acquire():
            logger.info(
                "run %s is held by another runner (%s); doing the others first", run_name(config, spec), lock.path
            )
            busy.append(spec)
            continue
        try:
            _run_locked(config, spec, result, on_error, callback)
        finally:
            lock.release()
    for spec in busy:  # wait for the other runner; run it here if it gave up or died
        with _lock(config, spec):
            _run_locked(config, spec, result, on_error, callback)


def _run_dask(config, todo, result, on_error, callback, client, n_workers) -> None:
    own = client is None
    if own:
        client = local_dask_client(n_workers)
    try:
        claimed, busy = [], []
        for spec in todo:
            lock = _lock(config, spec)
            if lock.acquire():
                claimed.append((spec, lock))
            else:
                busy.append(spec)
        _dask_batch(config, claimed, result, on_error, callback, client)
        later = []
        for spec in busy:
            lock = _lock(config, spec)
            lock.acquire(blocking=True)
            if _done_elsewhere(config, spec, result, callback):
                lock.release()
            else:
                later.append((spec, lock))
        _dask_batch(config, later, result, on_error, callback, client)
    finally:
        if own:
            cluster = client.cluster
            client.close()
            cluster.close()


def _dask_batch(config, claimed, result, on_error, callback, client) -> None:
    """Run the claimed ``(spec, lock)`` pairs on the cluster; each lock is released when its run ends."""
    from distributed import as_completed

    locks = dict(claimed)
    try:
        todo = [spec for spec, _ in claimed if not _done_elsewhere(config, spec, result, callback)]
        futures = {client.submit(run_one, config, s.model, s.k, s.seed, pure=False): s for s in todo}
        try:
            for future in as_completed(list(futures)):
                spec = futures[future]
                try:
                    future.result()
                except Exception as err:
                    _fail(spec, err, result, on_error)
                    continue
                finally:
                    locks[spec].release()
                _finish(config, spec, result, callback)
        finally:
            client.cancel([f for f in futures if not f.done()])
    finally:
        for lock in locks.values():
            lock.release()


def collect_results(config: ExperimentConfig) -> pd.DataFrame:
    """Every finished run in ``config``'s output folder whose settings match ``config``, one row each.

    A run matches when the cache key in its JSON is the key ``config`` gives its (model, k, seed):
    the grid's own runs, and runs of other grids in the same folder that used the same data,
    options and training settings. Rows come in grid order (k, model, seed), then the other matching
    runs; runs made with other settings are left out (and counted in the log).
    """
    order = {spec: i for i, spec in enumerate(expand_grid(config))}
    found: list[tuple[tuple, dict[str, Any]]] = []
    other = 0
    for path in sorted((config.output_path / "runs").glob("*.json")):
        try:
            row = json.loads(path.read_text())["row"]
            spec = RunSpec(str(row["model"]), row["k"], int(row["seed"]))
            matches = row.get("config_hash") == run_key(config, spec)
        except (OSError, ValueError, KeyError, TypeError):
            logger.warning("unreadable run file %s left out of the results", path)
            continue
        if not matches:
            other += 1
            continue
        rank = MODEL_ORDER.index(spec.model) if spec.model in MODEL_ORDER else len(MODEL_ORDER)
        key = (0, order[spec], 0, "", 0) if spec in order else (1, float(spec.k), rank, spec.model, spec.seed)
        found.append((key, row))
    if other:
        logger.warning("%d finished run(s) in %s were made with other settings and are not in this grid's results "
                       "(nor in the results.csv written now); run their grid again to list them (they are cached)",
                       other, config.output_path / "runs")
    frame = pd.DataFrame([row for _, row in sorted(found, key=lambda item: item[0])])
    for col in METRICS:
        if col in frame:
            frame[col] = pd.to_numeric(frame[col], errors="coerce")
    return frame


def write_results(results: pd.DataFrame, out: str | Path) -> dict[str, Path]:
    """``results.csv`` (+ ``results.parquet`` if pyarrow is installed) and the tables in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": out / "results.csv"}
    with atomic_path(files["csv"]) as tmp:
        results.to_csv(tmp, index=False)
    if importlib.util.find_spec("pyarrow") is None:
        logger.debug("pyarrow not installed: no results.parquet")
    else:
        files["parquet"] = out / "results.parquet"
        with atomic_path(files["parquet"]) as tmp:
            results.to_parquet(tmp, index=False)
    if len(results):
        files.update(write_tables(results, out))
    return files
