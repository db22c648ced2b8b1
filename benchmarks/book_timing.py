"""Wall time of the book, per chapter, for one profile.

Usage::

    python benchmarks/book_timing.py                       # quick profile (CPU), cold: the grid cache is cleared
    python benchmarks/book_timing.py --warm                # keep book/_cache/<profile> (a rebuild)
    CRADLEKIT_BOOK_PROFILE=full python benchmarks/book_timing.py   # the paper's settings, on a GPU

Builds the book with ``jupyter-book build book/ --path-output <tmp>`` (every chapter executes), reads
each chapter's execution time from the built "Execution statistics" page (myst-nb's record), and
writes ``benchmarks/results/book_<profile>[_warm].md`` and ``.json`` with the total wall time, the machine
(CPU count, torch threads, GPU) and the per-chapter times.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
RESULTS = ROOT / "benchmarks" / "results"


def chapter_times(execution_html: Path) -> list[dict]:
    """Rows of the built execution-statistics table: document, method, seconds, status."""
    text = execution_html.read_text(encoding="utf-8")
    rows = []
    for row in re.findall(r"<tr class=\"row-(?:odd|even)\">(.*?)</tr>", text, re.S):
        cells = [html.unescape(re.sub(r"<[^>]+>", "", c)).strip() for c in re.findall(r"<td>(.*?)</td>", row, re.S)]
        if len(cells) == 5:
            rows.append({"document": cells[0], "method": cells[2], "seconds": float(cells[3]), "ok": cells[4] == "✅"})
    return rows


def machine() -> dict:
    import torch

    return {
        "host": platform.node(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warm", action="store_true", help="keep the experiment grid's cache (time a rebuild)")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from cradlekit.experiments import load_profile

    profile = load_profile(directory=BOOK / "profiles")
    cache = Path(profile.grid.output_dir)
    if not args.warm and cache.exists():
        shutil.rmtree(cache)
    jb = Path(sys.executable).with_name("jupyter-book")
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        proc = subprocess.run(
            [str(jb), "build", str(BOOK), "--path-output", out],
            cwd=ROOT,
            env={**os.environ, "CRADLEKIT_BOOK_PROFILE": profile.name},
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            sys.exit(f"build failed (rc {proc.returncode}):\n{(proc.stdout + proc.stderr)[-4000:]}")
        rows = chapter_times(Path(out) / "_build" / "html" / "execution.html")
    record = {"profile": profile.name, "cache": "warm" if args.warm else "cold", "wall_seconds": round(wall, 1),
              "chapters": rows, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M")}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"book_{profile.name}" + ("_warm" if args.warm else "")
    (RESULTS / f"{name}.json").write_text(json.dumps(record, indent=1))
    lines = [f"# Book build, {profile.name} profile ({record['cache']} cache)", "",
             f"{record['date']}; {record['machine']['cpus']} CPUs, GPU: {record['machine']['gpu'] or 'none'}, "
             f"torch {record['machine']['torch']}. Total wall time of `jupyter-book build book/`: "
             f"**{wall / 60:.1f} min** ({wall:.0f} s).", "", "| chapter | execution (s) |", "|---|---|"]
    lines += [f"| {r['document']} | {r['seconds']:.1f} |" for r in rows]
    lines += [f"| all chapters | {sum(r['seconds'] for r in rows):.1f} |", ""]
    (RESULTS / f"{name}.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
