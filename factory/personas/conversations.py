"""Real chats as the implicit-profile source reads them: JSONL of conversations (a list of
``{role, content}`` per line, or an object holding one), a folder of such files, or a Hub dataset.
A system message is kept apart as the reference profile, never shown to the extractor."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.errors import PersonaFileError
from factory.jsonl import read_jsonl
from factory.recipes.personas import ImplicitSource

ROLES = ("user", "assistant")


@dataclass(frozen=True)
class Conversation:
    id: str
    source: str  # file and line, or repo and row
    turns: tuple[tuple[str, str], ...]  # (role, content), system messages removed
    reference: str | None  # the system message, when there is one

    @property
    def has_user_turn(self) -> bool:
        return any(role == "user" for role, _ in self.turns)


def _messages_of(value: Any, messages_field: str) -> Any:
    if isinstance(value, dict):
        for key in (messages_field, "messages", "conversation", "conversations"):
            if key in value:
                return value[key]
    return value


def parse_conversation(
    value: Any, *, path: str, row: int, messages_field: str, label: str | None = None
) -> Conversation:
    """One conversation; errors name ``path``, while the profile's source says ``label`` (the file
    name, so that published data carries no machine path)."""
    messages = _messages_of(value, messages_field)
    if not isinstance(messages, list) or not messages:
        raise PersonaFileError(
            f"expected a non-empty list of {{role, content}} messages (or an object with `{messages_field}`)",
            path=path,
            row=row,
            field=messages_field,
        )
    turns: list[tuple[str, str]] = []
    reference = None
    for index, message in enumerate(messages):
        where = f"{messages_field}[{index}]"
        if not isinstance(message, dict):
            raise PersonaFileError("a message must be an object with role and content", path=path, row=row, field=where)
        role, content = message.get("role"), message.get("content")
        if role not in (*ROLES, "system"):
            raise PersonaFileError(
                f"role must be user, assistant or system, got {role!r}", path=path, row=row, field=f"{where}.role"
            )
        if not isinstance(content, str):
            raise PersonaFileError("content must be text", path=path, row=row, field=f"{where}.content")
        if role == "system":
            reference = content if reference is None else f"{reference}\n{content}"
        elif content.strip():
            turns.append((role, content.strip()))
    digest = hashlib.sha256(json.dumps(turns).encode()).hexdigest()[:10]
    return Conversation(
        id=f"implicit-{digest}", source=f"{label or path} row {row}", turns=tuple(turns), reference=reference
    )


def _jsonl_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
        if not files:
            raise PersonaFileError("the folder holds no .jsonl files", path=path)
        return files
    if not path.is_file():
        raise PersonaFileError("file not found", path=path)
    return [path]


def load_conversations(path: Path, messages_field: str = "messages", count: int | None = None) -> list[Conversation]:
    conversations: list[Conversation] = []
    for file in _jsonl_files(path):
        for number, value in read_jsonl(file):
            conversations.append(
                parse_conversation(value, path=str(file), row=number, messages_field=messages_field, label=file.name)
            )
            if count is not None and len(conversations) >= count:
                return conversations
    return conversations


def load_hub_conversations(source: ImplicitSource) -> list[Conversation]:
    """Conversations from a Hub dataset (honours ``HF_ENDPOINT`` and ``HF_TOKEN``)."""
    import datasets

    dataset = datasets.load_dataset(source.repo, revision=source.revision, split=source.split)
    if source.messages_field not in dataset.column_names:
        raise PersonaFileError(
            f"no column {source.messages_field!r}; the dataset has {dataset.column_names}",
            path=source.repo,
            field="messages_field",
        )
    conversations = []
    for row, value in enumerate(dataset[source.messages_field], start=1):
        conversations.append(
            parse_conversation(value, path=str(source.repo), row=row, messages_field=source.messages_field)
        )
        if source.count is not None and len(conversations) >= source.count:
            break
    return conversations


# -- extraction ----------------------------------------------------------------------------------
