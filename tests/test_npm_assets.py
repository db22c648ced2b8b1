"""The book's third-party JavaScript comes from the npm registry at build time (``book/_ext/npm_assets.py``):
pinned tarballs checked against their integrity, files against their SHA-256, served from a cache
outside the repository that later builds use offline.

These tests use a small package of their own, served by a ``file://`` "registry" in ``tmp_path``,
so they need no network; ``tests/test_book_widgets.py`` builds a book with the real pins.
"""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import tarfile
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parents[1] / "book"
sys.path.insert(0, str(BOOK / "_ext"))
import npm_assets  # noqa: E402 - the book's extension, from book/_ext
from npm_assets import AssetError, NpmPackage, ensure_assets  # noqa: E402

CONTENT = b"/* a small script */\nwindow.ok = true;\n"


def _tarball(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


@pytest.fixture
def registry(tmp_path):
    """A file:// registry with ``@demo/pkg@1.2.3``; returns ``(registry URL, package, tarball path)``."""
    data = _tarball({"package/dist/demo.js": CONTENT, "package/LICENSE": b"a licence\n"})
    path = tmp_path / "registry" / "@demo" / "pkg" / "-" / "pkg-1.2.3.tgz"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    package = NpmPackage("@demo/pkg", "1.2.3", _integrity(data),
                         {"package/dist/demo.js": ("demo/demo.js", hashlib.sha256(CONTENT).hexdigest())})
    return (tmp_path / "registry").as_uri(), package, path


def test_fetches_verifies_and_serves_the_pinned_files(registry, tmp_path):
    url, package, _ = registry
    static = ensure_assets(tmp_path / "cache", packages=(package,), registry=url)
    assert (static / "demo" / "demo.js").read_bytes() == CONTENT
    assert (tmp_path / "cache" / "tarballs" / "demo-pkg-1.2.3.tgz").is_file()
    assert static.parent == tmp_path / "cache"
    assert sorted(p.relative_to(static).as_posix() for p in static.rglob("*") if p.is_file()) == ["demo/demo.js"]


def test_later_builds_work_offline_from_the_cache(registry, tmp_path):
    url, package, _ = registry
    cache = tmp_path / "cache"
    static = ensure_assets(cache, packages=(package,), registry=url)
    offline = "http://127.0.0.1:9"  # nothing listens there
    assert ensure_assets(cache, packages=(package,), registry=offline) == static
    # an altered served file is taken again from the cached tarball, still without network
    (static / "demo" / "demo.js").write_text("tampered")
    ensure_assets(cache, packages=(package,), registry=offline)
    assert (static / "demo" / "demo.js").read_bytes() == CONTENT
    # without the tarball and without network: a clear error naming the URL and how to fill the cache
    (cache / "tarballs" / "demo-pkg-1.2.3.tgz").unlink()
    (static / "demo" / "demo.js").unlink()
    with pytest.raises(AssetError, match=r"npm pack @demo/pkg@1\.2\.3") as err:
        ensure_assets(cache, packages=(package,), registry=offline)
    assert "127.0.0.1:9/@demo/pkg/-/pkg-1.2.3.tgz" in str(err.value)


def test_a_download_that_fails_its_integrity_is_refused(registry, tmp_path):
    url, package, path = registry
    path.write_bytes(_tarball({"package/dist/demo.js": b"window.ok = 'someone else';\n"}))
    with pytest.raises(AssetError, match="does not match the pinned integrity"):
        ensure_assets(tmp_path / "cache", packages=(package,), registry=url)
    assert not (tmp_path / "cache" / "tarballs").exists() or not any((tmp_path / "cache" / "tarballs").iterdir())


def test_a_corrupt_cached_tarball_is_set_aside_and_fetched_again(registry, tmp_path):
    url, package, _ = registry
    cache = tmp_path / "cache"
    (cache / "tarballs").mkdir(parents=True)
    (cache / "tarballs" / "demo-pkg-1.2.3.tgz").write_bytes(b"not a tarball")
    static = ensure_assets(cache, packages=(package,), registry=url)
    assert (static / "demo" / "demo.js").read_bytes() == CONTENT
    assert (cache / "tarballs" / "demo-pkg-1.2.3.tgz.corrupt").read_bytes() == b"not a tarball"


def test_a_file_that_differs_from_its_pin_is_refused(registry, tmp_path):
    url, package, _ = registry
    wrong = NpmPackage(package.name, package.version, package.integrity,
                       {"package/dist/demo.js": ("demo/demo.js", "0" * 64)})
    with pytest.raises(AssetError, match="pinned 0000"):
        ensure_assets(tmp_path / "cache", packages=(wrong,), registry=url)
    missing = NpmPackage(package.name, package.version, package.integrity,
                         {"package/dist/other.js": ("demo/other.js", "0" * 64)})
    with pytest.raises(AssetError, match="has no file package/dist/other.js"):
        ensure_assets(tmp_path / "cache2", packages=(missing,), registry=url)


def test_cache_is_outside_the_repository_by_default(monkeypatch, tmp_path):
    monkeypatch.delenv("CRADLEKIT_NPM_CACHE", raising=False)
    monkeypatch.delenv("CRADLEKIT_CACHE", raising=False)
    assert npm_assets.cache_dir() == Path.home() / ".cache" / "cradlekit" / "npm"
    monkeypatch.setenv("CRADLEKIT_CACHE", str(tmp_path / "ck"))
    assert npm_assets.cache_dir() == tmp_path / "ck" / "npm"
    monkeypatch.setenv("CRADLEKIT_NPM_CACHE", str(tmp_path / "js"))
    assert npm_assets.cache_dir() == tmp_path / "js"


def test_the_real_pins_are_complete():
    """Every pinned package names an https registry tarball, a sha512 integrity and 64-hex file hashes;
    the files the book's configuration loads are among them."""
    targets = {}
    for package in npm_assets.PACKAGES:
        assert package.url().startswith("https://registry.npmjs.org/")
        assert package.integrity.startswith("sha512-") and len(package.integrity) == 95
        for target, digest in package.files.values():
            assert len(digest) == 64 and int(digest, 16) >= 0
            targets[target] = digest
    config = (BOOK / "_config.yml").read_text()
    for loaded in ("mathjax/tex-svg.js", "widgets/require.js", "widgets/embed-amd.js"):
        assert loaded in targets and loaded in config
    assert "npm_assets: _ext" in config
