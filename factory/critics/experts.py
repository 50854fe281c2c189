"""The per-dialogue experts by name, as the engine runs them in the cascade's order.

Each takes a dialogue with its turns and the verdicts so far, and returns its own verdict.
Quality (best-of-N across a cast's candidates) and dedup (across the run) are not here: they
need more than one dialogue at a time.
"""

from __future__ import annotations

from typing import Any

from factory.critics import apc, attribution, faithfulness, portrayal, toxicity
from factory.critics.base import Judge, JudgeContext
from factory.critics.heuristic import heuristic_verdict
from factory.records import DialogueRecord, Verdict


async def _heuristic(record: DialogueRecord, config: Any, context: JudgeContext) -> Verdict:
    return heuristic_verdict(record.turns, record.speakers, context.generation, config)


JUDGES: dict[str, Judge] = {
    "heuristic": _heuristic,
    "faithfulness": faithfulness.judge,
    "apc": apc.judge,
    "toxicity": toxicity.judge,
    "portrayal": portrayal.judge,
    "attribution": attribution.judge,
}
