"""The critics by name: where each per-dialogue critic's judge is registered.

A critic's name and its settings are declared once, as a field of
:class:`factory.recipes.critics.CriticsConfig` (its settings class says its scope: a dialogue, a
cast's candidates, or the run); its judge is registered here with one line. The engine's cascade,
``critics eval`` and the card all read these. Quality (best-of-N, a cast at a time) and dedup
(across the run) are decided in :mod:`factory.critics.quality` and
:mod:`factory.critics.acceptance`: they need more than one dialogue at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from factory.critics import apc, attribution, faithfulness, grounding, portrayal, toxicity
from factory.critics.base import Judge, JudgeContext
from factory.critics.heuristic import heuristic_verdict
from factory.critics.jury import aggregate_verdicts
from factory.critics.learned import critic as learned
from factory.recipes.critics import CriticsConfig, critic_names, needs_llm
from factory.records import DialogueRecord, PersonaProfile, Verdict


async def _heuristic(record: DialogueRecord, config: Any, context: JudgeContext) -> Verdict:
    return heuristic_verdict(record.turns, record.speakers, context.generation, config)


JUDGES: dict[str, Judge] = {
    "heuristic": _heuristic,
    "learned": learned.judge,
    "grounding": grounding.judge,
    "faithfulness": faithfulness.judge,
    "apc": apc.judge,
    "toxicity": toxicity.judge,
    "portrayal": portrayal.judge,
    "attribution": attribution.judge,
}


def _once(speakers: Sequence[PersonaProfile]) -> int:
    return 1


# How many calls one judge of an LLM critic makes on a dialogue of these speakers (what `plan` counts).
CALLS: dict[str, Callable[[Sequence[PersonaProfile]], int]] = {
    "faithfulness": _once,
    "apc": lambda speakers: sum(1 for speaker in speakers if speaker.statements),
    "toxicity": _once,
    "portrayal": lambda speakers: sum(1 for speaker in speakers if portrayal.checked_kind(speaker)),
    "attribution": _once,
}

PER_DIALOGUE = critic_names("dialogue")
if set(JUDGES) != set(PER_DIALOGUE):  # pragma: no cover - a registration error, caught at import
    raise ImportError(
        f"critics declared without a judge, or judges without settings: {set(JUDGES) ^ set(PER_DIALOGUE)}"
    )
if set(CALLS) != {name for name in PER_DIALOGUE if needs_llm(name)}:  # pragma: no cover - as above
    raise ImportError(f"LLM critics whose calls are not counted: {set(CALLS) ^ set(PER_DIALOGUE)}")


async def cascade_verdict(name: str, record: DialogueRecord, critics: CriticsConfig, context: JudgeContext) -> Verdict:
    """The verdict of ``name`` in the cascade: an LLM critic the learned critic was sure enough for
    is not asked (:func:`factory.critics.learned.critic.decided_for`); every other is judged."""
    if needs_llm(name):
        decided = learned.decided_for(record, name, critics.learned)
        if decided is not None:
            return decided
    return await verdict_of(name, record, getattr(critics, name), context)


async def verdict_of(name: str, record: DialogueRecord, config: Any, context: JudgeContext) -> Verdict:
    """The critic's verdict on ``record``: its judge's, or its jury's aggregate (each juror's kept)."""
    judge = JUDGES[name]
    if not needs_llm(name):
        return await judge(record, config, context)
    seats = context.seats(name)
    verdicts = await asyncio.gather(*(judge(record, config, seat) for seat in seats))
    for verdict, seat in zip(verdicts, seats):
        verdict.judge = seat.judge_model
        verdict.prompt_tokens = seat.meter.prompt_tokens if seat.meter else 0
    if len(verdicts) == 1:
        return verdicts[0]
    return aggregate_verdicts(name, list(verdicts), context.aggregate(name), getattr(config, "threshold", 0.5))
