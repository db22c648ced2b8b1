"""Checksummed fetching, tested against a loopback HTTP server started inside the test."""

from __future__ import annotations

import functools
import hashlib
import http.server
import os
import socket
import threading
from types import SimpleNamespace

import pytest

from cradlekit.data import download as download_mod
from cradlekit.data.download import fetch, local_search_dirs
from cradlekit.data.manifest import DatasetEntry
from cradlekit.errors import ChecksumError, DatasetNotAvailableError

CONTENT = b"cradlekit test payload\n" * 100
SHA = hashlib.sha256(CONTENT).hexdigest()


class _CountingHandler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server naming)
        self.server.hits[self.path] = self.server.hits.get(self.path, 0) + 1
        super().do_GET()

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture
def server(tmp_path):
    """Serve ``tmp_path/srv`` on 127.0.0.1 (random port); ``hits`` counts GETs per path."""
    root = tmp_path / "srv"
    root.mkdir()
    (root / "toy.h5ad").write_bytes(CONTENT)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_CountingHandler, directory=str(root)))
    httpd.hits = {}
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(root=root, url=f"http://127.0.0.1:{httpd.server_address[1]}/toy.h5ad", hits=httpd.hits)
    finally:
        httpd.shutdown()
        httpd.server_close()


def _entry(url=None, sha256=SHA, **kw) -> DatasetEntry:
    return DatasetEntry(
        name="toy", description="toy", filename="toy.h5ad", format="h5ad", citation="-", license="-",
        url=url, sha256=sha256, **kw,
    )


def test_download_with_correct_hash_lands_in_cache(server, isolated_data_env):
    path = fetch(_entry(server.url), cache_dir=isolated_data_env)
    assert path == isolated_data_env / "toy.h5ad" and path.read_bytes() == CONTENT
    assert server.hits == {"/toy.h5ad": 1}
    assert fetch(_entry(server.url), cache_dir=isolated_data_env) == path
    assert server.hits == {"/toy.h5ad": 1}  # served from the cache


def test_corrupt_cached_file_is_refetched(server, isolated_data_env, cradlekit_log):
    path = fetch(_entry(server.url), cache_dir=isolated_data_env)
    path.write_bytes(CONTENT[:-5] + b"XXXXX")  # same size, different bytes
    again = fetch(_entry(server.url), cache_dir=isolated_data_env)
    assert again.read_bytes() == CONTENT
    assert server.hits == {"/toy.h5ad": 2}
    moved = list((isolated_data_env / ".moved-aside").iterdir())  # moved aside, not deleted
    assert len(moved) == 1 and moved[0].read_bytes() == CONTENT[:-5] + b"XXXXX"
    warnings = [r.getMessage() for r in cradlekit_log.records if r.levelname == "WARNING"]
    assert any("corrupt" in w and str(moved[0]) in w for w in warnings)


def test_size_mismatch_is_corruption(server, isolated_data_env):
    path = fetch(_entry(server.url, size_bytes=len(CONTENT)), cache_dir=isolated_data_env)
    path.write_bytes(b"truncated")
    fetch(_entry(server.url, size_bytes=len(CONTENT)), cache_dir=isolated_data_env)
    assert server.hits["/toy.h5ad"] == 2


def test_wrong_hash_download_raises_and_is_kept_aside(server, isolated_data_env):
    with pytest.raises(ChecksumError, match="does not match.*moved to") as err:
        fetch(_entry(server.url, sha256="0" * 64), cache_dir=isolated_data_env)
    assert not (isolated_data_env / "toy.h5ad").exists()  # never used as the dataset
    moved = isolated_data_env / ".moved-aside" / f"toy.h5ad.sha256-{SHA[:33]}"
    assert moved.read_bytes() == CONTENT and str(moved) in str(err.value)


def test_md5_only_entry_is_checked(server, isolated_data_env):
    md5 = hashlib.md5(CONTENT).hexdigest()
    assert fetch(_entry(server.url, sha256=None, md5=md5), cache_dir=isolated_data_env).read_bytes() == CONTENT
    with pytest.raises(ChecksumError):
        fetch(_entry(server.url, sha256=None, md5="f" * 32), cache_dir=isolated_data_env / "other")


def test_explicit_corrupt_local_file_raises_with_both_hashes(tmp_path, isolated_data_env):
    bad = tmp_path / "mine.h5ad"
    bad.write_bytes(b"not the data")
    with pytest.raises(ChecksumError) as err:
        fetch(_entry(url=None), path=bad, cache_dir=isolated_data_env)
    msg = str(err.value)
    assert SHA in msg and hashlib.sha256(b"not the data").hexdigest() in msg and str(bad) in msg
    assert fetch(_entry(url=None), path=bad, verify=False, cache_dir=isolated_data_env) == bad
    with pytest.raises(FileNotFoundError):
        fetch(_entry(url=None), path=tmp_path / "absent.h5ad", cache_dir=isolated_data_env)


def test_local_copy_is_preferred_and_a_corrupt_one_skipped(server, tmp_path, isolated_data_env, cradlekit_log):
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir(), bad.mkdir()
    (good / "toy.h5ad").write_bytes(CONTENT)
    (bad / "toy.h5ad").write_bytes(b"junk")
    assert fetch(_entry(server.url), local_dirs=[bad, good], cache_dir=isolated_data_env) == good / "toy.h5ad"
    assert server.hits == {}
    assert any("ignoring local copy" in r.getMessage() for r in cradlekit_log.records)
    # only the corrupt copy: fall through to the download
    assert fetch(_entry(server.url), local_dirs=[bad], cache_dir=isolated_data_env).parent == isolated_data_env
    assert server.hits == {"/toy.h5ad": 1}


def test_data_dirs_env_is_pathsep_separated(tmp_path, monkeypatch, isolated_data_env):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (b / "toy.h5ad").write_bytes(CONTENT)
    monkeypatch.setenv("CRADLEKIT_DATA_DIRS", f"{a}{os.pathsep}{b}")
    assert local_search_dirs(_entry())[:2] == [a, b]
    assert fetch(_entry(url=None), cache_dir=isolated_data_env) == b / "toy.h5ad"


def _h5ad_bytes(tmp_path, n: int = 5) -> bytes:
    import anndata as ad
    import numpy as np

    path = tmp_path / f"real{n}.h5ad"
    ad.AnnData(np.arange(n * 3, dtype=np.float32).reshape(n, 3)).write_h5ad(path)
    return path.read_bytes()


def test_trust_on_first_use_sidecar(server, isolated_data_env, tmp_path):
    real = _h5ad_bytes(tmp_path)
    (server.root / "toy.h5ad").write_bytes(real)
    entry = _entry(server.url, sha256=None)
    path = fetch(entry, cache_dir=isolated_data_env)
    sidecar = isolated_data_env / "toy.h5ad.sha256"
    assert sidecar.read_text().split() == [hashlib.sha256(real).hexdigest(), "toy.h5ad"]
    assert fetch(entry, cache_dir=isolated_data_env) == path and server.hits == {"/toy.h5ad": 1}
    # a corrupt cached copy is checked against the first-use record and downloaded again
    path.write_bytes(b"damaged")
    assert fetch(entry, cache_dir=isolated_data_env).read_bytes() == real
    assert server.hits == {"/toy.h5ad": 2}
    # upstream changed: the new download no longer matches what was trusted first
    (server.root / "toy.h5ad").write_bytes(_h5ad_bytes(tmp_path, 6))
    path.unlink()
    with pytest.raises(ChecksumError, match="first-use record"):
        fetch(entry, cache_dir=isolated_data_env)


def test_truncated_first_download_is_not_trusted(server, isolated_data_env, tmp_path):
    real = _h5ad_bytes(tmp_path)
    (server.root / "toy.h5ad").write_bytes(real[: len(real) // 2])  # an interrupted transfer
    entry = _entry(server.url, sha256=None)
    with pytest.raises(DatasetNotAvailableError, match="does not open as an h5ad.*no checksum was recorded") as err:
        fetch(entry, cache_dir=isolated_data_env)
    moved = isolated_data_env / ".moved-aside" / "toy.h5ad.unreadable"
    assert str(moved) in str(err.value) and moved.read_bytes() == real[: len(real) // 2]
    assert not (isolated_data_env / "toy.h5ad.sha256").exists()
    (server.root / "toy.h5ad").write_bytes(real)  # the real file is not blocked by a wrong record
    assert fetch(entry, cache_dir=isolated_data_env).read_bytes() == real
    assert (isolated_data_env / "toy.h5ad.sha256").read_text().split()[0] == hashlib.sha256(real).hexdigest()
    # a truncated file already in the cache without a record is moved aside too, not trusted
    (isolated_data_env / "toy.h5ad.sha256").unlink()
    (isolated_data_env / "toy.h5ad").write_bytes(real[:100])
    assert fetch(entry, cache_dir=isolated_data_env).read_bytes() == real


def test_corrupt_cache_offline_keeps_the_file_and_says_where(isolated_data_env):
    cache = isolated_data_env
    cache.mkdir(parents=True)
    (cache / "toy.h5ad").write_bytes(CONTENT)
    entry = _entry(_closed_port_url(), sha256="0" * 64)  # e.g. a wrong third-party checksum
    for _ in range(2):  # every call: nothing lost
        with pytest.raises(DatasetNotAvailableError) as err:
            fetch(entry, cache_dir=cache, timeout=5)
        moved = cache / ".moved-aside" / f"toy.h5ad.sha256-{SHA[:33]}"
        assert moved.read_bytes() == CONTENT and str(moved) in str(err.value) and "verify=False" in str(err.value)
    assert fetch(entry, path=moved, verify=False, cache_dir=cache) == moved  # the way on that the message gives


def test_verified_file_is_not_rehashed(server, isolated_data_env, monkeypatch):
    fetch(_entry(server.url), cache_dir=isolated_data_env)
    calls = []
    real = download_mod.file_digest
    monkeypatch.setattr(download_mod, "file_digest", lambda *a, **k: calls.append(a) or real(*a, **k))
    fetch(_entry(server.url), cache_dir=isolated_data_env)
    assert calls == []  # hashed once in this process, the file unchanged since
    (isolated_data_env / "toy.h5ad").write_bytes(CONTENT)  # rewritten: new mtime, must be re-hashed
    fetch(_entry(server.url), cache_dir=isolated_data_env)
    assert len(calls) == 1


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/toy.h5ad"


def test_offline_error_says_where_to_put_the_file(isolated_data_env, tmp_path):
    with pytest.raises(DatasetNotAvailableError) as err:
        fetch(_entry(_closed_port_url()), cache_dir=isolated_data_env, local_dirs=[tmp_path / "here"], timeout=5)
    msg = str(err.value)
    assert "toy.h5ad" in msg and "CRADLEKIT_DATA_DIRS" in msg and str(isolated_data_env) in msg
    assert str(tmp_path / "here") in msg and SHA in msg
    assert isinstance(err.value, FileNotFoundError)


def test_local_only_entry_without_copy(isolated_data_env):
    with pytest.raises(DatasetNotAvailableError, match="local-only"):
        fetch(_entry(url=None), cache_dir=isolated_data_env)


def test_download_false_refuses_network(server, isolated_data_env):
    with pytest.raises(DatasetNotAvailableError, match="download=False"):
        fetch(_entry(server.url), cache_dir=isolated_data_env, download=False)
    assert server.hits == {}
