"""`persona-factory personas build`: run a bank recipe's sources and publish the personas as the
next version of a bank folder, in the same Hub layout and versioning as dialogue datasets.

Input is checked before anything is written (recipe, files, conversations, MBTI types); personas
are made before the folder is touched beyond its lock, and only a finished version is moved in.
"""

from __future__ import annotations

import json
import random
import time
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

from factory.dataset.arrow import records_to_table
from factory.dataset.bank_card import (
    LICENCE_ORDER,
    SOURCE_ATTRIBUTION,
    BankCardContext,
    Coverage,
    compute_coverage,
    render_bank_card,
)
from factory.dataset.card import dataset_info, published_folder_name
from factory.dataset.folder import DatasetFolder
from factory.dataset.review_section import ReviewState, pick_samples, write_state
from factory.errors import PipelineError
from factory.llm.client import EndpointSpec
from factory.llm.embeddings import Embedder, open_embedder
from factory.llm.endpoint import endpoint_provenance, open_endpoint, package_versions
from factory.llm.tasks import JsonTaskRunner
from factory.personas import PersonaPool, sampled_personas
from factory.personas.expansion import Expansion
from factory.personas.implicit import Conversation, build_implicit, load_conversations, load_hub_conversations
from factory.personas.mbti_bank import build_mbti_bank, plan_slots
from factory.personas.statements import load_spc_rows
from factory.recipes import PersonaBankRecipe
from factory.recipes.personas import BigFiveSource, ImplicitSource, MBTIBankSource, SPCExpansionSource, StatementsSource
from factory.records import SCHEMA_VERSION, Dropped, PersonaProfile
from factory.settings import environment

BANK_FILE = "data/personas-00000-of-00001.parquet"


@dataclass
class BankResult:
    path: Path
    version: str
    previous_version: str | None
    coverage: Coverage
    dropped: list[Dropped]
    manifest: dict[str, Any]
    seconds: float


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
) -> tuple[list[PersonaProfile], list[Dropped], dict[str, Any]]:
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
    return pool.personas, dropped, reports


def build_bank(
    recipe: PersonaBankRecipe, out: str | Path, *, recipe_text: str | None = None, show_progress: bool = True
) -> BankResult:
    started = time.monotonic()
    started_at = datetime.now(timezone.utc)
    conversations = check_inputs(recipe)
    recipe_text = recipe_text or yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
    licence, attributions = bank_licence(recipe)
    folder = DatasetFolder(out)
    api_key = environment().api_key
    with ExitStack() as stack:
        spec: EndpointSpec | None = stack.enter_context(open_endpoint(recipe.llm)) if recipe.needs_llm else None
        runner = stack.enter_context(JsonTaskRunner(spec, api_key)) if spec is not None else None
        embedder = (
            open_embedder(recipe.embeddings, spec.base_url if spec else (recipe.llm.base_urls or [None])[0], api_key)
            if _needs_embeddings(recipe, conversations)
            else None
        )
        folder.prepare()
        with folder.locked():
            previous, version = folder.current_version(), folder.next_version()
            personas, dropped, reports = make_personas(
                recipe, conversations, runner, embedder, show_progress=show_progress
            )
            if not personas:
                first = f"; the first: {dropped[0].item}: {dropped[0].reason}" if dropped else ""
                raise PipelineError(f"no persona was made ({len(dropped)} dropped{first}); no version was written")
            staging = folder.new_staging()
            (staging / "data").mkdir()
            pq.write_table(records_to_table(PersonaProfile, personas), staging / BANK_FILE)
            coverage = compute_coverage(personas)
            manifest = {
                "kind": "persona_bank",
                "version": version,
                "previous_version": previous,
                "recipe": recipe.name,
                "recipe_hash": recipe.content_hash(),
                "schema_version": SCHEMA_VERSION,
                **endpoint_provenance(spec),
                "embedder": embedder.name if embedder else None,
                "seed": recipe.seed,
                "started_at": started_at.isoformat(),
                "finished_at": datetime.now(timezone.utc).isoformat(),
                "seconds": round(time.monotonic() - started, 2),
                "llm": {
                    "calls": runner.calls if runner else 0,
                    "prompt_tokens": runner.usage.prompt_tokens if runner else 0,
                    "completion_tokens": runner.usage.completion_tokens if runner else 0,
                },
                "splits": {"personas": {"rows": len(personas), "files": [BANK_FILE]}},
                "coverage": coverage.as_dict(),
                "dropped": [asdict(item) for item in dropped],
                "reports": reports,
                "packages": package_versions(),
            }
            context = BankCardContext(
                name=recipe.name,
                description=recipe.description,
                version=version,
                previous_version=previous,
                recipe_hash=recipe.content_hash(),
                model=spec.model if spec else None,
                embedder=embedder.name if embedder else None,
                license=licence,
                pretty_name=recipe.output.pretty_name,
                attributions=attributions,
                dropped=dropped,
                reports=reports,
                load_as=published_folder_name(out),
            )
            info = dataset_info(staging, {"personas": [BANK_FILE]}, {"personas": len(personas)})
            card = str(render_bank_card(context, coverage, info))
            samples = pick_samples({"personas": [p.id for p in personas]}, recipe.seed, {"personas": 5})
            (staging / "README.md").write_text(
                write_state(card, ReviewState(samples=samples, seed=recipe.seed)), encoding="utf-8"
            )
            (staging / "recipe.yaml").write_text(recipe_text, encoding="utf-8")
            (staging / "manifest.json").write_text(
                json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
            )
            folder.publish(staging, version, f"{version}: persona bank {recipe.name}, {len(personas)} personas")
    return BankResult(
        path=folder.path,
        version=version,
        previous_version=previous,
        coverage=coverage,
        dropped=dropped,
        manifest=manifest,
        seconds=time.monotonic() - started,
    )
