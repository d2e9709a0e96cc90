"""The product's files stand alone: users get this repository, not the design notes, issue
tracker or shared folder it was written from, so nothing may send them there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHECKED = [
    "README.md",
    "BENCHMARKS.md",
    "SECURITY.md",
    "Makefile",
    "wadm.yaml",
    "wadm.minimal.yaml",
    "docs",
    "src",
    "examples",
    "bench",
]
# Spelled in pieces so that this file does not itself contain what it looks for.
_SHARED, _DESIGN = "shared", "DESIGN"
POINTERS = re.compile(
    rf"\.\./{_SHARED}|{_SHARED}/docs|{_DESIGN}\.md|\b{_DESIGN} §|§|\bissue [0-9]|issues? #[0-9]"
)
SUFFIXES = {".md", ".py", ".yaml", ".rs", ".toml", ".wit", ""}


def files() -> list[Path]:
    found: list[Path] = []
    for name in CHECKED:
        path = ROOT / name
        candidates = [path] if path.is_file() else sorted(path.rglob("*"))
        for candidate in candidates:
            relative = candidate.relative_to(ROOT).as_posix()
            if (
                candidate.is_file()
                and candidate.suffix in SUFFIXES
                and "/target/" not in f"/{relative}"
                and "egg-info" not in relative
                and "__pycache__" not in relative
                and "node_modules" not in relative
            ):
                found.append(candidate)
    return found


def test_no_pointers_outside_the_project() -> None:
    offending = []
    for path in files():
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if POINTERS.search(line):
                offending.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offending, "\n".join(offending)


def test_protocol_md_is_in_the_project_and_linked() -> None:
    assert (ROOT / "docs" / "PROTOCOL.md").is_file()
    sdk = (ROOT / "docs" / "SDK.md").read_text()
    assert "(PROTOCOL.md)" in sdk
    # Code comments name sections that exist.
    headings = set(
        re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\b", (ROOT / "docs/PROTOCOL.md").read_text(), re.M)
    )
    for path in (ROOT / "src").rglob("*.py"):
        for match in re.finditer(
            r"docs/PROTOCOL\.md,? (?:sections? )?(\d+(?:\.\d+)?)", path.read_text()
        ):
            assert match.group(1) in headings, f"{path.relative_to(ROOT)}: section {match.group(1)}"
