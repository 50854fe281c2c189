"""The Generator-Critic loop of a recipe, round after round, streamed into the run's journal.

Prompts are built here, on the driver, from the recipe's seed, a chunk at a time as workers need
them, so that a run is reproducible, holds only the dialogues in flight, and every worker only
sends what it is given. Round ``r + 1`` takes its few-shot examples from the best dialogues that
round ``r`` accepted (SPC's feedback of good conversations), read back from the journal, so a
resumed run feeds back exactly what the first attempt would have.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from factory.critics.base import JudgePanel, passed_so_far
from factory.engine.budget import BudgetGate, record_tokens
from factory.engine.coverage import CellCoverage
from factory.engine.journal import RunJournal
from factory.engine.local import LocalRunner
from factory.engine.processor import Chunk, EngineSettings, RunnerReport, Ticks, merge_endpoint_reports
from factory.engine.ray_runner import RayRunner
from factory.failpoints import failpoint
from factory.generation import WRITERS
from factory.generation.spc import pick_few_shot
from factory.generation.writer import FewShotExample
from factory.llm.cache import usable_cache_directory
from factory.llm.keys import ApiKeys
from factory.llm.spec import EndpointSpec
from factory.personas.casting import Cast, CellTopUp, quota_cells
from factory.recipes import Recipe
from factory.records import DialogueRecord, GenerationMeta


def plan_rows(
    recipe: Recipe,
    casts: list[Cast],
    spec: EndpointSpec,
    iteration: int = 0,
    fed_back: list[FewShotExample] | None = None,
    mode_of: Callable[[Cast], str] | None = None,
) -> list[tuple[DialogueRecord, list[dict[str, str]]]]:
    """One planned row per candidate dialogue: the empty record and the prompt its writer planned.
    Few-shot examples come from the SPC data, or, from the second round on, from ``fed_back``: the
    best accepted dialogues of the rounds before."""
    generation = recipe.generation
    few_shot_path = recipe.resolve_path(generation.few_shot_path)
    mode_of = mode_of or modes_of(recipe, casts)

    def examples(rng: random.Random) -> list[FewShotExample]:
        if fed_back:
            return rng.sample(fed_back, min(generation.few_shot, len(fed_back)))
        return pick_few_shot(few_shot_path, generation.few_shot, generation.max_turns, rng)

    rows: list[tuple[DialogueRecord, list[dict[str, str]]]] = []
    for cast in casts:
        meta, messages = WRITERS[mode_of(cast)].plan(cast, random.Random(cast.seed), generation, examples)
        rows.extend(
            (_planned(recipe, cast, spec, candidate, iteration, meta), messages)
            for candidate in range(generation.candidates)
        )
    return rows


def _planned(
    recipe: Recipe, cast: Cast, spec: EndpointSpec, candidate: int, iteration: int, meta: dict[str, Any]
) -> DialogueRecord:
    """The empty record of one candidate dialogue of ``cast``."""
    return DialogueRecord(
        id=candidate_id(cast, candidate, recipe.generation.candidates),
        recipe=recipe.name,
        speakers=list(cast.speakers),
        roles=list(cast.roles),
        turns=[],
        generation=GenerationMeta(
            model=spec.model,
            endpoint_kind=spec.kind,
            seed=cast.seed + candidate,
            iteration=iteration,
            cast_id=cast.dialogue_id,
            candidate=candidate,
            **meta,
        ),
    )


def modes_of(recipe: Recipe, casts: list[Cast]) -> Callable[[Cast], str]:
    """Which mode writes each cast: the recipe's, or, with ``both``, every other cast of the plan."""
    mode = recipe.generation.mode
    if mode != "both":
        return lambda cast: mode
    by_id = {cast.dialogue_id: ("spc", "role_play")[index % 2] for index, cast in enumerate(casts)}
    return lambda cast: by_id[cast.dialogue_id]


def candidate_id(cast: Cast, candidate: int, candidates: int) -> str:
    return cast.dialogue_id if candidates == 1 else f"{cast.dialogue_id}-c{candidate}"


def round_shares(casts: list[Cast], rounds: int) -> list[list[Cast]]:
    rounds = max(1, min(rounds, len(casts)))
    return [casts[r::rounds] for r in range(rounds)]


def chunks_of(
    recipe: Recipe,
    casts: list[Cast],
    spec: EndpointSpec,
    iteration: int,
    fed_back: list[FewShotExample],
    done: set[str],
    mode_of: Callable[[Cast], str],
) -> Iterator[Chunk]:
    """Whole casts, ``chunk_size`` dialogues or so at a time, leaving out casts already in the journal."""
    candidates = recipe.generation.candidates
    per_chunk = max(1, recipe.generation.chunk_size // candidates)
    todo = [cast for cast in casts if candidate_id(cast, 0, candidates) not in done]
    for start in range(0, len(todo), per_chunk):
        yield plan_rows(recipe, todo[start : start + per_chunk], spec, iteration, fed_back or None, mode_of)


@dataclass
class RoundSummary:
    """Counts of one round, gathered as its dialogues stream past, and its best accepted dialogues."""

    round: int
    keep: int
    casts: int = 0
    dialogues: int = 0
    accepted: int = 0
    tokens: int = 0
    few_shot_from: set[str] = field(default_factory=set)
    _best: list[DialogueRecord] = field(default_factory=list)

    def add(self, record: DialogueRecord) -> None:
        self.dialogues += 1
        self.tokens += record_tokens(record)
        self.few_shot_from.update(record.generation.few_shot_ids)
        if passed_so_far(record):
            self.accepted += 1
            if self.keep:
                self._best.append(record)
                if len(self._best) > 4 * self.keep:  # bounded: only the best few are ever needed
                    self._best = self.best()

    def best(self) -> list[DialogueRecord]:
        """The ``keep`` accepted dialogues with the highest mean score, ties to the lower id."""
        return sorted(self._best, key=lambda record: (-_mean_score(record), record.id))[: self.keep]

    def as_dict(self) -> dict[str, Any]:
        return {
            "round": self.round,
            "casts": self.casts,
            "dialogues": self.dialogues,
            "accepted": self.accepted,
            "tokens": self.tokens,
            "few_shot_from": sorted(self.few_shot_from),
        }


def _mean_score(record: DialogueRecord) -> float:
    scores = [v.score for v in record.verdicts if v.score is not None]
    return sum(scores) / len(scores) if scores else 0.0


@dataclass
class Execution:
    rounds: list[dict[str, Any]]
    report: dict[str, Any]
    nodes_by_step: dict[str, list[str]]
    budget_stop: str | None = None  # why the budget held the rest of the run back, if it did
    coverage: list[dict[str, Any]] = field(default_factory=list)  # per quota cell: requested, cast, accepted
    topped_up: int = 0  # dialogues planned by the top-up rounds, beyond the recipe's own


def execute(
    recipe: Recipe,
    casts: list[Cast],
    spec: EndpointSpec,
    journal: RunJournal,
    *,
    on_ray: bool,
    keys: ApiKeys | None = None,
    progress: Ticks | None = None,
    agents: dict[str, EndpointSpec] | None = None,
    judges: dict[str, JudgePanel] | None = None,
    budget: BudgetGate | None = None,
    journaled: Callable[[list[DialogueRecord], bool], None] | None = None,
    batch_dir: str | None = None,
    top_up: CellTopUp | None = None,
    planned_more: Callable[[int, str], None] | None = None,
) -> Execution:
    """Every round: plan the chunks of its casts not yet in the journal, run them, write each
    finished chunk to the journal; then feed the round's best accepted dialogues to the next.
    With ``top_up`` (casting.accepted_per_cell), rounds of new casts follow for the quota cells
    still short of accepted dialogues. A ``budget`` holds back the chunks it cannot pay for, and
    the rounds after them; ``journaled`` hears of every batch in the journal (``True``: one an
    earlier attempt left). With llm.batch the calls go through the endpoint's Batch API, kept in
    ``batch_dir``. ``planned_more`` hears of each top-up round's dialogues, and why."""
    generation = recipe.generation
    settings = EngineSettings(
        spec, generation, recipe.critics, agents or {}, judges or {}, usable_cache_directory(recipe.llm.cache),
        batch_dir if recipe.llm.batch else None, recipe.llm.batch_poll_seconds,
    )  # fmt: skip
    runner = _runner(
        recipe, settings, on_ray and not recipe.llm.batch, keys or ApiKeys()
    )  # batches go out from the driver
    shares = round_shares(casts, generation.rounds)
    cells = quota_cells(recipe.casting.quota) if recipe.casting.strategy == "quota" else []
    tally = _Tally(
        [], budget, keep=max(generation.few_shot, 2) if generation.few_shot else 0,
        coverage=CellCoverage(cells, recipe.casting.accepted_per_cell),
    )  # fmt: skip
    for iteration, share in enumerate(shares):
        tally.summary(iteration).casts = len(share)
    # What the journal already holds counts towards its round, as if it had just been made.
    for batch in journal.batches():
        tally.add(batch)
        if journaled is not None:
            journaled(batch, True)
    failpoint("planned")
    rounds = _Rounds(recipe, spec, runner, journal, tally, progress, journaled, mode_of=modes_of(recipe, casts))
    finished = all(rounds.run(iteration, share) for iteration, share in enumerate(shares))
    topped_up = rounds.top_up(top_up, len(shares), planned_more) if finished and top_up is not None else 0
    return Execution(
        rounds=[summary.as_dict() for summary in tally.summaries],
        report=_combine(rounds.reports),
        nodes_by_step={step: sorted(ids) for step, ids in sorted(tally.nodes.items())},
        budget_stop=budget.stopped if budget is not None else None,
        coverage=tally.coverage.report() if cells else [],
        topped_up=topped_up,
    )


@dataclass
class _Rounds:
    """Runs one round after another, feeding each the best accepted dialogues of the one before."""

    recipe: Recipe
    spec: EndpointSpec
    runner: LocalRunner | RayRunner
    journal: RunJournal
    tally: _Tally
    progress: Ticks | None
    journaled: Callable[[list[DialogueRecord], bool], None] | None
    mode_of: Callable[[Cast], str]
    fed_back: list[FewShotExample] = field(default_factory=list)
    reports: list[RunnerReport] = field(default_factory=list)

    def top_up(self, top_up: CellTopUp, iteration: int, planned_more: Callable[[int, str], None] | None) -> int:
        """Top-up rounds from ``iteration`` on, while cells are short and have attempts left; the
        dialogues they planned."""
        planned = 0
        while more := self.tally.coverage.next_casts(top_up, iteration):
            self.mode_of = modes_of(self.recipe, more)
            planned += planned_dialogues(self.recipe, more)
            if planned_more is not None:
                why = f"top-up round {iteration} for cells short of accepted_per_cell"
                planned_more(planned_dialogues(self.recipe, more), why)
            if not self.run(iteration, more):
                break
            iteration += 1
        return planned

    def run(self, iteration: int, casts: list[Cast]) -> bool:
        """One round; False when the budget stopped it (the next round feeds on this one's best: it
        waits for the resume that finishes this one)."""
        summary = self.tally.summary(iteration)
        summary.casts = len(casts)

        def finished(records: list[DialogueRecord]) -> None:
            self.journal.append(records)
            failpoint("journaled")
            self.tally.add(records, just_made=True)
            if self.journaled is not None:
                self.journaled(records, False)

        generation = self.recipe.generation
        chunks = chunks_of(self.recipe, casts, self.spec, iteration, self.fed_back, self.tally.done, self.mode_of)
        budget = self.tally.budget
        if budget is not None and budget.measuring():  # the first chunk alone, so the rest are priced by it
            self.reports.append(self.runner.run(budget.gate(itertools.islice(chunks, 1)), finished, self.progress))
            if budget.stopped:
                return False
        self.reports.append(self.runner.run(budget.gate(chunks) if budget else chunks, finished, self.progress))
        if budget is not None and budget.stopped:
            return False
        if summary.accepted and generation.few_shot:
            self.fed_back = [FewShotExample.from_record(r, generation.max_turns) for r in summary.best()]
        return True


@dataclass
class _Tally:
    """What the journal holds, by round, by node and by quota cell, and what it has cost (for the budget)."""

    summaries: list[RoundSummary]
    budget: BudgetGate | None
    keep: int
    coverage: CellCoverage
    done: set[str] = field(default_factory=set)
    nodes: dict[str, set[str]] = field(default_factory=dict)

    def summary(self, iteration: int) -> RoundSummary:
        """The round's summary; a top-up round's is made when it is first met (in the journal, or run)."""
        while len(self.summaries) <= iteration:
            self.summaries.append(RoundSummary(round=len(self.summaries), keep=self.keep))
        return self.summaries[iteration]

    def add(self, records: list[DialogueRecord], just_made: bool = False) -> None:
        for record in records:
            self.done.add(record.id)
            self.summary(record.generation.iteration).add(record)
            self.coverage.add(record)
            for placement in record.generation.placements:
                self.nodes.setdefault(placement.step, set()).add(placement.node_id)
        if self.budget is not None:
            (self.budget.done if just_made else self.budget.spent)(records)


def _runner(recipe: Recipe, settings: EngineSettings, on_ray: bool, keys: ApiKeys) -> LocalRunner | RayRunner:
    """Ray actors spread over the cluster, or this process."""
    if on_ray:
        return RayRunner(settings, recipe.ray.workers, recipe.ray.cpus_per_worker, keys)
    return LocalRunner(settings, keys)


def _combine(reports: list[RunnerReport]) -> dict[str, Any]:
    """One report for the rounds: counts add up; the concurrency each URL reached is the last round's."""
    total = RunnerReport(
        chunks=sum(r.chunks for r in reports),
        dialogues=sum(r.dialogues for r in reports),
        worker_restarts=sum(r.worker_restarts for r in reports),
        seconds=sum(r.seconds for r in reports),
        endpoints=merge_endpoint_reports([r.endpoints or {} for r in reports], levels="last"),
    )
    return total.as_dict()


def planned_dialogues(recipe: Recipe, casts: list[Cast]) -> int:
    return len(casts) * recipe.generation.candidates


def prompt_preview(recipe: Recipe, casts: list[Cast], spec: EndpointSpec) -> str:
    """The first planned prompt, built before anything is written: bad few-shot files fail here."""
    return json.dumps(plan_rows(recipe, casts[:1], spec)[0][1]) if casts else ""
