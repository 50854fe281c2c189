"""Reading text input the same way everywhere: JSON Lines rows numbered from 1 by line, blank
lines skipped; a line that is not JSON, or a byte that is not UTF-8, reported by file, row and
field. Files are decoded with ``surrogateescape`` so that one bad byte is found where it is
(and named) instead of failing the whole read with a traceback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from factory.errors import PersonaFileError


def undecodable(value: Any, field: str = "") -> tuple[str, str] | None:
    """(field, the bad byte) of the first text in ``value`` holding a byte that was not UTF-8."""
    if isinstance(value, str):
        for char in value:
            if "\udc80" <= char <= "\udcff":
                return field, f"0x{ord(char) - 0xDC00:02x}"
        return None
    if isinstance(value, dict):
        items = ((f"{field}.{key}" if field else str(key), inner) for key, inner in value.items())
    elif isinstance(value, list):
        items = ((f"{field}[{index}]", inner) for index, inner in enumerate(value))
    else:
        return None
    for where, inner in items:
        found = undecodable(inner, where)
        if found:
            return found
    return None


def check_utf8(value: Any, *, path: Path, row: int, field: str | None = None) -> None:
    found = undecodable(value, field or "")
    if found:
        where, byte = found
        raise PersonaFileError(
            f"not UTF-8 text (the byte {byte}); save the file as UTF-8", path=path, row=row, field=where or None
        )


def read_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with path.open(encoding="utf-8", errors="surrogateescape") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                check_utf8(line, path=path, row=number)
                raise PersonaFileError(f"not valid JSON: {exc.msg}", path=path, row=number) from exc
            check_utf8(value, path=path, row=number)
            yield number, value
