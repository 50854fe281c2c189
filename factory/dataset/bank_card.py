"""A persona bank's coverage (counts per cell) and its dataset card.

Coverage is computed with polars from the very rows written to the bank's parquet files; the
card's YAML metadata and its tables are both rendered from it, so they cannot disagree with the data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl
from huggingface_hub import DatasetCard

from factory.dataset.card import factory_card_data, use_section
from factory.dataset.card_sections import markdown_table
from factory.records import SCHEMA_VERSION, Dropped, PersonaProfile
from factory.traits import BANDS_TEXT, BIG_FIVE_BANDS, BIG_FIVE_TRAITS, MBTI_TYPES

# What each source's personas come from, for the licence section.
SOURCE_ATTRIBUTION = {
    "synthetic_persona_chat": (
        "cc-by-4.0",
        "Seed statements from [Synthetic-Persona-Chat](https://github.com/google-research-datasets/Synthetic-Persona-Chat) "
        "(Jandaghi et al., 2023, arXiv:2312.10007), CC BY 4.0.",
    ),
    "usp": (
        "mit",
        "Implicit profiles inferred from conversations of [USP](https://github.com/wangkevin02/USP) "
        "(Wang et al., 2025, arXiv:2502.18968), MIT licence, copyright (c) 2025 Kuang Wang.",
    ),
    "ipip": ("cc0-1.0", "Big Five statements from IPIP-NEO-120 items ([IPIP](https://ipip.ori.org/), public domain)."),
}
LICENCE_ORDER = ("cc-by-4.0", "mit", "cc0-1.0")  # the first one a bank draws on is its licence


@dataclass
class Coverage:
    personas: int
    by_kind: dict[str, int] = field(default_factory=dict)
    by_source: dict[str, int] = field(default_factory=dict)
    by_mbti: dict[str, int] = field(default_factory=dict)
    by_big_five: dict[str, dict[str, int]] = field(default_factory=dict)
    by_gender: dict[str, int] = field(default_factory=dict)
    with_topics: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _counts(frame: pl.DataFrame, column: str) -> dict[str, int]:
    if frame.is_empty():
        return {}
    counted = frame.filter(pl.col(column).is_not_null()).group_by(column).len().sort(column)
    return {str(row[column]): int(row["len"]) for row in counted.iter_rows(named=True)}


def compute_coverage(personas: list[PersonaProfile] | list[dict[str, Any]]) -> Coverage:
    """Counts per cell of the personas (pydantic records or the rows read back from parquet)."""
    rows = [p.model_dump(mode="json") if isinstance(p, PersonaProfile) else p for p in personas]
    frame = pl.DataFrame(
        {
            "kind": [row["kind"] for row in rows],
            "source": [(row.get("source") or "").split(" ")[0] or None for row in rows],
            "mbti": [row.get("mbti") for row in rows],
            "gender": [(row.get("demographics") or {}).get("gender") for row in rows],
            "topics": [len(row.get("topics") or []) for row in rows],
            **{trait: [((row.get("big_five") or {}) or {}).get(trait) for row in rows] for trait in BIG_FIVE_TRAITS},
        },
        schema={
            "kind": pl.String,
            "source": pl.String,
            "mbti": pl.String,
            "gender": pl.String,
            "topics": pl.Int64,
            **{trait: pl.Int64 for trait in BIG_FIVE_TRAITS},
        },
    )
    coverage = Coverage(
        personas=len(rows),
        by_kind=_counts(frame, "kind"),
        by_source=_counts(frame, "source"),
        by_gender=_counts(frame, "gender"),
    )
    coverage.with_topics = int((frame["topics"] > 0).sum()) if rows else 0
    mbti = _counts(frame, "mbti")
    if mbti:
        coverage.by_mbti = {code: mbti.get(code, 0) for code in MBTI_TYPES}
    banded = frame.select(
        [
            pl.when(pl.col(t) <= 2)
            .then(pl.lit("low"))
            .when(pl.col(t) <= 5)
            .then(pl.lit("mid"))
            .when(pl.col(t).is_not_null())
            .then(pl.lit("high"))
            .otherwise(None)
            .alias(t)
            for t in BIG_FIVE_TRAITS
        ]
    )
    if rows and banded[BIG_FIVE_TRAITS[0]].is_not_null().any():
        coverage.by_big_five = {
            trait: {band: int((banded[trait] == band).sum()) for band in BIG_FIVE_BANDS} for trait in BIG_FIVE_TRAITS
        }
    return coverage


@dataclass
class BankCardContext:
    name: str
    description: str
    version: str
    previous_version: str | None
    recipe_hash: str
    model: str | None
    embedder: str | None
    license: str
    pretty_name: str | None
    attributions: list[str]
    dropped: list[Dropped]
    reports: dict[str, Any]  # per-source reports: implicit agreement, expansion statistics
    load_as: str = "PATH"  # the bank folder as the build named it (the Hub repo once pushed)


def coverage_tables(coverage: Coverage) -> list[str]:
    body = [
        "## Coverage",
        "",
        f"{coverage.personas} personas.",
        "",
        "### By kind",
        "",
        markdown_table(["kind", "personas"], [[k, n] for k, n in coverage.by_kind.items()]),
        "",
        "### By source",
        "",
        markdown_table(["source", "personas"], [[k, n] for k, n in coverage.by_source.items()]),
        "",
    ]
    if coverage.by_mbti:
        body += [
            "### By MBTI type",
            "",
            markdown_table(["type", "personas"], [[k, n] for k, n in coverage.by_mbti.items()]),
            "",
        ]
    if coverage.by_big_five:
        body += [
            f"### By Big Five band ({BANDS_TEXT})",
            "",
            markdown_table(
                ["trait", *BIG_FIVE_BANDS],
                [[t, *(bands[b] for b in BIG_FIVE_BANDS)] for t, bands in coverage.by_big_five.items()],
            ),
            "",
        ]
    if coverage.by_gender:
        body += [
            "### By gender",
            "",
            markdown_table(["gender", "personas"], [[k, n] for k, n in coverage.by_gender.items()]),
            "",
        ]
    if coverage.with_topics:
        body += [f"{coverage.with_topics} personas carry topics (the query each statement answers).", ""]
    return body


def _reports(reports: dict[str, Any]) -> list[str]:
    body: list[str] = []
    agreement = reports.get("implicit_agreement")
    if agreement:
        body += [
            "## Implicit profiles against their references",
            "",
            "The extractor saw each conversation's turns only; the profile written in the conversation's "
            "system message is the reference. Extracted and reference profiles are embedded "
            f"({agreement['embedder']}) and compared by cosine similarity: `own` is the mean similarity to "
            "the profile's own reference, `others` the mean to the other conversations' references, and "
            "`top-1` the share of profiles whose own reference is the most similar (chance "
            f"{agreement['chance_top1']:.2f}). Objective facts and subjective traits are compared separately.",
            "",
            markdown_table(
                ["part", "own", "others", "top-1"],
                [
                    [
                        "objective facts",
                        f"{agreement['objective_own']:.3f}",
                        f"{agreement['objective_others']:.3f}",
                        f"{agreement['objective_top1']:.2f}",
                    ],
                    [
                        "subjective traits",
                        f"{agreement['subjective_own']:.3f}",
                        f"{agreement['subjective_others']:.3f}",
                        f"{agreement['subjective_top1']:.2f}",
                    ],
                ],
            ),
            "",
            f"Conversations with a reference: {agreement['conversations']}.",
            "",
        ]
    expansion = reports.get("spc_expansion")
    if expansion:
        rows = [[key.replace("_", " "), value] for key, value in expansion.items() if key != "failures"]
        body += ["## Persona expansion", "", markdown_table(["step", "count"], rows), ""]
    return body


def render_bank_card(context: BankCardContext, coverage: Coverage, info: dict[str, Any]) -> DatasetCard:
    reasons: dict[str, int] = {}
    for item in context.dropped:
        reasons[item.source] = reasons.get(item.source, 0) + 1
    data = factory_card_data(
        license=context.license,
        rows=coverage.personas,
        tag="persona-bank",
        pretty_name=context.pretty_name or f"persona-factory bank: {context.name}",
        splits=["personas"],
        info=info,
        persona_factory={
            "kind": "persona_bank",
            "version": context.version,
            "previous_version": context.previous_version,
            "recipe": context.name,
            "recipe_hash": context.recipe_hash,
            "schema_version": SCHEMA_VERSION,
            "model": context.model,
            "embedder": context.embedder,
            "coverage": coverage.as_dict(),
            "dropped": reasons,
            **{key: value for key, value in context.reports.items() if value},
        },
    )
    body = [*_bank_header(context), *coverage_tables(coverage), *_dropped(context.dropped), *_reports(context.reports)]
    body += _bank_use(context)
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))


def _bank_header(context: BankCardContext) -> list[str]:
    previous = f" (previous: {context.previous_version})" if context.previous_version else " (first version)"
    model = f" with the model `{context.model}`" if context.model else ""
    return [
        f"# {context.pretty_name or f'persona-factory bank: {context.name}'}",
        "",
        f"Version **{context.version}**{previous} of a persona bank made by the recipe `{context.name}` "
        f"(hash `{context.recipe_hash}`){model}.",
        "",
        context.description.strip(),
        "",
    ]


def _dropped(dropped: list[Dropped]) -> list[str]:
    if not dropped:
        return []
    return [
        "## Dropped",
        "",
        f"{len(dropped)} persona(s) could not be made; the manifest lists every reason.",
        "",
        markdown_table(
            ["source", "item", "reason"], [[d.source, d.item, d.reason.replace("|", "/")[:200]] for d in dropped[:20]]
        ),
        "",
    ]


def _bank_use(context: BankCardContext) -> list[str]:
    return [
        "## Use as a seed",
        "",
        use_section(context.load_as, bank_version=context.version),
        "",
        f"Records follow the `persona_profile` JSON Schema {SCHEMA_VERSION} of persona-factory.",
        "",
        "## Source data and licence",
        "",
        *[f"- {line}" for line in context.attributions],
        "",
        "## Limitations",
        "",
        "- Personas written or inferred by a model are synthetic; they describe no real person, and a small "
        "model (such as the embedded SmolLM2-135M) writes weak ones.",
        "",
    ]
