"""Statistics of a dataset version, computed with polars from the records themselves.

The card's tables and its YAML metadata are both rendered from :class:`RunStats`, so the numbers a
reader sees are the numbers of the data.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import polars as pl

from factory.personas.big_five import coarse_band
from factory.records import DialogueRecord


@dataclass
class CriticStats:
    critic: str
    judged: int
    passed: int
    tokens: int

    @property
    def pass_rate(self) -> float:
        return self.passed / self.judged if self.judged else 0.0


@dataclass
class RunStats:
    generated: int
    accepted: int
    rejected: int
    generation_tokens: int
    critic_tokens: int
    critics: list[CriticStats] = field(default_factory=list)
    rejected_by: dict[str, int] = field(default_factory=dict)
    speakers_by_kind: dict[str, int] = field(default_factory=dict)
    # per persona cell (kind=..., mbti=..., extraversion=high, ...): speakers, and how many of them
    # are in accepted dialogues; a critic that quietly removes a kind of speaker shows up here
    cells: list[dict] = field(default_factory=list)
    mean_turns_accepted: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.generation_tokens + self.critic_tokens

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.generated if self.generated else 0.0

    @property
    def tokens_per_accepted(self) -> float | None:
        return self.total_tokens / self.accepted if self.accepted else None

    def as_dict(self) -> dict:
        data = asdict(self)
        data["critics"] = [
            {**asdict(critic), "pass_rate": round(critic.pass_rate, 4)} for critic in self.critics
        ]
        data["acceptance_rate"] = round(self.acceptance_rate, 4)
        data["total_tokens"] = self.total_tokens
        data["tokens_per_accepted"] = round(self.tokens_per_accepted, 1) if self.tokens_per_accepted is not None else None
        return data


def _verdict_frame(records: list[DialogueRecord]) -> pl.DataFrame:
    rows = [
        {"dialogue": record.id, "critic": verdict.critic, "passed": verdict.passed, "tokens": verdict.tokens}
        for record in records
        for verdict in record.verdicts
    ]
    schema = {"dialogue": pl.String, "critic": pl.String, "passed": pl.Boolean, "tokens": pl.Int64}
    return pl.DataFrame(rows, schema=schema)


def cell_pass_rates(records: list[DialogueRecord]) -> list[dict]:
    rows = []
    for record in records:
        for persona in record.speakers:
            cells = [("kind", persona.kind)]
            if persona.mbti:
                cells.append(("mbti", persona.mbti))
            if persona.big_five:
                cells.extend((trait, coarse_band(level)) for trait, level in persona.big_five.model_dump().items())
            rows.extend({"dimension": d, "cell": c, "accepted": record.accepted} for d, c in cells)
    if not rows:
        return []
    frame = pl.DataFrame(rows, schema={"dimension": pl.String, "cell": pl.String, "accepted": pl.Boolean})
    table = (
        frame.group_by("dimension", "cell")
        .agg(pl.len().alias("speakers"), pl.col("accepted").sum().alias("accepted"))
        .sort("dimension", "cell")
    )
    return [
        {**row, "accepted": int(row["accepted"]), "pass_rate": round(row["accepted"] / row["speakers"], 4)}
        for row in table.to_dicts()
    ]


def compute_stats(records: list[DialogueRecord]) -> RunStats:
    verdicts = _verdict_frame(records)
    per_critic = (
        verdicts.group_by("critic", maintain_order=True)
        .agg(pl.len().alias("judged"), pl.col("passed").sum().alias("passed"), pl.col("tokens").sum().alias("tokens"))
        .to_dicts()
    )
    rejected_by = (
        verdicts.filter(~pl.col("passed")).group_by("critic", maintain_order=True).agg(pl.col("dialogue").n_unique().alias("n")).to_dicts()
    )
    kinds = pl.DataFrame({"kind": [p.kind for r in records for p in r.speakers]}, schema={"kind": pl.String})
    accepted = [record for record in records if record.accepted]
    return RunStats(
        generated=len(records),
        accepted=len(accepted),
        rejected=len(records) - len(accepted),
        generation_tokens=sum(record.generation.usage.total_tokens for record in records),
        critic_tokens=int(verdicts["tokens"].sum()) if verdicts.height else 0,
        critics=[CriticStats(row["critic"], row["judged"], int(row["passed"]), int(row["tokens"])) for row in per_critic],
        rejected_by={row["critic"]: row["n"] for row in rejected_by},
        speakers_by_kind={row["kind"]: row["len"] for row in kinds.group_by("kind").len().sort("kind").to_dicts()},
        mean_turns_accepted=round(sum(len(r.turns) for r in accepted) / len(accepted), 2) if accepted else 0.0,
        cells=cell_pass_rates(records),
    )
