"""README.md and docs/: short README, every relative link resolves, every docs page linked, the test command.

Reads files only (no import of the package), so it runs in milliseconds.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = ("families.md", "data.md", "evaluation.md", "operations.md", "guarantees.md", "benchmarks.md")
TEST_COMMAND = 'python -m pytest -m "not slow" -q'
MAX_README_LINES = 220

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
_CODE_SPAN = re.compile(r"(`+).+?\1", re.S)
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _links(md: Path) -> list[str]:
    """Targets of the inline Markdown links of ``md``, outside code blocks and code spans."""
    text = _CODE_SPAN.sub("", _FENCE.sub("", md.read_text(encoding="utf-8")))
    return _LINK.findall(text)


def _markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines; move detail into docs/ (limit {MAX_README_LINES})"
    )


def test_every_relative_link_resolves() -> None:
    broken = []
    for md in _markdown_files():
        for target in _links(md):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http(s):, mailto:, ...
                continue
            path = target.split("#", 1)[0]
            if not path:  # an anchor within the same page
                continue
            if not (md.parent / path).exists():
                broken.append(f"{md.relative_to(REPO)}: {target}")
    assert not broken, "links to missing files:\n" + "\n".join(broken)


def test_every_docs_page_exists_and_is_linked_from_readme() -> None:
    linked = {
        (README.parent / t.split("#", 1)[0]).resolve() for t in _links(README) if not t.startswith(("http:", "https:"))
    }
    for page in PAGES:
        path = DOCS / page
        assert path.is_file(), f"docs/{page} is missing"
        assert path.resolve() in linked, f"README.md does not link docs/{page}"


def test_readme_holds_the_test_command_first() -> None:
    text = README.read_text(encoding="utf-8")
    assert TEST_COMMAND in text
    # CI takes the README's first `pytest ...` as the test command: it must be this one
    assert text.index("pytest") == text.index(TEST_COMMAND) + len("python -m ")
