"""ipywidgets in the built book render offline, from the JavaScript the book build fetches from the npm
registry into its cache (``book/_ext/npm_assets.py``; nothing of it is in the repository).

The test builds a one-page Jupyter Book in ``tmp_path`` with the book's own ``_config.yml`` and
``_ext/`` (a MyST notebook showing an ``IntSlider`` and an ``HTML`` widget), checks the built page
(embedded widget state, one script tag for each widget file, the pinned files copied to
``_static/widgets/``), then opens it from ``file://`` in headless Chromium with every other request
aborted and waits for both widgets to be drawn, once. A screenshot is saved to
``tests/artifacts/book_widgets.png``. The build uses the usual npm cache: the first build on a machine
downloads the pinned tarballs, later ones work offline.

Needs ``jupyter-book`` 1.x next to ``sys.executable`` (the ``book`` extra), the ``playwright`` Python
package; Chromium comes from the shared ``chromium`` fixture of ``tests/_browser.py``, which installs
Debian's package itself when it is missing (so this test no longer depends on another test having done
it). Without them the tests are skipped with the reason, unless ``CRADLEKIT_BROWSER_TEST=required``.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _browser import ARTIFACTS, CHROMIUM_FLAGS, chromium  # noqa: F401 - the shared fixture
from _mini_book import write_mini_book

HERE = Path(__file__).resolve().parent
BOOK = HERE.parent / "book"
sys.path.insert(0, str(BOOK / "_ext"))
import npm_assets  # noqa: E402 - the book's extension, from book/_ext

#: _static/ path -> pinned SHA-256 of every file the extension serves
PINNED = {target: digest for p in npm_assets.PACKAGES for target, digest in p.files.values()}
WIDGET_JS = ["require.js", "embed-amd.js"]  # loaded in this order
BUILD_TIMEOUT = 300  # seconds for `jupyter-book build` (about 5 s here)
PAGE_TIMEOUT = 30  # seconds until the widgets are drawn (about 1 s here)
WIDGET_TEXT = "cradlekit widget ok"

PAGE = f'''# Widgets

Some mathematics, typeset by MathJax from the npm cache: $x_i = \\sum_k a_k$.

```{{code-cell}} ipython3
import ipywidgets as W

W.IntSlider(value=7, description="k")
```

```{{code-cell}} ipython3
W.HTML("<b>{WIDGET_TEXT}</b>")
```
'''


def _unavailable(reason: str):
    if os.environ.get("CRADLEKIT_BROWSER_TEST", "").lower() == "required":
        pytest.fail(f"book widget test required but cannot run: {reason}")
    pytest.skip(reason)


def _script_tags(html: str, name: str) -> list[str]:
    """``<script ... src="_static/widgets/<name>[?v=...]">`` tags of ``html``."""
    return re.findall(rf'<script\b[^>]*\bsrc="_static/widgets/{re.escape(name)}(?:\?[^"]*)?"[^>]*>', html)


@pytest.fixture(scope="module")
def built_book(tmp_path_factory) -> Path:
    """Build the one-page book once; return its ``_build/html`` folder."""
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    if not jupyter_book.is_file():
        _unavailable(f"{jupyter_book} not found: install the book extra (pip install -e '.[book]')")
    root = write_mini_book(tmp_path_factory.mktemp("mini_book"), PAGE)
    npm_assets.ensure_assets()  # the pinned tarballs into the npm cache (downloaded on a machine's first run)
    # then build with an unreachable registry: the build itself must work offline, from the cache
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(root / "_jupyter_runtime"),
           "CRADLEKIT_NPM_REGISTRY": "http://127.0.0.1:9"}
    done = subprocess.run([str(jupyter_book), "build", str(root)], cwd=root, env=env, capture_output=True,
                          text=True, timeout=BUILD_TIMEOUT, check=False)  # fmt: skip
    assert done.returncode == 0, f"jupyter-book build failed:\n{(done.stdout + done.stderr)[-4000:]}"
    html = root / "_build" / "html"
    assert (html / "page.html").is_file(), f"no page.html in {sorted(p.name for p in html.iterdir())}"
    return html


def test_book_has_no_static_folder():
    """jupyter-book 1.x adds every .js under *all* html_static_path folders to every page once a
    ``_static`` folder exists: the widget files would be loaded twice (widgets drawn twice)."""
    assert not (BOOK / "_static").exists(), (
        "book/_static exists: jupyter-book 1.x would then add the widget JavaScript to every page; "
        "see book/_ext/npm_assets.py"
    )


def test_built_page_loads_the_pinned_widget_js(built_book):
    html = (built_book / "page.html").read_text()
    assert html.count('type="application/vnd.jupyter.widget-state+json"') == 1
    assert html.count('type="application/vnd.jupyter.widget-view+json"') == 2
    for name in WIDGET_JS:
        tags = _script_tags(html, name)
        assert len(tags) == 1, f"expected one script tag for _static/widgets/{name}, found {tags}"
    for target, digest in PINNED.items():  # the widget files and MathJax, as pinned
        built = built_book / "_static" / target
        assert built.is_file(), f"{built} missing: is npm_assets in _config.yml's local_extensions?"
        assert hashlib.sha256(built.read_bytes()).hexdigest() == digest, target
    assert html.index("_static/widgets/require.js") < html.index("_static/widgets/embed-amd.js")
    assert len(re.findall(r'<script\b[^>]*\bsrc="_static/mathjax/tex-svg\.js(?:\?[^"]*)?"', html)) == 1
    # myst-nb's CDN defaults are replaced, not added to
    assert "require.min.js" not in html and "html-manager@" not in html


def test_widgets_render_offline_in_chromium(built_book, chromium):
    t0 = time.monotonic()
    from playwright.sync_api import sync_playwright

    aborted: list[str] = []
    errors: list[str] = []

    def only_files(route):
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            aborted.append(route.request.url)
            route.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_FLAGS)
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.route("**/*", only_files)  # offline: every non-file:// request fails
            page = context.new_page()
            page.on("pageerror", lambda err: errors.append(str(err)))
            page.set_default_timeout(PAGE_TIMEOUT * 1000)
            page.goto((built_book / "page.html").as_uri())
            slider = page.locator(".jupyter-widgets.widget-slider")
            text = page.locator(".jupyter-widgets.widget-html", has_text=WIDGET_TEXT)
            try:
                slider.first.wait_for(state="visible")
                text.first.wait_for(state="visible")
            except Exception as err:  # noqa: BLE001 - say what the page did instead
                pytest.fail(f"widgets not drawn: {err}\npage errors: {errors}\naborted requests: {aborted}")
            try:  # MathJax (served from the same cache) typesets the formula as SVG
                page.locator("mjx-container svg").first.wait_for(state="attached")
            except Exception as err:  # noqa: BLE001 - say what the page did instead
                pytest.fail(f"formula not typeset: {err}\npage errors: {errors}\naborted requests: {aborted}")
            page.wait_for_timeout(300)  # a second (duplicate) rendering would show up by now
            n_sliders, n_texts = slider.count(), text.count()
            readout = page.locator(".jupyter-widgets.widget-slider .widget-readout").first.inner_text()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "book_widgets.png"), full_page=True)
        finally:
            browser.close()

    assert n_sliders == 1 and n_texts == 1, f"widgets drawn {n_sliders} / {n_texts} times (expected once)"
    assert readout.strip() == "7"  # the embedded state was applied
    assert not [u for u in aborted if "widget" in u or "require" in u or "mathjax" in u.lower()], (
        f"JavaScript from the network: {aborted}")
    print(f"book widget test: drawn offline; browser part {time.monotonic() - t0:.1f} s")
