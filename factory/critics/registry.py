"""The critics by name: where each per-dialogue critic's judge is registered.

A critic's name and its settings are declared once, as a field of
:class:`factory.recipes.critics.CriticsConfig` (its settings class says its scope: a dialogue, a
cast's candidates, or the run); its judge is registered here with one line. The engine's cascade,
``critics eval`` and the card all read these. Quality (best-of-N, a cast at a time) and dedup
(across the run) are decided in :mod:`factory.critics.quality` and
:mod:`factory.critics.acceptance`: they need more than one dialogue at a time.
"""

from __future__ import annotations

from typing import Any

from factory.critics import apc, attribution, faithfulness, portrayal, toxicity
from factory.critics.base import Judge, JudgeContext
from factory.critics.heuristic import heuristic_verdict
from factory.recipes.critics import critic_names
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

PER_DIALOGUE = critic_names("dialogue")
if set(JUDGES) != set(PER_DIALOGUE):  # pragma: no cover - a registration error, caught at import
    raise ImportError(
        f"critics declared without a judge, or judges without settings: {set(JUDGES) ^ set(PER_DIALOGUE)}"
    )
