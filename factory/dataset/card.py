"""The dataset card: Hub metadata that ``datasets`` reads (configs, splits), and a body people read."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import DatasetCard, DatasetCardData

from factory.dataset.card_sections import (
    ChatSplits,
    changelog_section,
    counts_section,
    coverage_section,
    critic_report_section,
    critics_section,
    modes_section,
    persona_sections,
    reference_section,
    rounds_section,
    samples_section,
    tokens_section,
)
from factory.dataset.charts import Chart, charts_section
from factory.dataset.stats import RunStats
from factory.records import SCHEMA_VERSION, DialogueRecord

ATTRIBUTION = """\
Statement personas and the generator's few-shot conversations come from
[Synthetic-Persona-Chat](https://github.com/google-research-datasets/Synthetic-Persona-Chat)
(Jandaghi et al., 2023, arXiv:2312.10007), licensed CC BY 4.0. Big Five personas are described with
items of the [IPIP-NEO-120](https://ipip.ori.org/) (public domain)."""

LIMITATIONS = """\
- Every dialogue is synthetic: written by the model named above, judged by critics that are
  themselves models. Critic verdicts are evidence, not ground truth.
- A small model (such as the embedded SmolLM2-135M) writes weak dialogues and weak verdicts; use
  it to try a recipe, and a strong endpoint to make data worth training on.
- Personas are sampled, not real people; any resemblance to a real person is accidental."""


def size_category(count: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if count < bound:
            return label
    return "1M<n<10M"


def dataset_info(
    root: Path, files: dict[str, list[str]], rows: dict[str, int], config_name: str = "default"
) -> dict[str, Any]:
    """Rows and bytes per split of this version, for the card's ``dataset_info``.

    Besides telling readers the size, this keys ``datasets``' cache: the cache key of a local
    folder is made from its card, not from its files, so a card that did not change with the data
    would have ``load_dataset`` return an earlier version's rows from the cache.
    """
    import pyarrow.parquet as pq

    splits = []
    for split, names in files.items():
        if not names:
            continue
        uncompressed = 0
        for name in names:
            metadata = pq.read_metadata(root / name)
            uncompressed += sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
        splits.append({"name": split, "num_bytes": uncompressed, "num_examples": rows[split]})
    return {
        "config_name": config_name,
        "splits": splits,
        "download_size": sum((root / name).stat().st_size for names in files.values() for name in names),
        "dataset_size": sum(split["num_bytes"] for split in splits),
    }


@dataclass
class CardContext:
    recipe_name: str
    description: str
    version: str
    previous_version: str | None
    recipe_hash: str
    model: str
    endpoint_kind: str
    license: str
    pretty_name: str | None
    samples: int
    rounds: list[dict[str, Any]] = field(default_factory=list)
    critic_report: dict[str, Any] | None = None
    changelog: dict[str, Any] | None = None
    persona_banks: list[dict[str, Any]] = field(default_factory=list)
    chat_config: bool = False  # accepted dialogues also as chat messages, the `messages` config
    chat_splits: dict[str, int] = field(default_factory=dict)  # its rows per split (train, and test when split)
    chat_left_out: int = 0  # accepted dialogues in no split: their speakers are in different ones
    chat_test_share: float | None = None  # output.splits.test, when the config is persona-disjoint
    critics: list[str] = field(default_factory=list)  # every critic the recipe enabled, in cascade order
    uncertain_band: tuple[float, float] | None = None  # the learned critic's, when it decides for the judges
    reference: dict[str, Any] = field(default_factory=dict)  # the accepted split against real conversations
    load_as: str = "PATH"  # what `load_dataset` is given: the folder as the run named it, the Hub repo once pushed
    coverage: list[dict[str, Any]] = field(default_factory=list)  # quota cells after filtering
    charts: list[Chart] = field(default_factory=list)  # PNG files of the version, linked by relative path


def factory_card_data(
    *,
    license: str,
    rows: int,
    tag: str,
    pretty_name: str,
    splits: list[str],
    info: dict[str, Any] | list[dict[str, Any]],
    persona_factory: dict[str, Any],
    chat_config: bool = False,
    chat_splits: list[str] | None = None,
) -> DatasetCardData:
    """The Hub metadata every persona-factory card has; ``persona_factory`` holds our own."""
    return DatasetCardData(
        dataset_info=info,
        license=license,
        language=["en"],
        task_categories=["text-generation"],
        size_categories=[size_category(rows)],
        tags=["synthetic", "persona", tag, "persona-factory", *(["distilabel"] if tag == "dialogue" else [])],
        pretty_name=pretty_name,
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": split, "path": f"data/{split}-*.parquet"} for split in splits],
            },
            *([{"config_name": "messages", "data_files": chat_data_files(chat_splits)}] if chat_config else []),
        ],
        persona_factory=persona_factory,
    )


def chat_file(split: str, splits: Iterable[str]) -> str:
    """The shard prefix of a split of the ``messages`` config: ``messages`` when it has one split,
    ``messages-test`` and so on otherwise."""
    return "messages" if list(splits) == ["train"] else f"messages-{split}"


def chat_data_files(splits: list[str] | None) -> list[dict[str, str]]:
    """The ``messages`` config's files: one train split, or each split's own shards."""
    splits = splits or ["train"]
    return [{"split": split, "path": f"data/{chat_file(split, splits)}-*.parquet"} for split in splits]


def card_data(
    context: CardContext, stats: RunStats, splits: list[str], info: dict[str, Any] | list[dict[str, Any]]
) -> DatasetCardData:
    return factory_card_data(
        chat_config=context.chat_config,
        chat_splits=list(context.chat_splits),
        license=context.license,
        rows=stats.generated,
        tag="dialogue",
        pretty_name=context.pretty_name or f"persona-factory: {context.recipe_name}",
        splits=splits,
        info=info,
        persona_factory={
            "version": context.version,
            "previous_version": context.previous_version,
            "recipe": context.recipe_name,
            "recipe_hash": context.recipe_hash,
            "schema_version": SCHEMA_VERSION,
            "model": context.model,
            "endpoint_kind": context.endpoint_kind,
            "stats": stats.as_dict(),
            "rounds": context.rounds,
            "persona_banks": context.persona_banks,
            "changelog": context.changelog,
            "coverage": context.coverage,
        },
    )


USE_START, USE_END = "<!-- use:start -->", "<!-- use:end -->"


def published_folder_name(out: str | Path) -> str:
    """The folder as a card may name it: as the user typed it when relative, its name when
    absolute (an absolute path names this machine's layout, and means nothing elsewhere)."""
    path = Path(out)
    return path.name if path.is_absolute() else str(path)


def use_section(load_as: str, *, bank_version: str | None = None, on_hub: bool = False) -> str:
    """How to load the data (a dialogue dataset) or seed a run from it (a persona bank, at its
    version): the folder as the run named it, rewritten with the repository's id on push."""
    if bank_version is None:
        lines = ["```python", "import datasets", f"ds = datasets.load_dataset({load_as!r})", "```"]
    else:
        where = f"repo: {load_as}" if on_hub else f"path: {load_as}"
        lines = ["```yaml", "personas:", f"  - {{source: bank, {where}, revision: {bank_version}}}", "```"]
    return "\n".join([USE_START, *lines, USE_END])


def with_use_section(card: str, repo: str) -> str:
    """The card with its Use section naming the Hub repository ``repo``."""
    if USE_START not in card or USE_END not in card:
        return card
    metadata = yaml.safe_load(card.split("---\n", 2)[1]) or {}
    ours = metadata.get("persona_factory") or {}
    version = ours.get("version") if ours.get("kind") == "persona_bank" else None
    section = use_section(repo, bank_version=version, on_hub=True)
    return card[: card.index(USE_START)] + section + card[card.index(USE_END) + len(USE_END) :]


def render_card(
    context: CardContext,
    stats: RunStats,
    records: list[DialogueRecord],
    splits: list[str],
    info: dict[str, Any] | list[dict[str, Any]],
) -> DatasetCard:
    body = [
        *_header(context),
        *counts_section(stats),
        *modes_section(
            stats,
            context.chat_config,
            ChatSplits(context.chat_splits, context.chat_left_out, context.chat_test_share),
        ),
        *critics_section(stats, context.critics),
        *reference_section(context.reference),
        *tokens_section(stats),
        *persona_sections(stats),
        *coverage_section(context.coverage),
        *charts_section(context.charts),
        *rounds_section(context.rounds),
        *changelog_section(context.changelog),
        *critic_report_section(context.critic_report),
        *samples_section(records, context.samples),
        *_use(context, splits),
    ]
    content = f"---\n{card_data(context, stats, splits, info).to_yaml()}\n---\n\n" + "\n".join(body)
    return DatasetCard(content)


def _header(context: CardContext) -> list[str]:
    previous = f" (previous: {context.previous_version})" if context.previous_version else " (first version)"
    return [
        f"# {context.pretty_name or f'persona-factory: {context.recipe_name}'}",
        "",
        f"Version **{context.version}**{previous}, made by the recipe `{context.recipe_name}` (hash "
        f"`{context.recipe_hash}`) with the model `{context.model}` ({context.endpoint_kind} endpoint).",
        "",
        context.description.strip(),
        "",
    ]


# What the recipe's seed fixes, and what it cannot: a server that decodes several requests in one
# batch samples each differently with different company, so only the reply cache repeats replies.
REPRODUCIBLE = (
    "What the seed reproduces: the personas drawn, the casts and scenarios, the order of turns and every prompt. "
    "The replies are the endpoint's: sent with the same seed, they differ between fresh runs when the server "
    "decodes requests in batches (llama.cpp, vLLM), since a request's neighbours in the batch change its "
    "arithmetic. A rerun on the same reply cache repeats every reply, so the same dialogues and verdicts."
)


def _use(context: CardContext, splits: list[str]) -> list[str]:
    return [
        "## Use",
        "",
        use_section(context.load_as),
        "",
        f"Splits: {', '.join(f'`{split}`' for split in splits)} (a split with no rows is left out).",
        "",
        f"Records follow the `dialogue_record` JSON Schema {SCHEMA_VERSION} of persona-factory.",
        "",
        "## Reproduce with distilabel",
        "",
        "`pipeline.yaml` is this version's recipe as a [distilabel](https://distilabel.argilla.io) pipeline: one "
        "step that runs it on persona-factory's engine (same seed, same critics) and yields every dialogue with its "
        "verdicts. With `pip install persona-factory`:",
        "",
        "```",
        "distilabel pipeline info --config pipeline.yaml",
        "distilabel pipeline run --config pipeline.yaml "
        "--param generate_dialogues.base_url=http://host:8000/v1 --param generate_dialogues.model=MODEL",
        "```",
        "",
        "Without `base_url` the embedded model runs; `judge_base_url` and `judge_model` set the critics' judge.",
        "",
        REPRODUCIBLE,
        "",
        "## Source data and licence",
        "",
        ATTRIBUTION,
        "",
        "## Limitations",
        "",
        LIMITATIONS,
        "",
    ]
