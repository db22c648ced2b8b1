"""The book builds in the quick profile, offline, with no cell errors, and shows every figure and table.

``jupyter-book build book/`` executes every chapter (``execute_notebooks: force``, ``raise_on_error``), so
a failing cell fails this build. The output goes to a temporary folder (``--path-output``); the
experiment grid of the quick profile is cached in ``book/_cache/quick`` by the runner (a fresh clone
runs it, a later build reuses it). The built pages are then checked for every figure and table the
paper reproduction promises (by the MyST names the chapters give them), for their images on disk,
and for the absence of error outputs.

This is the longest test (a few minutes on 2 cores); it needs the ``book`` dependencies
(``jupyter-book`` 1.x, ``ipykernel``), installed by the ``dev`` extra.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from _browser import ARTIFACTS, CHROMIUM_FLAGS, chromium  # noqa: F401 - the shared fixture
from _mini_book import write_mini_book

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
JUPYTER_BOOK = Path(sys.executable).with_name("jupyter-book")
BUILD_TIMEOUT = 40 * 60  # seconds; about 6 minutes on a 2-core CPU

#: page -> MyST names of its figures (must contain an image) and tables (must contain a table)
EXPECTED = {
    "01_introduction": {"tables": ["tab-datasets"], "figures": []},
    "02_quality_control": {"tables": ["tab-qc-norman", "tab-qc-pbmc"], "figures": ["fig-qc-norman", "fig-qc-pbmc"]},
    "03_model": {"tables": [], "figures": ["fig-paper-1", "fig-paper-2"]},
    "04_training": {"tables": [], "figures": ["fig-training-curves"]},
    "05_evaluation": {"tables": ["tab-metrics-simulator"], "figures": ["fig-ate-scatter"]},
    "06_tables": {"tables": ["tab-table2", "tab-table3", "tab-paper-comparison"], "figures": []},
    "07_figures": {"tables": [], "figures": ["fig-figure3", "fig-figure3-baseline", "fig-figure4"]},
    "08_generation": {
        "tables": ["tab-generation-qc", "tab-top-genes", "tab-rescue"],
        "figures": ["fig-perturbation-explorer", "fig-latent-explorer", "fig-latent-generated"],
    },
    "09_which_artifact": {"tables": ["tab-rescue-truth", "tab-artifact-qcpr"], "figures": ["fig-artifact-effects"]},
}
#: pages that display a live widget (its state must be embedded for the static page)
WIDGET_PAGES = ["02_quality_control", "04_training", "08_generation"]


class _Elements(HTMLParser):
    """Collects, for every element with an ``id``, the tags and attributes nested inside it."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, str | None]] = []
        self.inside: dict[str, list[tuple[str, dict]]] = {}
        self.text: dict[str, list[str]] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for _, open_id in self.stack:
            if open_id is not None:
                self.inside[open_id].append((tag, attrs))
        ident = attrs.get("id")
        if ident is not None:
            self.inside.setdefault(ident, [])
            self.text.setdefault(ident, [])
        if tag not in ("img", "br", "hr", "meta", "link", "input", "source", "col", "area", "base", "wbr"):
            self.stack.append((tag, ident))

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        for _, open_id in self.stack:
            if open_id is not None:
                self.text[open_id].append(data)


def _parse(path: Path) -> _Elements:
    parser = _Elements()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


@pytest.fixture(scope="module")
def built_book(tmp_path_factory):
    if not JUPYTER_BOOK.exists():
        pytest.skip(f"jupyter-book is not installed next to {sys.executable} (pip install -e '.[book]')")
    out = tmp_path_factory.mktemp("book")
    env = {**os.environ, "CRADLEKIT_BOOK_PROFILE": "quick", "MPLBACKEND": "Agg", "PYTHONWARNINGS": "ignore"}
    start = time.perf_counter()
    proc = subprocess.run(
        [str(JUPYTER_BOOK), "build", str(BOOK), "--path-output", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    log = proc.stdout + proc.stderr
    artifacts = ROOT / "tests" / "artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "book_build.log").write_text(log)
    assert proc.returncode == 0, f"jupyter-book build failed (rc {proc.returncode}):\n{log[-6000:]}"
    html = out / "_build" / "html"
    if html.is_dir():  # keep the last build for a look (tests/artifacts is git-ignored)
        shutil.rmtree(artifacts / "book_html", ignore_errors=True)
        shutil.copytree(html, artifacts / "book_html")
    return {"html": html, "log": log, "seconds": seconds, "out": out}


def test_build_succeeds_without_warnings(built_book):
    warnings = [line for line in built_book["log"].splitlines() if "WARNING" in line
                and "Kernel is running over TCP" not in line]  # ipykernel's start-up notice, not the book's
    assert not warnings, "\n".join(warnings[:20])


@pytest.mark.parametrize("page", sorted(EXPECTED))
def test_every_figure_and_table_is_in_the_built_page(built_book, page):
    path = built_book["html"] / f"{page}.html"
    assert path.exists(), f"{page}.html was not built"
    elements = _parse(path)
    for name in EXPECTED[page]["figures"]:
        assert name in elements.inside, f"{page}: no element with id {name!r}"
        images = [a for tag, a in elements.inside[name] if tag == "img"]
        assert images, f"{page}: figure {name!r} has no image"
        for attrs in images:
            src = attrs.get("src", "")
            if not src.startswith("data:"):
                assert (path.parent / src).is_file(), f"{page}: image {src} of {name!r} is missing"
                assert (path.parent / src).stat().st_size > 1000, f"{page}: image {src} of {name!r} is empty"
    for name in EXPECTED[page]["tables"]:
        assert name in elements.inside, f"{page}: no element with id {name!r}"
        tags = [tag for tag, _ in elements.inside[name]]
        assert "table" in tags, f"{page}: table {name!r} has no <table>"
        assert tags.count("td") >= 4, f"{page}: table {name!r} is (nearly) empty"


@pytest.mark.parametrize("page", sorted(EXPECTED))
def test_pages_have_no_error_output_and_no_unresolved_glue(built_book, page):
    text = (built_book["html"] / f"{page}.html").read_text(encoding="utf-8")
    assert "Traceback" not in text and "output traceback" not in text, f"{page}: an error output was rendered"
    assert not re.search(r"\{glue:(text|figure|any)\}", text), f"{page}: a glue reference was not resolved"
    assert "glue key" not in text.lower()


def test_numbers_in_the_text_come_from_glue(built_book):
    # chapter 6 quotes the grid's size and the held-out ATE-rho through glue: they must render as numbers
    text = (built_book["html"] / "06_tables.html").read_text(encoding="utf-8")
    assert re.search(r"its grid has\s+(<[^>]+>)*\s*\d+", text), "the glued grid size is not in the text"
    assert re.search(r"The profile is\s+(<[^>]+>\s*)*quick", text)


@pytest.mark.parametrize("page", WIDGET_PAGES)
def test_widget_pages_embed_the_widget_state(built_book, page):
    text = (built_book["html"] / f"{page}.html").read_text(encoding="utf-8")
    assert "application/vnd.jupyter.widget-state+json" in text, f"{page}: no embedded widget state"
    assert "_static/widgets/embed-amd.js" in text, f"{page}: the widget manager is not loaded"


def test_api_reference_documents_every_public_name(built_book):
    """The API page is generated from the docstrings: every name of every subpackage's ``__all__``."""
    import importlib
    import inspect

    text = (built_book["html"] / "api.html").read_text(encoding="utf-8")
    missing = []
    for sub in (
        "qc",
        "data",
        "model",
        "train",
        "module",
        "baselines",
        "evaluate",
        "experiments",
        "pl",
        "widgets",
        "errors",
    ):
        module = importlib.import_module(f"cradlekit.{sub}")
        for name in module.__all__:
            if not inspect.ismodule(getattr(module, name)) and f'id="cradlekit.{sub}.{name}"' not in text:
                missing.append(f"cradlekit.{sub}.{name}")
    assert not missing, f"not on the API page: {missing}"
    assert "Parameters" in text and 'id="cradlekit.enable_logging"' in text


def test_design_page_is_built(built_book):
    text = (built_book["html"] / "design.html").read_text(encoding="utf-8")
    for anchor in ("design-qc", "design-splits", "design-model", "design-training", "design-metrics"):
        assert f'id="{anchor}"' in text, anchor


def test_no_built_page_shows_the_build_machines_paths(built_book):
    """Paths in the pages are relative to the book: none names the checkout, the output folder, the
    home folder or the npm cache of the machine that built it."""
    sys.path.insert(0, str(BOOK / "_ext"))
    import npm_assets  # the book's extension: where this machine caches the pages' JavaScript

    machine = {str(ROOT), str(built_book["out"]), str(Path.home()) + "/", str(npm_assets.cache_dir())}
    machine |= {str(Path(p).resolve()) for p in (ROOT, built_book["out"])}
    found = []
    for page in sorted(built_book["html"].rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        found += [f"{page.relative_to(built_book['html'])}: {p}" for p in sorted(machine) if p in text]
    assert not found, "absolute paths of the build machine in the built pages:\n" + "\n".join(found[:20])


#: Width of the browser window in which the chapter's tables must be whole (a laptop screen).
WINDOW_PX = 1300
WIDE_TABLES = {"06_tables": ["tab-table2", "tab-table3", "tab-paper-comparison"]}

_TABLE_GEOMETRY = """(figureId) => {
  const column = document.querySelector('.bd-article') || document.querySelector('main');
  const right = column.getBoundingClientRect().right;
  return Array.from(document.getElementById(figureId).querySelectorAll('table')).map((table) => {
    const style = getComputedStyle(table);
    const box = table.getBoundingClientRect();
    table.scrollLeft = table.scrollWidth;  // scroll the box to its last column
    const cells = table.querySelectorAll('tr:first-child > th, tr:first-child > td');
    const last = cells[cells.length - 1];
    const lastBox = last.getBoundingClientRect();
    return {columnRight: right, boxRight: box.right, overflowX: style.overflowX,
            scrollWidth: table.scrollWidth, clientWidth: table.clientWidth,
            lastText: last.textContent.trim(), lastRight: lastBox.right, lastLeft: lastBox.left};
  });
}"""


@pytest.mark.parametrize("page", sorted(WIDE_TABLES))
def test_wide_tables_are_whole_at_1300_px(built_book, chromium, page):
    """In a 1300 px window every table of the page ends inside the text column, and its last column
    can be reached: the table fits, or it scrolls sideways inside its own box (not cut off)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(viewport={"width": WINDOW_PX, "height": 900})
            context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file://")
                          else route.abort())  # fmt: skip
            tab = context.new_page()
            tab.goto((built_book["html"] / f"{page}.html").as_uri())
            tab.wait_for_load_state("load")
            found = {name: tab.evaluate(_TABLE_GEOMETRY, name) for name in WIDE_TABLES[page]}
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            tab.locator(f"#{WIDE_TABLES[page][0]}").screenshot(path=str(ARTIFACTS / f"{page}_table_{WINDOW_PX}px.png"))
        finally:
            browser.close()
    for name, tables in found.items():
        assert tables, f"{page}: no table in #{name}"
        for t in tables:
            where = f"{page} #{name} (last column {t['lastText']!r})"
            assert t["boxRight"] <= t["columnRight"] + 1, f"{where}: the table runs past the text column: {t}"
            if t["scrollWidth"] > t["clientWidth"] + 1:  # wider than its box: it must scroll, not clip
                assert t["overflowX"] in ("auto", "scroll"), f"{where}: wider than its box and not scrollable: {t}"
            assert t["lastRight"] <= t["boxRight"] + 1 and t["lastLeft"] >= 0, (
                f"{where}: last column not reachable: {t}"
            )


def test_execution_statistics_page_lists_every_chapter(built_book):
    text = (built_book["html"] / "execution.html").read_text(encoding="utf-8")
    for page in EXPECTED:
        assert page in text, f"execution statistics: {page} missing"


def test_a_cell_error_fails_the_build(tmp_path):
    """The book's configuration turns a failing cell into a failed build (not a page with a traceback)."""
    if not JUPYTER_BOOK.exists():
        pytest.skip(f"jupyter-book is not installed next to {sys.executable} (pip install -e '.[book]')")
    book = write_mini_book(
        tmp_path / "book",
        "# A broken page\n\n```{code-cell} ipython3\nraise ValueError('this cell fails on purpose')\n```\n",
    )
    proc = subprocess.run([str(JUPYTER_BOOK), "build", str(book)], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert "this cell fails on purpose" in proc.stdout + proc.stderr
