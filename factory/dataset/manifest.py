"""A version's ``manifest.json``: what made it (the recipe, its hash and seed, when, the endpoint),
what it holds (each split's rows and files, the configs, the charts) and what the write measured
(``stats``). Written once, by the version writer, through :class:`Manifest`; read back through it
by ``plan``, the changelog, review, persona banks and the next run. What one producer adds beyond
the shared fields (a run's rounds and Ray nodes, a re-judging's source, a bank's reports) is kept
as it is written."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from factory.errors import OutputError
from factory.records import PUBLISHED_MODELS, SCHEMA_VERSION, json_schemas


class SplitListing(BaseModel):
    """A split's (or a config's) rows and shard files."""

    model_config = ConfigDict(extra="allow")

    rows: int = 0
    files: list[str] = Field(default_factory=list)


class Manifest(BaseModel):
    """A version's manifest.json: what made the version, what it holds, what its write measured."""

    model_config = ConfigDict(extra="allow")

    version: str
    previous_version: str | None = None
    recipe: str
    recipe_hash: str
    schema_version: str = Field(description="The records' schema version of the release that wrote it.")
    kind: str = Field(default="dialogues", description="dialogues, or persona_bank.")
    seed: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    seconds: float | None = None
    splits: dict[str, SplitListing] = Field(default_factory=dict)
    configs: dict[str, SplitListing] = Field(default_factory=dict)
    charts: list[str] = Field(default_factory=list)
    stats: dict[str, Any] = Field(default_factory=dict)
    resumed_with: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _readable(cls, data: Any) -> Any:
        """A manifest of an older schema is read (what it lacks takes its default); one of a newer
        major schema is refused, as its fields may mean something this release does not know."""
        written = str(data.get("schema_version", "")) if isinstance(data, dict) else ""
        major = written.split(".", 1)[0]
        if major.isdigit() and int(major) > int(SCHEMA_VERSION.split(".", 1)[0]):
            raise ValueError(
                f"written with records schema {written}, newer than this persona-factory reads ({SCHEMA_VERSION}): "
                "upgrade persona-factory"
            )
        return data

    def files_of(self, split: str) -> list[str]:
        listing = self.splits.get(split)
        return list(listing.files) if listing else []


def manifest_of(text: str | bytes, where: str) -> Manifest:
    """The manifest in ``text`` (``where`` names it in the one-line error when it is not one)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise OutputError(f"{where}: not JSON ({error.msg}, line {error.lineno})") from None
    return _checked(data, where)


def _checked(data: Any, where: str) -> Manifest:
    try:
        return Manifest.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "manifest"
        raise OutputError(f"{where}: {field}: {first['msg'].removeprefix('Value error, ')}") from None


def manifest_text(manifest: dict[str, Any]) -> str:
    """The manifest as the version writer writes it, checked against the model first."""
    checked = _checked(manifest, "manifest.json")
    return json.dumps(checked.model_dump(mode="json", exclude_unset=True), indent=2, sort_keys=True) + "\n"


def published_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schemas ``schemas/`` holds: every published record's, and the manifest's."""
    return json_schemas({**PUBLISHED_MODELS, "manifest": Manifest})
