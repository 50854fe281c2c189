"""Statement personas and conversations in the Synthetic-Persona-Chat format.

CSV: columns ``user 1 personas`` and ``user 2 personas`` (newline-separated statements) and,
optionally, ``Best Generated Conversation`` (lines ``User 1: ...`` / ``User 2: ...``).
JSONL: one object per line with ``User 1 Personas`` and ``User 2 Personas`` (lists of strings) and,
optionally, ``Conversation`` (list of lines). Column names are matched case-insensitively.

Rows are numbered from 1, not counting the CSV header; for JSONL the row is the line number.
"""

from __future__ import annotations

import csv
import hashlib
import random
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.errors import PersonaFileError
from factory.jsonl import check_utf8, read_jsonl
from factory.personas.source import Made, SourceContext
from factory.recipes.personas import StatementsSource
from factory.records import PersonaProfile

USER_COLUMNS = ("user 1 personas", "user 2 personas")
# Every statement goes into every prompt of its speaker: a runaway field (a pasted document, a
# broken export) would be sent thousands of times. SPC's statements are under 150 characters.
MAX_STATEMENT_CHARS = 500
MAX_PROFILE_CHARS = 4000
CONVERSATION_COLUMNS = ("best generated conversation", "conversation")
_SPEAKER_LINE = re.compile(r"^\s*User\s*([12])\s*:\s*(.*)$", re.I)


@dataclass(frozen=True)
class SPCRow:
    row: int
    personas: tuple[tuple[str, ...], tuple[str, ...]]
    conversation: tuple[tuple[int, str], ...]  # (speaker index 0/1, text)

    @property
    def id(self) -> str:
        return f"spc-r{self.row}"


def _split_statements(value: Any, *, path: Path, row: int, field: str) -> tuple[str, ...]:
    if isinstance(value, str):
        items = value.splitlines()
    elif isinstance(value, list):
        wrong = next((n for n, item in enumerate(value, start=1) if not isinstance(item, str)), None)
        if wrong is not None:
            raise PersonaFileError(
                f"statement {wrong} of the list is not text: {value[wrong - 1]!r}",
                path=path,
                row=row,
                field=field,
            )
        items = value
    else:
        raise PersonaFileError(
            f"expected newline-separated text or a list of strings, got {type(value).__name__}",
            path=path,
            row=row,
            field=field,
        )
    statements = tuple(item.strip() for item in items if item.strip())
    if not statements:
        raise PersonaFileError("no persona statements", path=path, row=row, field=field)
    longest = max(statements, key=len)
    if len(longest) > MAX_STATEMENT_CHARS:
        raise PersonaFileError(
            f"a statement of {len(longest):,} characters (at most {MAX_STATEMENT_CHARS}: it is sent in every prompt)",
            path=path,
            row=row,
            field=field,
        )
    if sum(map(len, statements)) > MAX_PROFILE_CHARS:
        raise PersonaFileError(
            f"a profile of {sum(map(len, statements)):,} characters (at most {MAX_PROFILE_CHARS})",
            path=path,
            row=row,
            field=field,
        )
    return statements


def _parse_conversation(value: Any, *, path: Path, row: int, field: str) -> tuple[tuple[int, str], ...]:
    if value in (None, ""):
        return ()
    lines = value.splitlines() if isinstance(value, str) else value
    if not isinstance(lines, list):
        raise PersonaFileError("expected conversation lines", path=path, row=row, field=field)
    turns: list[tuple[int, str]] = []
    for number, line in enumerate(lines, start=1):
        if not isinstance(line, str):
            raise PersonaFileError(
                f"conversation line {number} is not text: {line!r}",
                path=path, row=row, field=field,
            )  # fmt: skip
        match = _SPEAKER_LINE.match(line)
        if match:
            turns.append((int(match.group(1)) - 1, match.group(2).strip()))
        elif line.strip() and turns:
            speaker, text = turns[-1]
            turns[-1] = (speaker, f"{text} {line.strip()}")
    return tuple(turns)


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(encoding="utf-8", errors="surrogateescape", newline="") as handle:
            reader = csv.DictReader(handle)
            check_utf8(reader.fieldnames or [], path=path, row=0, field="header")
            header = [name.strip().lower() for name in reader.fieldnames or []]
            for column in USER_COLUMNS:
                if column not in header:
                    raise PersonaFileError(
                        f"missing column; the file has {header or 'no header'}", path=path, field=column
                    )
            # csv refuses fields over 128 KiB with an error that names no row; read them, then
            # refuse them by name (MAX_STATEMENT_CHARS)
            csv.field_size_limit(max(csv.field_size_limit(), 64 * 1024 * 1024))
            for number, record in enumerate(reader, start=1):
                lowered = {(key or "").strip().lower(): value for key, value in record.items()}
                check_utf8(lowered, path=path, row=number)
                yield number, lowered
    elif suffix in (".jsonl", ".json"):
        for number, record in read_jsonl(path):
            if not isinstance(record, dict):
                raise PersonaFileError("each line must be a JSON object", path=path, row=number)
            lowered = {key.strip().lower(): value for key, value in record.items()}
            for column in USER_COLUMNS:
                if column not in lowered:
                    raise PersonaFileError("missing field", path=path, row=number, field=column)
            yield number, lowered
    else:
        raise PersonaFileError("unsupported file type; use .csv or .jsonl", path=path)


def load_spc_rows(path: Path) -> list[SPCRow]:
    if not path.is_file():
        raise PersonaFileError("file not found", path=path)
    rows = []
    for number, record in _rows(path):
        first, second = (
            _split_statements(record.get(column), path=path, row=number, field=column) for column in USER_COLUMNS
        )
        personas = (first, second)
        conversation_column = next((c for c in CONVERSATION_COLUMNS if c in record), None)
        conversation = (
            _parse_conversation(record[conversation_column], path=path, row=number, field=conversation_column)
            if conversation_column
            else ()
        )
        rows.append(SPCRow(row=number, personas=personas, conversation=conversation))
    if not rows:
        raise PersonaFileError("no rows", path=path)
    return rows


def statement_personas(path: Path, count: int | None, rng: random.Random) -> list[PersonaProfile]:
    """Every distinct user profile of the file (each row holds two), or a seeded sample of them."""
    seen: dict[tuple[str, ...], PersonaProfile] = {}
    for row in load_spc_rows(path):
        for user, statements in enumerate(row.personas, start=1):
            if statements in seen:
                continue
            digest = hashlib.sha256("\n".join(statements).encode()).hexdigest()[:10]
            seen[statements] = PersonaProfile(
                id=f"statements-{digest}",
                kind="statements",
                statements=list(statements),
                description=" ".join(statements),
                source=f"{path.name} row {row.row} user {user}",
            )
    personas = list(seen.values())
    if count is not None and count < len(personas):
        personas = rng.sample(personas, count)
    return personas


class StatementFile:
    """``source: statements``: the user profiles of a Synthetic-Persona-Chat style file."""

    def generative(self, settings: Any) -> bool:
        return False

    def attribution(self, settings: StatementsSource) -> str | None:
        return "synthetic_persona_chat" if "synthetic_persona_chat" in settings.path else None

    def prepare(self, settings: StatementsSource, resolve_path: Callable[[str], Path]) -> None:
        load_spc_rows(resolve_path(settings.path))

    def needs_embeddings(self, settings: StatementsSource, prepared: None) -> bool:
        return False

    def make(self, settings: StatementsSource, prepared: None, context: SourceContext) -> Made:
        return Made(statement_personas(context.resolve_path(settings.path), settings.count, context.rng))
