"""Every reference to the design documents points to something that exists in docs/.

Forms recognised in app/, scripts/, tests/, examples/, README.md and docs/:

* `DESIGN §n` — section `## n.` of docs/DESIGN.md;
* `DESIGN §n.m` (and `§n.m-k`) — the m-th (to k-th) numbered item of that section;
* `architecture.md §n`, `security.md §n` (any `<name>.md §n`) — section `## n.` of docs/<name>.md;
* `docs/<name>.md` — the file exists.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SCANNED = ["app", "scripts", "tests", "examples"]
SUFFIXES = {".py", ".md", ".sh", ".js", ".html", ".graphql", ".toml", ""}

DESIGN_REF = re.compile(r"\bDESIGN(?:\.md)?\)?\s*§\s*(\d+)(?:\.(\d+)(?:-(\d+))?)?")
DOC_REF = re.compile(r"\b([a-z][\w-]*)\.md\)?\s*§\s*(\d+)")
DOC_PATH = re.compile(r"\bdocs/([\w-]+\.md)")


def sources() -> list[Path]:
    files = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
    for folder in SCANNED:
        for path in sorted((ROOT / folder).rglob("*")):
            if (
                path.is_file()
                and path.suffix in SUFFIXES
                and "node_modules" not in path.parts
                and "static" not in path.parts
                and path.resolve() != Path(__file__).resolve()
            ):
                files.append(path)
    return files


def sections(document: str) -> dict[int, str]:
    """`## n. Title` sections of a markdown document: number → body."""
    found: dict[int, str] = {}
    parts = re.split(r"^## (\d+)\.", document, flags=re.MULTILINE)
    for number, body in zip(parts[1::2], parts[2::2], strict=True):
        found[int(number)] = body.split("\n## ", 1)[0]
    return found


def numbered_items(body: str) -> set[int]:
    return {int(n) for n in re.findall(r"^(\d+)\. ", body, flags=re.MULTILINE)}


def broken_references(texts: list[tuple[str, str]]) -> tuple[list[str], int]:
    """Problems with the references in (where, text) pairs, and how many references."""
    design = sections((DOCS / "DESIGN.md").read_text())
    problems: list[str] = []
    count = 0
    for where, text in texts:
        for match in DESIGN_REF.finditer(text):
            count += 1
            section = int(match.group(1))
            if section not in design:
                problems.append(f"{where}: {match.group(0)!r}: DESIGN.md has no section {section}")
                continue
            if match.group(2):
                first = int(match.group(2))
                last = int(match.group(3) or first)
                missing = set(range(first, last + 1)) - numbered_items(design[section])
                if missing:
                    problems.append(
                        f"{where}: {match.group(0)!r}: DESIGN.md §{section} has no item "
                        f"{sorted(missing)}"
                    )
        for match in DOC_REF.finditer(text):
            name, section = match.group(1), int(match.group(2))
            if name.upper() == "DESIGN":
                continue
            count += 1
            doc = DOCS / f"{name}.md"
            if not doc.exists():
                problems.append(f"{where}: {match.group(0)!r}: no docs/{name}.md")
            elif section not in sections(doc.read_text()):
                problems.append(f"{where}: {match.group(0)!r}: docs/{name}.md has no §{section}")
        for match in DOC_PATH.finditer(text):
            count += 1
            if not (DOCS / match.group(1)).exists():
                problems.append(f"{where}: {match.group(0)!r} does not exist")
    return problems, count


def test_every_design_reference_points_to_an_existing_section() -> None:
    texts = [(str(p.relative_to(ROOT)), p.read_text(errors="replace")) for p in sources()]
    problems, count = broken_references(texts)
    assert problems == []
    assert count >= 30  # the scan does find the code's references


def test_a_reference_to_a_missing_section_is_caught() -> None:
    text = (
        '"""See DESIGN §4, DESIGN §1.11, DESIGN §1.6-7 and docs/architecture.md §4."""\n'
        '"""Broken: DESIGN §12, DESIGN §1.40, architecture.md §42, docs/nowhere.md."""\n'
    )
    problems, count = broken_references([("x.py", text)])
    assert count == 9
    assert [p.split(": ", 1)[1] for p in problems] == [
        "'DESIGN §12': DESIGN.md has no section 12",
        "'DESIGN §1.40': DESIGN.md §1 has no item [40]",
        "'architecture.md §42': docs/architecture.md has no §42",
        "'docs/nowhere.md' does not exist",
    ]


def test_the_documents_cover_what_the_code_relies_on() -> None:
    """The design decisions the code relies on are written down in docs/."""
    design = sections((DOCS / "DESIGN.md").read_text())
    security = (DOCS / "security.md").read_text()
    architecture = (DOCS / "architecture.md").read_text()
    assert "order code" in design[2].lower() or "check symbol" in design[2].lower()
    for topic in ("## 1. The order code", "## 2. The access policy", "## 3. Budgets"):
        assert topic in security
    for topic in ("## 4. Tokens", "## 5. The error model", "## 6. Logs"):
        assert topic in security
    for topic in ("## 4. Payments", "## 5. Checkout", "## 6. Emails: the transactional outbox"):
        assert topic in architecture
