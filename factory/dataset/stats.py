"""Statistics of a dataset version, computed with polars from the records themselves, a batch at a time.

The card's tables and its YAML metadata are both rendered from :class:`RunStats`, so the numbers a
reader sees are the numbers of the data.
"""

from __future__ import annotations

import heapq
import random
from dataclasses import asdict, dataclass, field
from typing import Any

import polars as pl

from factory.llm.pricing import Prices, add_cost
from factory.recipes.critics import critic_names, needs_llm
from factory.records import DialogueRecord
from factory.traits import coarse_band

TURN_SAMPLE = 1000
LEAST_SURE = 200  # at most this many least-sure dialogues are offered to reviewers
PER_DIALOGUE_LLM = frozenset(name for name in critic_names("dialogue") if needs_llm(name))


@dataclass
class CriticStats:
    critic: str
    judged: int
    passed: int
    tokens: int
    judges: list[str] = field(default_factory=list)  # the models that judged (a jury's jurors each)
    prompt_tokens: int = 0
    cost: float | None = None  # USD; unknown without a price for its judges

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
    cells: list[dict[str, Any]] = field(default_factory=list)
    mean_turns_accepted: float = 0.0
    # per generation mode (spc, role_play): dialogues, accepted, acceptance rate
    modes: list[dict[str, Any]] = field(default_factory=list)
    # role-play: why the dialogues ended (max_turns, sentiment, goal)
    ended_by: dict[str, int] = field(default_factory=dict)
    # turns whose line cleaning changed, by change (label, narration, trimmed, ...), and the turns in all
    cleaned_turns: dict[str, int] = field(default_factory=dict)
    turns: int = 0
    generator_models: list[str] = field(default_factory=list)
    generation_prompt_tokens: int = 0
    generation_cost: float | None = None  # USD; unknown without the generator's price
    # the learned critic's uncertain band: dialogues in it, above it, audited above it, agreed on audit,
    # and the LLM critics' calls its sure scores saved
    band: dict[str, Any] = field(default_factory=dict)
    # a seeded sample of the accepted turns' texts, to measure against real conversations (not published)
    turn_sample: list[str] = field(default_factory=list, repr=False)
    # the dialogues the learned critic is least sure of (probability nearest 0.5), least sure first
    least_sure: list[str] = field(default_factory=list, repr=False)

    @property
    def total_cost(self) -> float | None:
        total = self.generation_cost
        for critic in self.critics:
            total = add_cost(total, critic.cost)
        return total

    @property
    def cost_per_accepted(self) -> float | None:
        total = self.total_cost
        return total / self.accepted if total is not None and self.accepted else None

    def judged_by_generator(self) -> dict[str, list[str]]:
        """Critics whose judges include a model that also wrote the dialogues, with those models."""
        own = set(self.generator_models)
        found = {critic.critic: sorted(own & set(critic.judges)) for critic in self.critics}
        return {critic: models for critic, models in found.items() if models}

    @property
    def total_tokens(self) -> int:
        return self.generation_tokens + self.critic_tokens

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.generated if self.generated else 0.0

    @property
    def tokens_per_accepted(self) -> float | None:
        return self.total_tokens / self.accepted if self.accepted else None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("turn_sample")
        data.pop("least_sure")
        data["critics"] = [
            {**asdict(critic), "pass_rate": round(critic.pass_rate, 4), "cost": _rounded(critic.cost)}
            for critic in self.critics
        ]
        data["generation_cost"] = _rounded(self.generation_cost)
        data["acceptance_rate"] = round(self.acceptance_rate, 4)
        data["total_tokens"] = self.total_tokens
        data["tokens_per_accepted"] = (
            round(self.tokens_per_accepted, 1) if self.tokens_per_accepted is not None else None
        )
        data["total_cost"] = _rounded(self.total_cost)
        data["cost_per_accepted"] = _rounded(self.cost_per_accepted)
        return data


def _rounded(cost: float | None) -> float | None:
    """USD to a millionth of a dollar: enough for a token at any price listed today."""
    return None if cost is None else round(cost, 6)


def _verdict_frame(records: list[DialogueRecord]) -> pl.DataFrame:
    rows = [
        {"dialogue": record.id, "critic": verdict.critic, "passed": verdict.passed, "tokens": verdict.tokens}
        for record in records
        for verdict in record.verdicts
    ]
    schema = {"dialogue": pl.String, "critic": pl.String, "passed": pl.Boolean, "tokens": pl.Int64}
    return pl.DataFrame(rows, schema=schema)


def _cell_frame(records: list[DialogueRecord]) -> pl.DataFrame:
    rows: list[dict[str, Any]] = []
    for record in records:
        for persona in record.speakers:
            cells: list[tuple[str, str]] = [("kind", persona.kind)]
            if persona.mbti:
                cells.append(("mbti", persona.mbti))
            if persona.big_five:
                cells.extend((trait, coarse_band(level)) for trait, level in persona.big_five.model_dump().items())
            rows.extend({"dimension": d, "cell": c, "accepted": record.accepted} for d, c in cells)
    return pl.DataFrame(rows, schema={"dimension": pl.String, "cell": pl.String, "accepted": pl.Boolean})


class StatsAccumulator:
    """The statistics of a version, gathered a batch of records at a time: polars groups each
    batch, and only the per-group sums are kept, so a run of any size costs the same memory."""

    def __init__(self, prices: Prices | None = None, band: tuple[float, float] | None = None) -> None:
        self.prices = prices or Prices()
        self.band = band
        self.band_counts = {"in_band": 0, "above": 0, "audited": 0, "agreed": 0, "calls_saved": 0}
        self.turn_sample: list[str] = []
        self.unsure: list[tuple[float, str]] = []  # a heap of (-distance from 0.5, id): the least sure kept
        self.turns_seen = 0
        self._sampling = random.Random(0)
        self.generated = self.accepted = self.generation_tokens = self.accepted_turns = 0
        self.generation_prompt_tokens = 0
        self.critics: dict[str, list[int]] = {}  # critic -> [judged, passed, tokens, prompt tokens], first-seen order
        # USD, None once an unpriced token was spent; nothing is priced without a price at all
        self.generation_cost: float | None = 0.0 if self.prices.priced else None
        self.critic_costs: dict[str, float | None] = {}
        self.rejected_by: dict[str, int] = {}
        self.kinds: dict[str, int] = {}
        self.cells: dict[tuple[str, str], list[int]] = {}  # (dimension, cell) -> [speakers, accepted]
        self.modes: dict[str, list[int]] = {}  # mode -> [dialogues, accepted]
        self.ended_by: dict[str, int] = {}
        self.cleaned: dict[str, int] = {}
        self.turns = 0
        self.judges: dict[str, set[str]] = {}
        self.generator_models: set[str] = set()

    def add(self, records: list[DialogueRecord]) -> None:
        if not records:
            return
        accepted = [record for record in records if record.accepted]
        self.generated += len(records)
        self.accepted += len(accepted)
        self.generation_tokens += sum(record.generation.usage.total_tokens for record in records)
        self.generation_prompt_tokens += sum(record.generation.usage.prompt_tokens for record in records)
        self.accepted_turns += sum(len(record.turns) for record in accepted)
        verdicts = _verdict_frame(records)
        for row in (
            verdicts.group_by("critic", maintain_order=True)
            .agg(
                pl.len().alias("judged"), pl.col("passed").sum().alias("passed"), pl.col("tokens").sum().alias("tokens")
            )
            .iter_rows(named=True)
        ):
            totals = self.critics.setdefault(row["critic"], [0, 0, 0, 0])
            totals[0] += row["judged"]
            totals[1] += int(row["passed"])
            totals[2] += int(row["tokens"])
        failed = (
            verdicts.filter(~pl.col("passed"))
            .group_by("critic", maintain_order=True)
            .agg(pl.col("dialogue").n_unique())
        )
        for critic, dialogues in failed.iter_rows():
            self.rejected_by[critic] = self.rejected_by.get(critic, 0) + dialogues
        for record in records:
            self.generator_models.add(record.generation.model)
            if self.prices.priced:
                self.generation_cost = add_cost(self.generation_cost, self.prices.generation(record))
            for verdict in record.verdicts:
                self.critics[verdict.critic][3] += verdict.prompt_tokens
                if self.prices.priced:
                    so_far = self.critic_costs.get(verdict.critic, 0.0)
                    self.critic_costs[verdict.critic] = add_cost(so_far, self.prices.verdict(verdict))
                judges = [juror.judge for juror in verdict.jurors] or ([verdict.judge] if verdict.judge else [])
                self.judges.setdefault(verdict.critic, set()).update(judges)
            totals = self.modes.setdefault(record.generation.mode, [0, 0])
            totals[0] += 1
            totals[1] += record.accepted
            if record.generation.ended_by:
                self.ended_by[record.generation.ended_by] = self.ended_by.get(record.generation.ended_by, 0) + 1
            self.turns += len(record.turns)
            for change in (change for turn in record.turns for change in turn.cleaned):
                self.cleaned[change] = self.cleaned.get(change, 0) + 1
        self._for_the_learned_critic(records, accepted)
        for persona_kind in (persona.kind for record in records for persona in record.speakers):
            self.kinds[persona_kind] = self.kinds.get(persona_kind, 0) + 1
        cells = _cell_frame(records)
        if cells.height:
            grouped = cells.group_by("dimension", "cell").agg(pl.len().alias("speakers"), pl.col("accepted").sum())
            for dimension, cell, speakers, passed in grouped.iter_rows():
                totals = self.cells.setdefault((dimension, cell), [0, 0])
                totals[0] += speakers
                totals[1] += int(passed)

    def _for_the_learned_critic(self, records: list[DialogueRecord], accepted: list[DialogueRecord]) -> None:
        """Its band's counts, the accepted turns' sample (measured against real talk), its least sure."""
        if self.band is not None:
            self._count_band(records, self.band)
        for text in (turn.text for record in accepted for turn in record.turns):
            self._keep_sampled(text)
        for record in records:
            learned = next((v.score for v in record.verdicts if v.critic == "learned" and v.score is not None), None)
            if learned is not None:
                heapq.heappush(self.unsure, (-abs(learned - 0.5), record.id))
                if len(self.unsure) > LEAST_SURE:
                    heapq.heappop(self.unsure)

    def _keep_sampled(self, text: str) -> None:
        """Reservoir sampling: every accepted turn is as likely to be in the sample, at bounded memory."""
        self.turns_seen += 1
        if len(self.turn_sample) < TURN_SAMPLE:
            self.turn_sample.append(text)
        else:
            slot = self._sampling.randrange(self.turns_seen)
            if slot < TURN_SAMPLE:
                self.turn_sample[slot] = text

    def _count_band(self, records: list[DialogueRecord], band: tuple[float, float]) -> None:
        counts = self.band_counts
        for record in records:
            learned = next((v for v in record.verdicts if v.critic == "learned" and v.score is not None), None)
            if learned is None or learned.score is None or learned.score < band[0]:
                continue
            if learned.score <= band[1]:
                counts["in_band"] += 1
                continue
            counts["above"] += 1
            judged = [v for v in record.verdicts if v.critic in PER_DIALOGUE_LLM]
            saved = sum(1 for v in judged if v.decided_by)
            counts["calls_saved"] += saved
            if judged and not saved:  # audited: the judges were asked anyway
                counts["audited"] += 1
                counts["agreed"] += all(v.passed for v in judged)

    def result(self) -> RunStats:
        return RunStats(
            generated=self.generated,
            accepted=self.accepted,
            rejected=self.generated - self.accepted,
            generation_tokens=self.generation_tokens,
            critic_tokens=sum(totals[2] for totals in self.critics.values()),
            critics=[
                CriticStats(
                    critic,
                    totals[0],
                    totals[1],
                    totals[2],
                    sorted(self.judges.get(critic, ())),
                    prompt_tokens=totals[3],
                    cost=self.critic_costs.get(critic),
                )
                for critic, totals in self.critics.items()
            ],
            rejected_by=dict(self.rejected_by),
            band={"band": list(self.band), **self.band_counts} if self.band is not None else {},
            turn_sample=list(self.turn_sample),
            least_sure=[i for _, i in sorted(self.unsure, key=lambda item: (-item[0], item[1]))],
            speakers_by_kind=dict(sorted(self.kinds.items())),
            mean_turns_accepted=round(self.accepted_turns / self.accepted, 2) if self.accepted else 0.0,
            cells=[
                {
                    "dimension": dimension,
                    "cell": cell,
                    "speakers": speakers,
                    "accepted": passed,
                    "pass_rate": round(passed / speakers, 4),
                }
                for (dimension, cell), (speakers, passed) in sorted(self.cells.items())
            ],
            modes=[
                {
                    "mode": mode,
                    "dialogues": dialogues,
                    "accepted": passed,
                    "acceptance_rate": round(passed / dialogues, 4),
                }
                for mode, (dialogues, passed) in sorted(self.modes.items())
            ],
            ended_by=dict(sorted(self.ended_by.items())),
            cleaned_turns=dict(sorted(self.cleaned.items())),
            turns=self.turns,
            generator_models=sorted(self.generator_models),
            generation_prompt_tokens=self.generation_prompt_tokens,
            generation_cost=self.generation_cost,
        )
