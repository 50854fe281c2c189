"""Where the dialogues to judge come from: a factory version (a folder or a Hub repository), or
a chat dataset the factory did not make, read through a column mapping. Bad input is one line
naming the file, the row and the column."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from factory.dataset.dialogues import SPLITS
from factory.dataset.folder import DatasetFolder
from factory.errors import InputError
from factory.jsonl import read_jsonl
from factory.records import FORMAT, DialogueRecord, GenerationMeta, PersonaProfile, Turn

IMPORTED_MODEL = "unknown (imported)"


@dataclass
class ChatMapping:
    """Which columns of a chat dataset hold what."""

    messages: str = "messages"
    personas: str = "personas"
    id: str | None = None

    @classmethod
    def parse(cls, text: str | None) -> ChatMapping:
        """``messages=dialog,personas=persona_lines,id=conv_id``; unnamed keys keep their default."""
        mapping = cls()
        for part in filter(None, (text or "").split(",")):
            key, _, column = part.partition("=")
            if key.strip() not in ("messages", "personas", "id") or not column.strip():
                raise InputError(f"{part!r}: give messages=COLUMN, personas=COLUMN or id=COLUMN", field="--map")
            setattr(mapping, key.strip(), column.strip())
        return mapping


@dataclass
class JudgedSource:
    """The dialogues to judge, and where they came from (for the manifest and the card)."""

    records: list[DialogueRecord]
    provenance: dict[str, Any]


def load_source(source: str, revision: str | None, mapping: ChatMapping) -> JudgedSource:
    """The dialogues of ``source``: a factory version, a chat dataset, or either on the Hub."""
    if source.startswith("hf://"):
        return _hub_source(source.removeprefix("hf://"), revision, mapping)
    path = Path(source)
    if not path.exists():
        raise InputError("no such file or folder", path=path)
    if path.is_dir() and DatasetFolder(path).is_repository():
        version = read_version(source, revision)
        return JudgedSource(_version_records(version.files, version.where), version.provenance)
    if path.is_file() and not _chat_file(path.name):
        raise InputError(f"not a file to judge: {FORMATS}", path=path)
    chats = sorted(p for p in path.rglob("*") if _chat_file(p.name)) if path.is_dir() else [path]
    if not chats:
        raise InputError("no .parquet or .jsonl files to judge", path=path)
    records = [r for file in chats for r in _chat_records(file.name, _rows(file), mapping, str(file))]
    return JudgedSource(records, {"path": str(path), "mapping": mapping.__dict__})


FORMATS = "judged files are .parquet (a table of chats) or .jsonl (one chat a line), or a dataset folder"


def _chat_file(name: str) -> bool:
    return name.endswith((".parquet", ".jsonl"))


def _rows(file: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    if file.suffix == ".jsonl":
        yield from read_jsonl(file)
        return
    try:
        table = pq.read_table(file)
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"not a readable parquet file ({str(exc).splitlines()[0]}); {FORMATS}", path=file) from exc
    yield from enumerate(table.to_pylist(), start=1)


@dataclass
class FactoryVersion:
    """A version the factory made, read from its folder or its Hub repository: the published
    files under ``data/`` (and the manifest), and where they came from."""

    files: dict[str, bytes]
    provenance: dict[str, Any]
    where: str  # how a one-line error names it: PATH@VERSION or hf://REPO@REVISION


def read_version(source: str, revision: str | None) -> FactoryVersion:
    """The factory version ``source`` names: a dataset folder (its latest version, or
    ``revision``) or ``hf://org/name`` (at ``revision``); anything else is one line."""
    if source.startswith("hf://"):
        return _hub_version(_HubRepo(source.removeprefix("hf://"), revision))
    path = Path(source)
    folder = DatasetFolder(path)
    if not (path.is_dir() and folder.is_repository()):
        raise InputError("not a persona-factory dataset folder", path=path)
    version = revision or folder.current_version()
    if version is None:
        raise InputError("a dataset folder without a version", path=path)
    commit = folder.resolve(version)
    provenance = {"path": str(path), "revision": version, "commit": commit}
    return FactoryVersion(folder.published_files(version), provenance, f"{path}@{version}")


class _HubRepo:
    """A dataset repository at one commit: its file names, and each file fetched on demand."""

    def __init__(self, repo: str, revision: str | None) -> None:
        from factory.errors import hub_errors
        from factory.hub import hub_api

        self.repo, self.api = repo, hub_api()
        self.where = f"hf://{repo}@{revision or 'main'}"
        with hub_errors("the files of", repo):
            self.commit = self.api.dataset_info(repo, revision=revision).sha
            self.names = self.api.list_repo_files(repo, repo_type="dataset", revision=self.commit)
        self.provenance: dict[str, Any] = {"repo": repo, "revision": revision or "main", "commit": self.commit}

    def fetch(self, name: str) -> Path:
        from huggingface_hub import hf_hub_download

        from factory.errors import hub_errors

        with hub_errors(f"{name} from", self.repo):
            return Path(
                hf_hub_download(
                    self.repo, name, repo_type="dataset", revision=self.commit, endpoint=self.api.endpoint,
                    token=self.api.token,
                )
            )  # fmt: skip


def _hub_version(hub: _HubRepo) -> FactoryVersion:
    if "manifest.json" not in hub.names:
        raise InputError("not a persona-factory version (it has no manifest.json)", path=hub.where)
    wanted = [name for name in hub.names if name.startswith("data/") or name == "manifest.json"]
    return FactoryVersion({name: hub.fetch(name).read_bytes() for name in wanted}, hub.provenance, hub.where)


def _hub_source(repo: str, revision: str | None, mapping: ChatMapping) -> JudgedSource:
    hub = _HubRepo(repo, revision)
    if "manifest.json" in hub.names:  # a factory version, pushed
        version = _hub_version(hub)
        return JudgedSource(_version_records(version.files, version.where), version.provenance)
    records: list[DialogueRecord] = []
    for name in sorted(n for n in hub.names if _chat_file(n)):
        # read as a local file is: the same rows, the same one-line errors for a bad one
        records.extend(_chat_records(Path(name).name, _rows(hub.fetch(name)), mapping, f"{hub.where}/{name}"))
    if not records:
        raise InputError("no .parquet or .jsonl files to judge", path=hub.where)
    return JudgedSource(records, {**hub.provenance, "mapping": mapping.__dict__})


def is_dialogue_shard(name: str) -> bool:
    """Whether a version's file is a shard of its dialogues (``data/accepted-*``, ``data/rejected-*``)."""
    return name.startswith("data/") and name.endswith(".parquet") and Path(name).name.split("-")[0] in SPLITS


def _version_records(files: dict[str, bytes], where: str) -> list[DialogueRecord]:
    """A factory version's dialogues (both splits), their verdicts cleared but the writer's own."""
    records = []
    for name, data in sorted(files.items()):
        if not is_dialogue_shard(name):
            continue
        for row in pq.read_table(io.BytesIO(data)).to_pylist():
            record = DialogueRecord.model_validate(row)
            record.verdicts = [v for v in record.verdicts if v.critic == FORMAT]
            record.accepted = False
            records.append(record)
    if not records:
        raise InputError("the version has no dialogues", path=where)
    return records


def _chat_records(
    stem: str, rows: Iterator[tuple[int, Any]], mapping: ChatMapping, where: str
) -> Iterator[DialogueRecord]:
    columns_checked = False
    for number, row in rows:
        if not isinstance(row, dict):
            raise InputError("a row that is not an object", path=where, row=number)
        if not columns_checked:
            for key in ("messages", "personas", "id"):
                column = getattr(mapping, key)
                if column is not None and column not in row:
                    raise InputError(
                        f"no column {column!r} (--map {key}={column}); the columns are: {', '.join(sorted(row))}",
                        path=where,
                    )
            columns_checked = True
        yield _chat_record(row, number, stem, mapping, where)


def _chat_record(row: dict[str, Any], number: int, stem: str, mapping: ChatMapping, where: str) -> DialogueRecord:
    messages = row[mapping.messages]
    if not isinstance(messages, list) or not messages:
        raise InputError("not a list of messages", path=where, row=number, field=mapping.messages)
    order: list[str] = []
    said: list[tuple[str, str]] = []
    for index, message in enumerate(messages):
        if isinstance(message, str):
            speaker, text = f"speaker {index % 2 + 1}", message
        elif isinstance(message, dict) and isinstance(message.get("content"), str):
            speaker, text = str(message.get("role") or "speaker"), message["content"]
        else:
            raise InputError(
                f"message {index + 1} is neither a string nor {{role, content}}",
                path=where,
                row=number,
                field=mapping.messages,
            )
        if speaker == "system":
            continue  # instructions, not a turn
        if speaker not in order:
            order.append(speaker)
        said.append((speaker, text))
    personas = row[mapping.personas]
    if not isinstance(personas, list) or len(personas) != len(order):
        raise InputError(
            f"{len(order)} speakers ({', '.join(order)}) need as many personas, one per speaker in order of "
            "their first turn",
            path=where, row=number, field=mapping.personas,
        )  # fmt: skip
    dialogue_id = str(row[mapping.id]) if mapping.id else f"{Path(stem).stem}-{number}"
    speakers = [
        PersonaProfile(
            id=f"{dialogue_id}-{n}",
            kind="statements",
            name=name,
            statements=_statements(persona, where, number, mapping.personas),
            source=f"{where} row {number}",
        )
        for n, (name, persona) in enumerate(zip(order, personas), start=1)
    ]
    by_name = {name: speaker.id for name, speaker in zip(order, speakers)}
    return DialogueRecord(
        id=dialogue_id,
        recipe="imported",
        speakers=speakers,
        turns=[Turn(speaker=by_name[speaker], text=text) for speaker, text in said],
        generation=GenerationMeta(model=IMPORTED_MODEL, prompt_hash="", seed=number, cast_id=dialogue_id),
    )


def _statements(persona: Any, where: str, row: int, column: str) -> list[str]:
    if isinstance(persona, str):
        statements = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n", persona) if s.strip()]
    elif isinstance(persona, list) and all(isinstance(s, str) for s in persona):
        statements = [s.strip() for s in persona if s.strip()]
    else:
        raise InputError("a persona is a list of statements or one text", path=where, row=row, field=column)
    if not statements:
        raise InputError("a persona without statements", path=where, row=row, field=column)
    return statements
