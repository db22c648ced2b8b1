"""Third-party JavaScript of the built book, fetched from the npm registry at build time (a Sphinx extension).

The book's static pages need MathJax (to typeset the equations) and RequireJS with
``@jupyter-widgets/html-manager`` (to draw the embedded widget state). None of that code is in this
repository: this extension downloads the pinned npm tarballs listed in :data:`PACKAGES`, checks each
against the registry's ``dist.integrity`` (SHA-512) and each file taken from it against a pinned
SHA-256, and serves the files from a cache outside the repository.

Cache: ``$CRADLEKIT_NPM_CACHE``, else ``<cradlekit cache>/npm`` where the cradlekit cache is
``$CRADLEKIT_CACHE`` or ``~/.cache/cradlekit`` (the data loaders' cache)::

    <cache>/tarballs/<name>-<version>.tgz     the verified npm tarballs
    <cache>/static-<pins digest>/             the files served, under their _static/ paths
        mathjax/tex-svg.js, mathjax/LICENSE
        widgets/require.js, widgets/embed-amd.js, widgets/embed-amd.js.LICENSE.txt

Every build re-checks the served files (SHA-256) and uses them without the network; a missing or
altered file is taken again from its cached tarball (integrity re-checked), and only a missing
tarball is downloaded. So the first build needs ``registry.npmjs.org`` (or
``$CRADLEKIT_NPM_REGISTRY``); later builds work offline. Without network, fill the cache with
``npm pack <name>@<version>`` into ``<cache>/tarballs/`` (the file names are the ones above).

The folder is added to ``html_static_path`` (Sphinx copies it to ``_build/html/_static/``);
``_config.yml`` points ``mathjax_path`` and ``nb_ipywidgets_js`` at the files. It is deliberately not
``book/_static``: jupyter-book 1.x adds every ``.js`` file of the static folders to every page once a
``_static`` folder exists, which would load the widget manager twice.

Changing a version: update its entry in :data:`PACKAGES` (tarball integrity from ``npm view
<name>@<version> dist.integrity``, file hashes from ``sha256sum`` of the unpacked files), then run
``pytest tests/test_book_widgets.py tests/test_npm_assets.py``. For the widget manager pick the
version matching the installed ipywidgets
(``python -c "import ipywidgets._version as v; print(v.__html_manager_version__)"``).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PACKAGES", "NpmPackage", "AssetError", "cache_dir", "ensure_assets", "setup"]

REGISTRY = "https://registry.npmjs.org"
TIMEOUT_S = 120


@dataclass(frozen=True)
class NpmPackage:
    """One pinned npm package and the files the book serves from it."""

    name: str
    version: str
    #: the registry's ``dist.integrity`` of the tarball (``sha512-<base64>``)
    integrity: str
    #: path in the tarball -> (path under ``_static/``, SHA-256 of the file)
    files: dict[str, tuple[str, str]] = field(default_factory=dict)

    @property
    def tarball_name(self) -> str:
        """File name of the tarball in the cache (``@scope/name`` -> ``scope-name-<version>.tgz``)."""
        return f"{self.name.replace('@', '').replace('/', '-')}-{self.version}.tgz"

    def url(self, registry: str = REGISTRY) -> str:
        """Where ``registry`` serves the tarball of this version."""
        return f"{registry.rstrip('/')}/{self.name}/-/{self.name.split('/')[-1]}-{self.version}.tgz"


PACKAGES: tuple[NpmPackage, ...] = (
    # MathJax 3's self-contained SVG build: no web fonts (glyphs are SVG paths). Apache-2.0.
    NpmPackage(
        "mathjax", "3.2.2",
        "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
        {
            "package/es5/tex-svg.js": ("mathjax/tex-svg.js",
                                       "d4295dc33744836935c1399feece5159577b34c5c8ffb9f1c6324cd82e03a882"),
            "package/LICENSE": ("mathjax/LICENSE", "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"),
        },
    ),
    # AMD module loader that the widget manager's embed build needs on the page. MIT (notice in the file).
    NpmPackage(
        "requirejs", "2.3.8",
        "sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
        {"package/require.js": ("widgets/require.js",
                                "c1fc6b1d53af7522f78d664922abb32acac64ed0ecccb8f907f1e6fc7262563a")},
    ),
    # ipywidgets' HTML manager, 1.0.x for ipywidgets 8.1 (``__html_manager_version__ = '^1.0.1'``): the core
    # widgets (base, controls, output) are in embed-amd.js. BSD-3-Clause; the bundled libraries' notices
    # come with it (embed.js.LICENSE.txt).
    NpmPackage(
        "@jupyter-widgets/html-manager", "1.0.15",
        "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
        {
            "package/dist/embed-amd.js": ("widgets/embed-amd.js",
                                          "ca87dff57c70ffb2658794fde0eab0e27e5f5472a1f5df7ab2b08e1039fc4b72"),
            "package/dist/embed.js.LICENSE.txt": ("widgets/embed-amd.js.LICENSE.txt",
                                                  "aed2008aae8123157c4ae564883166b1af7bab928d504a1fa7de1f67aec11268"),
        },
    ),
)


class AssetError(RuntimeError):
    """A pinned asset could not be fetched or failed its checksum."""


def cache_dir() -> Path:
    """``$CRADLEKIT_NPM_CACHE``, else ``npm/`` in ``$CRADLEKIT_CACHE`` or ``~/.cache/cradlekit``."""
    own = os.environ.get("CRADLEKIT_NPM_CACHE")
    if own:
        return Path(own).expanduser()
    base = os.environ.get("CRADLEKIT_CACHE")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "cradlekit") / "npm"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _integrity_ok(data: bytes, integrity: str) -> bool:
    algorithm, _, expected = integrity.partition("-")
    if algorithm not in ("sha512", "sha384", "sha256"):
        raise AssetError(f"unsupported integrity algorithm {algorithm!r}")
    return base64.b64encode(hashlib.new(algorithm, data).digest()).decode() == expected


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # served files: readable like any other file of the built book
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _static_dir(cache: Path, packages: tuple[NpmPackage, ...]) -> Path:
    pins = json.dumps([[p.name, p.version, p.integrity, sorted(p.files.items())] for p in packages])
    return cache / f"static-{_sha256(pins.encode())[:12]}"


def _tarball(package: NpmPackage, cache: Path, registry: str) -> bytes:
    """The package's tarball, from the cache or the registry; its integrity checked either way."""
    path = cache / "tarballs" / package.tarball_name
    if path.is_file():
        data = path.read_bytes()
        if _integrity_ok(data, package.integrity):
            return data
        path.replace(path.with_name(path.name + ".corrupt"))  # kept for a look, never served
    url = package.url(registry)
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:  # noqa: S310 - a pinned https URL
            data = response.read()
    except (urllib.error.URLError, OSError) as err:
        raise AssetError(
            f"cannot download {package.name}@{package.version} from {url} ({err}) and {path} is not in the "
            f"cache. With network once, rebuild; offline, put the tarball there: "
            f"(cd {path.parent} && npm pack {package.name}@{package.version})"
        ) from err
    if not _integrity_ok(data, package.integrity):
        raise AssetError(
            f"{url}: the download does not match the pinned integrity {package.integrity} "
            "(a different or damaged file); nothing was written"
        )
    _write_atomic(path, data)
    return data


def ensure_assets(
    cache: Path | None = None, *, packages: tuple[NpmPackage, ...] = PACKAGES, registry: str | None = None
) -> Path:
    """Make sure every pinned file is in the cache's static folder, verified; return that folder.

    Files already there with the pinned SHA-256 are used as they are (no network). Others are
    extracted from the package's tarball (cached, integrity-checked; downloaded when missing).

    Raises
    ------
    AssetError
        A tarball can neither be found in the cache nor downloaded, or fails a checksum.
    """
    cache = cache_dir() if cache is None else Path(cache)
    registry = registry or os.environ.get("CRADLEKIT_NPM_REGISTRY") or REGISTRY
    static = _static_dir(cache, packages)
    for package in packages:
        stale = [(member, target, digest) for member, (target, digest) in package.files.items()
                 if not ((static / target).is_file() and _sha256((static / target).read_bytes()) == digest)]
        if not stale:
            continue
        with tarfile.open(fileobj=io.BytesIO(_tarball(package, cache, registry)), mode="r:gz") as archive:
            for member, target, digest in stale:
                try:
                    data = archive.extractfile(member).read()  # type: ignore[union-attr]
                except (KeyError, AttributeError) as err:
                    raise AssetError(f"{package.name}@{package.version} has no file {member}") from err
                if _sha256(data) != digest:
                    raise AssetError(
                        f"{package.name}@{package.version}: {member} has SHA-256 {_sha256(data)}, pinned {digest}"
                    )
                _write_atomic(static / target, data)
    return static


def _add_static_path(app, config) -> None:
    from sphinx.errors import ExtensionError
    from sphinx.util import logging

    try:
        static = ensure_assets()
    except AssetError as err:
        raise ExtensionError(f"npm_assets: {err}") from err
    config.html_static_path = [*config.html_static_path, str(static)]
    logging.getLogger(__name__).info("npm_assets: serving MathJax and the widget manager from the npm cache")


def setup(app):
    """Sphinx entry point (``sphinx: local_extensions: {npm_assets: _ext}`` in ``_config.yml``)."""
    app.connect("config-inited", _add_static_path)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
