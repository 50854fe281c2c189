"""A dialogue run's version: accepted and rejected splits, the ``messages`` config of chat
examples, run statistics, and the card with its changelog, through :class:`VersionWriter`.

The records are streamed from the run's journal twice (once to count the splits, once to write
them); ``settle`` gives each record its last verdicts and its ``accepted`` flag as it passes, so
nothing holds the whole run in memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from factory.dataset.card import CardContext, chat_file, render_card
from factory.dataset.changelog import changelog
from factory.dataset.charts import write_charts
from factory.dataset.folder import DatasetFolder
from factory.dataset.review_section import dialogue_cell
from factory.dataset.stats import RunStats, StatsAccumulator
from factory.dataset.version import VersionWriter
from factory.failpoints import failpoint
from factory.llm.pricing import Prices
from factory.records import ChatExample, DialogueRecord

SPLITS = ("accepted", "rejected")
CHAT_CONFIG = "messages"

Batches = Callable[[], Iterable[list[DialogueRecord]]]


@dataclass
class Released:
    """The version a new one is compared with in its changelog: its statistics and recipe text."""

    version: str
    stats: dict[str, Any]
    recipe_text: str


@dataclass
class ChatRows:
    """The chat examples of each accepted dialogue, and the split of the ``messages`` config they
    go to (None: the dialogue's speakers are in different splits, so it is in none). Asked once
    per record to count the rows (shard names need the total), and built again when written."""

    rows: Callable[[DialogueRecord], list[ChatExample]]
    split: Callable[[DialogueRecord], str | None] = lambda record: "train"
    splits: tuple[str, ...] = ("train",)
    # the version has a messages config, its splits declared even when no dialogue was accepted
    declared: bool = True

    def file(self, split: str) -> str:
        return chat_file(split, self.splits)


def persona_split(persona_id: str, test: float, seed: int) -> str:
    """A persona's split for good: a seeded hash of its id, ``test`` of them in test."""
    draw = int(hashlib.sha256(f"{seed}:{persona_id}".encode()).hexdigest()[:12], 16) / 16**12
    return "test" if draw < test else "train"


def shared_split(record: DialogueRecord, test: float, seed: int) -> str | None:
    """The split every speaker of the dialogue is in, or None when they are in different ones."""
    found = {persona_split(persona.id, test, seed) for persona in record.speakers}
    return found.pop() if len(found) == 1 else None


def review_draws(accepted: int) -> dict[str, int]:
    """The dialogues a reviewer reads of each split: ``accepted`` accepted, half as many rejected."""
    return {"accepted": accepted, "rejected": -(-accepted // 2)}


def split_of(record: DialogueRecord) -> str:
    return "accepted" if record.accepted else "rejected"


def write_dialogues(
    writer: VersionWriter,
    batches: Batches,
    settle: Callable[[DialogueRecord], None],
    chat_rows: ChatRows,
    context: CardContext,
    prices: Prices | None = None,
) -> tuple[RunStats, list[DialogueRecord], dict[str, dict[str, str]]]:
    """The splits and the chat config into ``writer``; the statistics, the records the card shows
    and the ids of each split with their persona cells (for the review's stratified sample)."""
    counts = dict.fromkeys(SPLITS, 0)
    chat_counts = dict.fromkeys(chat_rows.splits, 0)
    left_out = 0
    for batch in batches():
        for record in batch:
            settle(record)
            counts[split_of(record)] += 1
            rows = len(chat_rows.rows(record)) if record.accepted else 0
            chat_split = chat_rows.split(record) if rows else None
            if chat_split is not None:
                chat_counts[chat_split] += rows
            left_out += bool(rows) and chat_split is None
    context.chat_splits, context.chat_left_out = chat_counts, left_out
    splits = {split: writer.split(split, counts[split], DialogueRecord) for split in SPLITS}
    chats = {
        split: writer.split(chat_rows.file(split), chat_counts[split], ChatExample, declared=chat_rows.declared)
        for split in chat_rows.splits
    }
    accumulator = StatsAccumulator(prices, context.uncertain_band)
    shown = {"accepted": context.samples, "rejected": max(1, context.samples // 2) if context.samples else 0}
    samples: dict[str, list[DialogueRecord]] = {split: [] for split in SPLITS}
    ids: dict[str, dict[str, str]] = {split: {} for split in SPLITS}
    for batch in batches():
        for record in batch:
            settle(record)
        accumulator.add(batch)
        for record in batch:
            split = split_of(record)
            splits[split].add(record)
            chat_split = chat_rows.split(record) if record.accepted else None
            if chat_split is not None:
                for row in chat_rows.rows(record):
                    chats[chat_split].add(row)
            ids[split][record.id] = dialogue_cell(record)
            samples[split] = sorted([*samples[split], record], key=lambda r: r.id)[: shown[split]]
    writer.close_splits()
    failpoint("writing")
    return accumulator.result(), [*samples["accepted"], *samples["rejected"]], ids


def dialogue_card(
    writer: VersionWriter,
    context: CardContext,
    stats: RunStats,
    samples: list[DialogueRecord],
    manifest: dict[str, Any],
    released: Released | None,
    recipe_text: str,
) -> str:
    """The card, and the manifest's splits, statistics and changelog."""
    splits = [split for split in SPLITS if writer.files[split]]
    manifest["splits"] = writer.split_listing(list(SPLITS))
    manifest["stats"] = stats.as_dict()
    main_info = writer.dataset_info(list(SPLITS))
    info: dict[str, Any] | list[dict[str, Any]] = main_info
    chat_files = {
        split: file for split in context.chat_splits if writer.files[file := chat_file(split, context.chat_splits)]
    }
    if chat_files:
        manifest["configs"] = writer.split_listing(list(chat_files.values()))
        context.chat_config = True
        chat_info = writer.dataset_info(list(chat_files.values()), config_name=CHAT_CONFIG)
        named = {file: split for split, file in chat_files.items()}
        chat_info["splits"] = [{**split, "name": named[split["name"]]} for split in chat_info["splits"]]
        info = [main_info, chat_info]
    context.charts = write_charts(writer.staging, stats, context.rounds, context.coverage)
    manifest["charts"] = [chart.path for chart in context.charts]
    if released is not None:
        context.changelog = manifest["changelog"] = changelog(
            released.version, released.stats, released.recipe_text, manifest["stats"], recipe_text
        )
    return str(render_card(context, stats, samples, splits=splits, info=info))


def released_of(folder: DatasetFolder) -> Released | None:
    """What the changelog compares with: the last released version, or the latest before any release."""
    release = folder.current_release() or folder.current_version()
    if release is None:
        return None
    recipe_text = folder.read_bytes(folder.resolve(release), "recipe.yaml").decode("utf-8")
    manifest = folder.read_manifest(release)
    return Released(release, manifest.stats if manifest else {}, recipe_text)
