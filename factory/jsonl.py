"""Reading JSON Lines input the same way everywhere: rows numbered from 1 by line, blank lines
skipped, and a line that is not JSON reported by file and row."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from factory.errors import PersonaFileError


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise PersonaFileError(f"not valid JSON: {exc.msg}", path=path, row=number) from exc
