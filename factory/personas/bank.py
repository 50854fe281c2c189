"""Persona banks as seeds: read the personas of a bank version, from a folder or the Hub.

A bank is published like a dialogue dataset (``data/personas-*.parquet``, card, manifest, one git
tag per version), so a dialogue run can name the exact revision it was seeded from; that revision
and its commit go into the run's manifest.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pydantic import ValidationError

from factory.dataset.folder import DatasetFolder
from factory.dataset.manifest import Manifest, manifest_of
from factory.errors import OutputError, PersonaFileError
from factory.personas.source import Made, SourceContext
from factory.recipes.personas import BankSource
from factory.records import PersonaProfile

BANK_SPLIT = "personas"


def _profiles(table_bytes: bytes, *, where: str) -> list[PersonaProfile]:
    rows = pq.read_table(io.BytesIO(table_bytes)).to_pylist()
    profiles = []
    for number, row in enumerate(rows, start=1):
        try:
            profiles.append(PersonaProfile.model_validate(row))
        except ValidationError as exc:
            error = exc.errors()[0]
            raise PersonaFileError(
                error["msg"], path=where, row=number, field=".".join(map(str, error["loc"]))
            ) from exc
    return profiles


def _split_files(manifest: Manifest, where: str) -> list[str]:
    if manifest.kind != "persona_bank":
        raise PersonaFileError("not a persona bank (its manifest.json has no kind: persona_bank)", path=where)
    return manifest.files_of(BANK_SPLIT)


def load_local_bank(path: Path, revision: str | None) -> tuple[list[PersonaProfile], dict[str, Any]]:
    folder = DatasetFolder(path)
    if not folder.is_repository():
        raise PersonaFileError("not a persona bank folder (build one with `persona-factory personas build`)", path=path)
    version = revision or folder.current_version()
    if version is None:
        raise PersonaFileError("the bank folder has no published version yet", path=path)
    try:
        commit = folder.resolve(version)
        manifest = manifest_of(folder.read_bytes(commit, "manifest.json"), f"{version}: manifest.json")
    except OutputError as exc:
        raise PersonaFileError(str(exc), path=path, field="revision") from exc
    personas: list[PersonaProfile] = []
    for name in _split_files(manifest, str(path)):
        personas.extend(_profiles(folder.read_bytes(commit, name), where=f"{path}/{name}@{version}"))
    return personas, {
        "path": str(folder.path),
        "revision": version,
        "commit": commit,
        "bank_version": manifest.version,
    }


def load_hub_bank(repo: str, revision: str | None) -> tuple[list[PersonaProfile], dict[str, Any]]:
    """A bank on the Hub (``HF_ENDPOINT`` and ``HF_TOKEN`` are honoured). Files are fetched one by
    one, the manifest first: it names the shards, and the commit every file came from."""
    from huggingface_hub import hf_hub_download

    from factory.hub import hub_api

    api = hub_api()
    where = f"hub:{repo}@{revision or 'main'}"
    commit = api.dataset_info(repo, revision=revision).sha
    if commit is None:
        raise PersonaFileError("the Hub did not say which commit this revision is", path=where)

    def fetch(name: str) -> bytes:
        path = hf_hub_download(repo, name, repo_type="dataset", revision=commit, endpoint=api.endpoint, token=api.token)
        return Path(path).read_bytes()

    try:
        manifest = manifest_of(fetch("manifest.json"), "manifest.json")
    except OutputError as exc:
        raise PersonaFileError(str(exc), path=where) from exc
    personas: list[PersonaProfile] = []
    for name in _split_files(manifest, f"hub:{repo}"):
        personas.extend(_profiles(fetch(name), where=f"{where}/{name}"))
    return personas, {
        "repo": repo,
        "revision": revision or "main",
        "commit": commit,
        "bank_version": manifest.version,
    }


def load_bank(source: BankSource) -> tuple[list[PersonaProfile], dict[str, Any]]:
    if source.repo is not None:
        personas, provenance = load_hub_bank(source.repo, source.revision)
    else:
        personas, provenance = load_local_bank(Path(source.path or "").expanduser().resolve(), source.revision)
    if source.kinds:
        personas = [p for p in personas if p.kind in source.kinds]
    provenance["personas"] = len(personas)
    return personas, provenance


class BankRevision:
    """``source: bank``: the personas of a bank version, from a folder or the Hub."""

    def generative(self, settings: Any) -> bool:
        return False

    def attribution(self, settings: BankSource) -> str | None:
        return None

    def prepare(self, settings: BankSource, resolve_path: Callable[[str], Path]) -> None:
        return None

    def needs_embeddings(self, settings: BankSource, prepared: None) -> bool:
        return False

    def make(self, settings: BankSource, prepared: None, context: SourceContext) -> Made:
        personas, provenance = load_bank(settings)
        if settings.count is not None and settings.count < len(personas):
            personas = context.rng.sample(personas, settings.count)
            provenance["personas"] = len(personas)
        return Made(personas, bank=provenance)
