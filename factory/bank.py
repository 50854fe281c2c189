"""`persona-factory personas build`: run a bank recipe's sources and publish the personas as the
next version of a bank folder, in the same Hub layout and versioning as dialogue datasets.

Input is checked before anything is written (recipe, files, conversations, MBTI types); personas
are made before the folder is touched beyond its lock, and only a finished version is moved in.
"""

from __future__ import annotations

import random
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from factory.dataset.bank_card import (
    LICENCE_ORDER,
    SOURCE_ATTRIBUTION,
    BankCardContext,
    Coverage,
    compute_coverage,
    render_bank_card,
)
from factory.dataset.card import published_folder_name
from factory.dataset.folder import DatasetFolder
from factory.dataset.version import VersionWriter
from factory.errors import PipelineError
from factory.llm.embeddings import Embedder, open_embedder
from factory.llm.endpoint import endpoint_provenance, open_endpoint, package_versions
from factory.llm.spec import EndpointSpec
from factory.llm.tasks import JsonTaskRunner
from factory.personas import PersonaPool, sampled_personas
from factory.personas.bank import BANK_SPLIT
from factory.personas.expansion import Expansion
from factory.personas.implicit import Conversation, build_implicit, load_conversations, load_hub_conversations
from factory.personas.mbti_bank import build_mbti_bank, plan_slots
from factory.personas.statements import load_spc_rows
from factory.recipes import PersonaBankRecipe
from factory.recipes.personas import BigFiveSource, ImplicitSource, MBTIBankSource, SPCExpansionSource, StatementsSource
from factory.records import Dropped, PersonaProfile
from factory.settings import environment

REVIEW_SAMPLES = 5  # personas a reviewer reads


@dataclass
class BankResult:
    path: Path
    version: str
    previous_version: str | None
    coverage: Coverage
    dropped: list[Dropped]
    manifest: dict[str, Any]
    seconds: float


@dataclass
class MadePersonas:
    personas: list[PersonaProfile]
    dropped: list[Dropped]
    reports: dict[str, Any]  # what the generative sources measured of themselves


def _attribution_keys(recipe: PersonaBankRecipe) -> list[str]:
    keys = []
    for source in recipe.sources:
        path = getattr(source, "path", None) or ""
        if isinstance(source, (StatementsSource, SPCExpansionSource)) and "synthetic_persona_chat" in path:
            keys.append("synthetic_persona_chat")
        if isinstance(source, ImplicitSource) and "usp" in (source.path or ""):
            keys.append("usp")
        if isinstance(source, BigFiveSource):
            keys.append("ipip")
    return list(dict.fromkeys(keys))


def bank_licence(recipe: PersonaBankRecipe) -> tuple[str, list[str]]:
    keys = _attribution_keys(recipe)
    attributions = [SOURCE_ATTRIBUTION[key][1] for key in keys]
    if any(isinstance(s, (MBTIBankSource, ImplicitSource, SPCExpansionSource)) for s in recipe.sources):
        attributions.append("Characters, profiles and statements written by the model named above.")
    if recipe.output.license:
        return recipe.output.license, attributions
    used = {SOURCE_ATTRIBUTION[key][0] for key in keys}
    return next((licence for licence in LICENCE_ORDER if licence in used), "cc0-1.0"), attributions


def check_inputs(recipe: PersonaBankRecipe) -> dict[int, list[Conversation]]:
    """Everything that can fail on bad input, before any model or folder is touched. Returns the
    conversations of the implicit sources, keyed by source position."""
    conversations: dict[int, list[Conversation]] = {}
    for index, source in enumerate(recipe.sources):
        if isinstance(source, MBTIBankSource):
            plan_slots(source, random.Random(0))  # unknown types fail here
        elif isinstance(source, ImplicitSource):
            if source.path is not None:
                conversations[index] = load_conversations(
                    recipe.resolve_path(source.path), source.messages_field, source.count
                )
            else:
                conversations[index] = load_hub_conversations(source)
        elif isinstance(source, (SPCExpansionSource, StatementsSource)):
            load_spc_rows(recipe.resolve_path(source.path))
    return conversations


def _needs_embeddings(recipe: PersonaBankRecipe, conversations: dict[int, list[Conversation]]) -> bool:
    with_references = any(c.reference for items in conversations.values() for c in items)
    return with_references or any(isinstance(s, SPCExpansionSource) for s in recipe.sources)


def make_personas(
    recipe: PersonaBankRecipe,
    conversations: dict[int, list[Conversation]],
    runner: JsonTaskRunner | None,
    embedder: Embedder | None,
    *,
    show_progress: bool = True,
) -> MadePersonas:
    rng = random.Random(recipe.seed)
    pool = PersonaPool()
    dropped: list[Dropped] = []
    reports: dict[str, Any] = {}
    for index, source in enumerate(recipe.sources):
        sampled = sampled_personas(source, recipe.resolve_path, rng)
        if sampled is not None:
            pool.add(sampled)
        else:
            assert runner is not None, "generative sources need the LLM"
            if isinstance(source, MBTIBankSource):
                made, lost = build_mbti_bank(runner, source, rng, show_progress=show_progress)
            elif isinstance(source, ImplicitSource):
                made, lost, agreement = build_implicit(
                    runner, source, conversations[index], embedder, show_progress=show_progress
                )
                if agreement is not None:
                    reports["implicit_agreement"] = agreement.as_dict()
            else:
                assert embedder is not None
                expansion = Expansion(runner, embedder, source, recipe.resolve_path(source.path), rng, show_progress)
                made, lost = expansion.run()
                reports["spc_expansion"] = expansion.stats.as_dict()
            pool.add(made)
            dropped.extend(lost)
    return MadePersonas(pool.personas, dropped, reports)


def build_bank(
    recipe: PersonaBankRecipe, out: str | Path, *, recipe_text: str | None = None, show_progress: bool = True
) -> BankResult:
    started, started_at = time.monotonic(), datetime.now(timezone.utc)
    conversations = check_inputs(recipe)
    recipe_text = recipe_text or yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
    folder = DatasetFolder(out)
    api_key = environment().api_key
    with ExitStack() as stack:
        spec: EndpointSpec | None = stack.enter_context(open_endpoint(recipe.llm)) if recipe.needs_llm else None
        runner = stack.enter_context(JsonTaskRunner(spec, api_key)) if spec is not None else None
        embedder = None
        if _needs_embeddings(recipe, conversations):
            embedder = open_embedder(
                recipe.embeddings, spec.base_url if spec else (recipe.llm.base_urls or [None])[0], api_key
            )
        folder.prepare()
        with folder.locked():
            made = make_personas(recipe, conversations, runner, embedder, show_progress=show_progress)
            if not made.personas:
                first = f"; the first: {made.dropped[0].item}: {made.dropped[0].reason}" if made.dropped else ""
                raise PipelineError(f"no persona was made ({len(made.dropped)} dropped{first}); no version was written")
            writer = VersionWriter(folder)
            writer.write_split(BANK_SPLIT, PersonaProfile, made.personas)
            writer.close_splits()
            coverage = compute_coverage(made.personas)
            manifest = writer.manifest_head(recipe, endpoint_provenance(spec), started_at, started)
            manifest.update(_bank_manifest(writer, made, coverage, runner, embedder))
            writer.finish(
                card=_bank_card(writer, recipe, made, coverage, spec, embedder, out),
                ids_by_split={BANK_SPLIT: [p.id for p in made.personas]},
                review_seed=recipe.seed, review_samples={BANK_SPLIT: REVIEW_SAMPLES},
                recipe_text=recipe_text, manifest=manifest,
            )  # fmt: skip
            writer.publish(f"{writer.version}: persona bank {recipe.name}, {len(made.personas)} personas")
    return BankResult(
        path=folder.path, version=writer.version, previous_version=writer.previous, coverage=coverage,
        dropped=made.dropped, manifest=manifest, seconds=time.monotonic() - started,
    )  # fmt: skip


def _bank_manifest(
    writer: VersionWriter,
    made: MadePersonas,
    coverage: Coverage,
    runner: JsonTaskRunner | None,
    embedder: Embedder | None,
) -> dict[str, Any]:
    return {
        "kind": "persona_bank",
        "embedder": embedder.name if embedder else None,
        "llm": {
            "calls": runner.calls if runner else 0,
            "prompt_tokens": runner.usage.prompt_tokens if runner else 0,
            "completion_tokens": runner.usage.completion_tokens if runner else 0,
        },
        "splits": writer.split_listing([BANK_SPLIT]),
        "coverage": coverage.as_dict(),
        "dropped": [asdict(item) for item in made.dropped],
        "reports": made.reports,
        "packages": package_versions(),
    }


def _bank_card(
    writer: VersionWriter,
    recipe: PersonaBankRecipe,
    made: MadePersonas,
    coverage: Coverage,
    spec: EndpointSpec | None,
    embedder: Embedder | None,
    out: str | Path,
) -> str:
    licence, attributions = bank_licence(recipe)
    context = BankCardContext(
        name=recipe.name,
        description=recipe.description,
        version=writer.version,
        previous_version=writer.previous,
        recipe_hash=recipe.content_hash(),
        model=spec.model if spec else None,
        embedder=embedder.name if embedder else None,
        license=licence,
        pretty_name=recipe.output.pretty_name,
        attributions=attributions,
        dropped=made.dropped,
        reports=made.reports,
        load_as=published_folder_name(out),
    )
    return str(render_bank_card(context, coverage, writer.dataset_info([BANK_SPLIT])))
