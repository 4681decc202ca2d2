"""Rewrite the column table in README.md from pixels.schema (run after changing the schema)."""

from __future__ import annotations

import re
from pathlib import Path

from pixels.schema import markdown_table

readme = Path(__file__).resolve().parent.parent / "README.md"
text = readme.read_text()
pattern = re.compile(r"\| column \| type \| meaning \|\n(?:\|.*\|\n)+")
new, n = pattern.subn(markdown_table() + "\n", text)
if n != 1:
    raise SystemExit("README.md: column table not found")
readme.write_text(new)
print("README.md column table updated")
