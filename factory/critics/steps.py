"""The experts as distilabel steps: one step per expert of the cascade, all of one kind.

Input columns: record (str, JSON DialogueRecord with turns and the verdicts so far).
Output columns: record, with this expert's verdict appended, unless the dialogue already failed a
hard gate (the generator's ``format`` verdict, or an earlier expert marked ``hard``): such a
dialogue is passed on untouched and costs this expert nothing.
"""

from __future__ import annotations

from typing import Any

from factory.config import CriticsConfig, GenerationConfig
from factory.critics import apc, attribution, faithfulness, portrayal, toxicity
from factory.critics.base import Judge, JudgeContext, blocked_by, hard_gates
from factory.critics.heuristic import heuristic_verdict
from factory.records import DialogueRecord, Verdict
from factory.steps import LLMRecordStep


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
NEEDS_LLM = {name for name in JUDGES if name != "heuristic"}


class ExpertCritic(LLMRecordStep):
    """Runs the expert named ``expert`` (heuristic, faithfulness, apc, toxicity, portrayal,
    attribution) with its settings from ``critics``."""

    expert: str
    critics: CriticsConfig
    generation: GenerationConfig

    def update_records(self, records: list[DialogueRecord], rows: list[dict[str, Any]]) -> list[DialogueRecord]:
        gates = hard_gates(self.critics)
        config = getattr(self.critics, self.expert)
        judge = JUDGES[self.expert]
        context = JudgeContext(self.client, self.endpoint, self.generation)
        todo = [record for record in records if blocked_by(record, gates) is None]
        for record, verdict in zip(todo, self.run_concurrently(judge(record, config, context) for record in todo)):
            record.verdicts.append(verdict)
        return records
