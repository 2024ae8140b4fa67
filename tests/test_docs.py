"""Citations in the code point at documentation in this repository, and every cited section exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIPPED_DIRS = {".git", ".venv", "build", "dist", "__pycache__"}
CITATION = re.compile(r"docs/([\w-]+\.md)#([\w-]+)")
# Documents a reader of this repository cannot open: the project's private notes and its issue tracker.
UNREADABLE = re.compile(r"REFERENCE\.md|issue #\d+")


def text_files(suffixes: tuple[str, ...]) -> list[Path]:
    return [p for p in sorted(ROOT.rglob("*")) if p.suffix in suffixes and not SKIPPED_DIRS.intersection(p.relative_to(ROOT).parts)
            and not any(part.endswith(".egg-info") for part in p.parts)]


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a document's headings: lower case, punctuation dropped, spaces as hyphens."""
    headings = re.findall(r"^#+\s+(.+?)\s*$", markdown, flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def test_github_anchors_follow_githubs_rule():
    assert github_anchors("# Title\n## Reference defects fixed\n### CLIP normalisation\n## Paper's numbers (%)\n") == {
        "title", "reference-defects-fixed", "clip-normalisation", "papers-numbers-"}


def test_every_cited_section_exists():
    cited = [(path, doc, anchor) for path in text_files((".py", ".md")) for doc, anchor in CITATION.findall(path.read_text())]
    assert any(doc == "reference.md" for _, doc, _ in cited)
    anchors = {doc: github_anchors((ROOT / "docs" / doc).read_text()) for doc in {doc for _, doc, _ in cited} if (ROOT / "docs" / doc).is_file()}
    missing = [f"{path.relative_to(ROOT)}: docs/{doc}#{anchor}" for path, doc, anchor in cited if anchor not in anchors.get(doc, set())]
    assert missing == []


def test_code_cites_no_document_outside_the_repository():
    this = Path(__file__).resolve()
    offenders = [f"{path.relative_to(ROOT)}:{number}" for path in text_files((".py",)) if path != this
                 for number, line in enumerate(path.read_text().splitlines(), 1) if UNREADABLE.search(line)]
    assert offenders == []


# Words that tell who measured something, when or on which occasion, instead of what the project is and does.
OCCASION = re.compile(r"\bsessions?\b|session's|\bso far\b|\btoday\b|\bwe\b|\bour\b|\bwas lent\b|\bnot measured yet\b|"
                      r"\bin one measurement\b|\bloaded machine\b|\bsince then\b|\bthis one included\b", re.IGNORECASE)


def test_the_readme_speaks_of_the_project_not_of_who_measured_when():
    readme = (ROOT / "README.md").read_text()
    assert [match.group(0) for match in OCCASION.finditer(readme)] == []
    assert OCCASION.search("a table from this session's runs") and OCCASION.search("we chose it")  # the rule bites


def test_the_readme_says_how_long_the_test_command_takes_on_2_cores():
    readme = (ROOT / "README.md").read_text()
    assert ".venv/bin/python -m pytest -q" in readme
    assert re.search(r"the whole suite: it takes \d+ to \d+ minutes on 2 CPU cores", readme)
