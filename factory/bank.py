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
from factory.dataset.review_section import persona_cell
from factory.dataset.version import VersionWriter
from factory.errors import PipelineError
from factory.llm.embeddings import Embedder, open_embedder
from factory.llm.endpoint import endpoint_provenance, open_endpoint, package_versions
from factory.llm.keys import ApiKeys
from factory.llm.spec import EndpointSpec
from factory.llm.tasks import JsonTaskRunner
from factory.personas import PersonaPool
from factory.personas.bank import BANK_SPLIT
from factory.personas.source import Made, SourceContext
from factory.personas.sources import source_for
from factory.recipes import PersonaBankRecipe
from factory.records import Dropped, PersonaProfile

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


def bank_licence(recipe: PersonaBankRecipe) -> tuple[str, list[str]]:
    """The bank's licence (the recipe's, or the most demanding of the data it draws on) and its
    attributions."""
    keys = list(dict.fromkeys(key for s in recipe.sources if (key := source_for(s).attribution(s)) is not None))
    attributions = [SOURCE_ATTRIBUTION[key][1] for key in keys]
    if any(source_for(s).generative(s) for s in recipe.sources):
        attributions.append("Characters, profiles and statements written by the model named above.")
    if recipe.output.license:
        return recipe.output.license, attributions
    used = {SOURCE_ATTRIBUTION[key][0] for key in keys}
    return next((licence for licence in LICENCE_ORDER if licence in used), "cc0-1.0"), attributions


def check_inputs(recipe: PersonaBankRecipe) -> list[Any]:
    """Everything that can fail on bad input, before any model or folder is touched: what each
    source read, by source position."""
    return [source_for(settings).prepare(settings, recipe.resolve_path) for settings in recipe.sources]


def make_personas(recipe: PersonaBankRecipe, prepared: list[Any], context: SourceContext) -> Made:
    """Every source's personas, in source order, into one pool (a persona made twice speaks once)."""
    pool = PersonaPool()
    made = Made([])
    for settings, inputs in zip(recipe.sources, prepared):
        part = source_for(settings).make(settings, inputs, context)
        pool.add(part.personas)
        made.dropped.extend(part.dropped)
        made.reports.update(part.reports)
    made.personas = pool.personas
    return made


def build_bank(
    recipe: PersonaBankRecipe, out: str | Path, *, recipe_text: str | None = None, show_progress: bool = True
) -> BankResult:
    started, started_at = time.monotonic(), datetime.now(timezone.utc)
    prepared = check_inputs(recipe)
    recipe_text = recipe_text or yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
    folder = DatasetFolder(out)
    keys = ApiKeys()
    with ExitStack() as stack:
        spec: EndpointSpec | None = stack.enter_context(open_endpoint(recipe.llm)) if _generative(recipe) else None
        runner = stack.enter_context(JsonTaskRunner(spec, keys)) if spec is not None else None
        embedder = None
        if any(source_for(s).needs_embeddings(s, inputs) for s, inputs in zip(recipe.sources, prepared)):
            embedder = open_embedder(
                recipe.embeddings,
                spec.base_url if spec else next(iter(recipe.llm.base_urls), None),
                keys.get(recipe.embeddings.key_env(recipe.llm.api_key_env)),
            )
            stack.callback(embedder.close)
        folder.prepare()
        with folder.locked():
            context = SourceContext(recipe.resolve_path, random.Random(recipe.seed), runner, embedder, show_progress)
            made = make_personas(recipe, prepared, context)
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
                cells_by_split={BANK_SPLIT: {p.id: persona_cell(p) for p in made.personas}},
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
    made: Made,
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
    made: Made,
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


def _generative(recipe: PersonaBankRecipe) -> bool:
    return any(source_for(settings).generative(settings) for settings in recipe.sources)
