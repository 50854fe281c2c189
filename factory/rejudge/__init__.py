"""`persona-factory critics judge`: the critics over dialogues that exist, into a new version.

SOURCE is a factory dataset folder (its latest version, or ``--revision``), a chat dataset (a
parquet or JSONL file, or a folder of them), or a Hub repository written ``hf://org/name`` (at
``--revision``), which is either. A chat dataset's columns are named by a mapping: ``messages``
(a list of ``{role, content}`` or of plain strings, speakers taking turns), ``personas`` (per
speaker, a list of statements or one text) and optionally ``id``. Nothing is generated: every
verdict but the writer's own is judged again by the critics asked for (through the reply cache,
so a question asked before costs nothing), and the dialogues are written as the next version of
``--out``, with a card to review like any other.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from factory.critics.acceptance import settle_run
from factory.critics.base import JudgePanel
from factory.critics.jury import judge_panels, needs_generator, prices_of
from factory.dataset.card import CardContext, published_folder_name
from factory.dataset.dialogues import ChatRows, dialogue_card, released_of, review_draws, write_dialogues
from factory.dataset.folder import DatasetFolder
from factory.dataset.stats import RunStats
from factory.dataset.version import VersionWriter
from factory.engine.processor import ChunkProcessor, EngineSettings, judge
from factory.engine.progress import progress_for
from factory.errors import InputError
from factory.llm.cache import usable_cache_directory
from factory.llm.embedded import check_running_servers
from factory.llm.endpoint import endpoint_provenance, open_endpoint, package_versions
from factory.llm.keys import ApiKeys
from factory.llm.spec import EndpointSpec
from factory.recipes import OutputConfig, Recipe
from factory.recipes.critics import CriticsConfig, all_critic_names
from factory.recipes.generation import GenerationConfig
from factory.recipes.llm import LLMConfig
from factory.records import DialogueRecord
from factory.rejudge.sources import ChatMapping, JudgedSource, load_source

__all__ = ["ChatMapping", "JudgeSettings", "JudgedSource", "judge_source", "load_source"]
IN_FLIGHT = 64  # dialogues judged at once; the endpoint's own limit decides how many requests go out


@dataclass
class JudgingRecipe:
    """What a judged version's manifest and card say made it: the critics and the source."""

    name: str
    text: str
    seed: int = 0

    def content_hash(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]


@dataclass
class JudgeSettings:
    """The parts of a recipe judging reads: the critics, the endpoints, the dialogue bounds the
    heuristic checks, the card's output settings."""

    name: str = "critics"
    critics: CriticsConfig = field(default_factory=CriticsConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    seed: int = 0

    @classmethod
    def of(cls, recipe: Recipe) -> JudgeSettings:
        return cls(recipe.name, recipe.critics, recipe.llm, recipe.generation, recipe.output, recipe.seed)


@dataclass
class JudgeResult:
    path: Path
    version: str
    judged: int
    accepted: int
    rejected_by: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        rejected = ", ".join(f"{critic} {n}" for critic, n in self.rejected_by.items()) or "none"
        return "\n".join(
            [
                f"version     {self.version}",
                f"dialogues   {self.judged} judged, {self.accepted} accepted",
                f"rejected by {rejected}",
                str(self.path),
            ]
        )


def judge_source(
    source: JudgedSource, recipe: JudgeSettings, experts: list[str], out: str | Path, *, show_progress: bool = True
) -> JudgeResult:
    """Judge ``source``'s dialogues with ``experts`` (their settings from ``recipe.critics``) and
    write them as the next version of the dataset folder ``out``."""
    critics = _only(recipe.critics, experts)
    started, at = time.monotonic(), datetime.now(timezone.utc)
    folder = DatasetFolder(out)
    folder.check_usable()
    keys = ApiKeys()
    text = yaml.safe_dump(
        {"name": f"judged-{recipe.name}", "judged": source.provenance, "experts": experts,
         "critics": critics.model_dump(mode="json", exclude_defaults=True)},
        sort_keys=False,
    )  # fmt: skip
    made_by = JudgingRecipe(f"judged-{recipe.name}", text)
    with open_endpoint(recipe.llm) if needs_generator(critics, experts) else nullcontext() as generator:
        judges = judge_panels(critics, recipe.llm, generator, keys)
        # the model-free critics (heuristic, learned, grounding) ask no endpoint: the recipe's
        # settings stand in for one that is never called
        spec = generator or next(
            (panel.jurors[0].spec for panel in judges.values()),
            EndpointSpec.of(recipe.llm, recipe.llm.base_url or "", recipe.llm.model or "", "openai-compatible"),
        )
        records, report = _judge_all(source.records, recipe, critics, spec, judges, keys, show_progress)
        with folder.locked():
            folder.prepare()
            writer = VersionWriter(folder)
            manifest = writer.manifest_head(made_by, endpoint_provenance(generator), at, started)
            manifest.update(
                {"judged": source.provenance, "execution": {"endpoints": report}, "packages": package_versions()}
            )
            stats = _write(writer, records, critics, made_by, recipe, spec, judges, manifest, out)
            writer.publish(f"{writer.version}: {made_by.name}, {stats.accepted} accepted of {stats.generated}")
    return JudgeResult(folder.path, writer.version, stats.generated, stats.accepted, dict(stats.rejected_by))


def _only(critics: CriticsConfig, experts: list[str]) -> CriticsConfig:
    known = list(all_critic_names())
    unknown = [name for name in experts if name not in known]
    if unknown or not experts:
        raise InputError(f"unknown critics {unknown}; choose from {', '.join(known)}", field="--experts")
    update = {name: critics.settings_of(name).model_copy(update={"enabled": name in experts}) for name in known}
    return critics.model_copy(update=update)


def _judge_all(
    records: list[DialogueRecord],
    recipe: JudgeSettings,
    critics: CriticsConfig,
    spec: EndpointSpec,
    judges: dict[str, JudgePanel],
    keys: ApiKeys,
    show_progress: bool,
) -> tuple[list[DialogueRecord], dict[str, Any]]:
    settings = EngineSettings(spec, recipe.generation, critics, {}, judges, usable_cache_directory(recipe.llm.cache))
    shown = progress_for(len(records), 0, show_progress, prices_of(spec, judges))

    async def run() -> dict[str, Any]:
        processor = ChunkProcessor(settings, keys)
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def one(record: DialogueRecord) -> None:
            async with gate:
                await judge(record, critics, processor.context)
            if shown is not None:
                shown.update(1)
                shown.journaled([record])

        try:
            await asyncio.gather(*(one(record) for record in records))
            await processor.best_of_casts(records)
            return processor.report()
        finally:
            await processor.aclose()

    try:
        report = asyncio.run(run())
    finally:
        if shown is not None:
            shown.close()
    check_running_servers()
    return records, report


def _write(
    writer: VersionWriter,
    records: list[DialogueRecord],
    critics: CriticsConfig,
    made_by: JudgingRecipe,
    recipe: JudgeSettings,
    spec: EndpointSpec,
    judges: dict[str, JudgePanel],
    manifest: dict[str, Any],
    out: str | Path,
) -> RunStats:
    context = CardContext(
        recipe_name=made_by.name,
        description=f"Dialogues judged again by persona-factory's critics ({', '.join(critics.enabled()[1:])}).",
        version=writer.version,
        previous_version=writer.previous,
        recipe_hash=made_by.content_hash(),
        model=", ".join(sorted({r.generation.model for r in records})),
        endpoint_kind=spec.kind,
        license=recipe.output.license,
        pretty_name=recipe.output.pretty_name,
        samples=recipe.output.samples_in_card,
        critics=critics.enabled(),
        uncertain_band=critics.learned.deciding_band(),
        load_as=published_folder_name(out),
    )

    def batches() -> Iterator[list[DialogueRecord]]:
        yield records

    settle = settle_run(critics, batches)
    no_chat = ChatRows(lambda record: [], declared=False)  # a judged version has no chat config
    stats, samples, ids = write_dialogues(writer, batches, settle, no_chat, context, prices_of(spec, judges))
    card = dialogue_card(writer, context, stats, samples, manifest, released_of(writer.folder), made_by.text)
    writer.finish(
        card=card, cells_by_split=ids, review_seed=recipe.seed,
        review_samples=review_draws(recipe.output.review_samples), labels_required=recipe.output.review_labels,
        least_sure=stats.least_sure,
        recipe_text=made_by.text, manifest=manifest,
    )  # fmt: skip
    return stats
