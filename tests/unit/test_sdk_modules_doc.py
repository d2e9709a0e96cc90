"""docs/SDK.md's module table names every SDK module, and only modules that exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SDK = ROOT / "src" / "wasmcloud_provider_sdk"


def documented_modules() -> set[str]:
    text = (ROOT / "docs" / "SDK.md").read_text(encoding="utf-8")
    table = text.split("## Modules", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in table.splitlines():
        if line.startswith("| `"):
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`(\w+)`", first_cell))
    return names


def test_every_sdk_module_is_in_the_table_and_nothing_else() -> None:
    modules = {path.stem for path in SDK.glob("*.py") if path.stem != "__init__"}
    assert documented_modules() == modules
