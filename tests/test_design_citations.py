"""Docstrings and comments cite only what the repository holds: the paper (by equation, algorithm,
table or figure) and the book's design page (``book/design.md``), never a document that is not here
(they used to cite a "SPEC §N").

A citation of the design page names its section (``design page, "Metrics"``); each named section
must exist on the page.
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "cradlekit"
DESIGN = ROOT / "book" / "design.md"
CITED_SECTION = re.compile(r'design page, "([^"]+)"')


def _docs_and_comments(path: Path) -> list[tuple[int, str]]:
    """``(line, text)`` of every string literal and comment of a module (docstrings included)."""
    out = []
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline):
        if tok.type in (tokenize.STRING, tokenize.COMMENT):
            out.append((tok.start[0], tok.string))
    return out


def test_no_docstring_or_comment_cites_spec():
    found = [f"{path.relative_to(ROOT)}:{line}: {text.strip()[:80]}"
             for path in sorted(PACKAGE.rglob("*.py")) for line, text in _docs_and_comments(path)
             if re.search(r"\bSPEC\b", text)]  # fmt: skip
    assert not found, "citations of a document outside the repository:\n" + "\n".join(found)


def test_readme_book_and_configs_do_not_cite_spec():
    paths = [ROOT / "README.md", *sorted((ROOT / "book").glob("*.md")),
             *sorted((ROOT / "book" / "profiles").glob("*.yaml")), *sorted((ROOT / "configs").glob("*.yaml"))]
    found = [str(p.relative_to(ROOT)) for p in paths if re.search(r"\bSPEC\b", p.read_text(encoding="utf-8"))]
    assert not found


def test_cited_design_sections_exist():
    headings = set(re.findall(r"^## (.+)$", DESIGN.read_text(encoding="utf-8"), flags=re.MULTILINE))
    assert {"Data and quality control", "Splits and counterfactual references", "The model and its objectives",
            "Training", "Metrics"} <= headings  # fmt: skip
    cited = {}
    for path in PACKAGE.rglob("*.py"):
        for line, text in _docs_and_comments(path):
            for section in CITED_SECTION.findall(" ".join(text.split())):
                cited.setdefault(section, f"{path.relative_to(ROOT)}:{line}")
    assert cited, "no docstring cites the design page"
    missing = {s: where for s, where in cited.items() if s not in headings}
    assert not missing, f"cited sections not on book/design.md: {missing}"


def test_design_page_is_in_the_book():
    toc = (ROOT / "book" / "_toc.yml").read_text(encoding="utf-8")
    assert "file: design" in toc and "file: api" in toc
