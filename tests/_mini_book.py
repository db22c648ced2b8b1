"""A one-page Jupyter Book with the real book's configuration, for tests of the build itself."""

from __future__ import annotations

import shutil
from pathlib import Path

BOOK = Path(__file__).resolve().parent.parent / "book"

#: Front matter of a MyST notebook page (the book's chapters use the same).
FRONTMATTER = """---
kernelspec:
  display_name: Python 3
  language: python
  name: python3
file_format: mystnb
---

"""


def write_mini_book(root: Path, body: str) -> Path:
    """``root`` as a book of one page ``page.md`` (``FRONTMATTER`` + ``body``), with the book's
    ``_config.yml``, its local Sphinx extensions (``_ext/``) and style sheet (``_styles/``); returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(BOOK / "_config.yml", root / "_config.yml")
    shutil.copytree(BOOK / "_ext", root / "_ext", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(BOOK / "_styles", root / "_styles")
    (root / "_toc.yml").write_text("format: jb-book\nroot: page\n")
    (root / "page.md").write_text(FRONTMATTER + body)
    return root
