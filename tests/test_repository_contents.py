"""The repository holds only what this project wrote: no third-party code copied in.

Third-party code comes from package registries at install or build time (PyPI through
``pyproject.toml``; the book's JavaScript from the npm registry through ``book/_ext/npm_assets.py``).
This test lists the tracked files (``git ls-files``) and looks for what copied-in code leaves behind:
another project's licence header or notice, a minified bundle (very long lines), or file kinds the
project never writes (JavaScript, web fonts, source maps). The project's own ``LICENSE`` is the
only licence text.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Markers of another project's licence or copyright notice (assembled so this file does not match itself).
NOTICES = [re.compile(p, re.IGNORECASE) for p in (
    "@" + "license", "licensed under the " + "apache license", "permission is hereby " + "granted",
    "redistribution and use in " + "source and binary forms", "spdx-" + "license-identifier",
    "for license " + "information please see", "gnu general " + "public license", "mozilla public " + "license",
    r"copy" + r"right\s*(\(c\)|©|\d{4})",
)]
#: Extensions of files this project does not write (bundled web code, fonts, maps, archives).
FOREIGN_SUFFIXES = {".js", ".mjs", ".cjs", ".map", ".woff", ".woff2", ".ttf", ".eot", ".otf", ".tgz", ".whl", ".jar"}
TEXT_SUFFIXES = {".py", ".md", ".txt", ".yml", ".yaml", ".toml", ".cfg", ".ini", ".css", ".html", ".svg", ".json",
                 ".csv", ".ipynb", ".sh", ""}
MAX_LINE = 2000  # characters; a minified bundle has lines of 10^5-10^6


@pytest.fixture(scope="module")
def tracked() -> list[Path]:
    git = shutil.which("git")
    if git is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run([git, "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [ROOT / name for name in out.decode().split("\0") if name]


def _text(path: Path) -> str | None:
    if path.suffix.lower() not in TEXT_SUFFIXES or not path.is_file():
        return None
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return None


def test_no_foreign_file_kinds(tracked):
    foreign = [p.relative_to(ROOT).as_posix() for p in tracked
               if p.suffix.lower() in FOREIGN_SUFFIXES or ".min." in p.name]
    assert not foreign, f"tracked files of kinds this project does not write: {foreign}"


def test_no_other_projects_licence_or_notice(tracked):
    own = {ROOT / "LICENSE", Path(__file__).resolve()}
    found = []
    for path in tracked:
        text = None if path in own else _text(path)
        if text is None:
            continue
        for pattern in NOTICES:
            match = pattern.search(text)
            if match:
                found.append(f"{path.relative_to(ROOT)}: {match.group(0)!r}")
    assert not found, "licence or copyright notices of other projects:\n" + "\n".join(found)


def test_no_minified_bundles(tracked):
    long = []
    for path in tracked:
        text = _text(path)
        if text is None:
            continue
        width = max((len(line) for line in text.splitlines()), default=0)
        if width > MAX_LINE:
            long.append(f"{path.relative_to(ROOT)} ({width} characters on one line)")
    assert not long, f"minified-looking files: {long}"


def test_book_and_package_hold_no_third_party_code(tracked):
    """The places copied-in code used to sit (``book/_vendor``) or could (``book/_static``, the package)."""
    names = [p.relative_to(ROOT).as_posix() for p in tracked]
    assert not [n for n in names if n.startswith(("book/_vendor/", "book/_static/", "cradlekit/_vendor"))]
    assert (ROOT / "LICENSE").is_file() and "LICENSE" in names


def test_the_checks_catch_copied_code(tmp_path):
    """The markers and limits above flag what the old ``book/_vendor`` held."""
    header = "/** " + "@" + "license RequireJS 2.3.8 Copyright jQuery Foundation and other contributors. */"
    assert any(p.search(header) for p in NOTICES)
    assert any(p.search("Copy" + "right (c) 2014-2017, Jon Schlinkert.") for p in NOTICES)
    assert len("x" * 10**5) > MAX_LINE and Path("embed-amd.js").suffix in FOREIGN_SUFFIXES
