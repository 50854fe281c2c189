"""Distilabel steps of the critics. Each appends exactly one verdict to every record, so every
dialogue, accepted or rejected, carries the verdict of every enabled critic."""

from __future__ import annotations

from typing import Any

from factory.config import FaithfulnessCriticConfig, GenerationConfig, HeuristicCriticConfig
from factory.critics import faithfulness
from factory.critics.heuristic import heuristic_verdict
from factory.llm.client import LLMCallError
from factory.records import DialogueRecord, Verdict
from factory.steps import LLMRecordStep, RecordStep


class HeuristicCritic(RecordStep):
    """The cheap gate (turn count, alternation, repetition, copying); no model.

    Input columns: record (str, JSON DialogueRecord with turns).
    Output columns: record, with a ``heuristic`` verdict appended.
    """

    generation: GenerationConfig
    config: HeuristicCriticConfig

    def update_records(self, records: list[DialogueRecord], rows: list[dict[str, Any]]) -> list[DialogueRecord]:
        for record in records:
            record.verdicts.append(heuristic_verdict(record.turns, record.speakers, self.generation, self.config))
        return records


class FaithfulnessCritic(LLMRecordStep):
    """The SPC faithfulness expert: does the dialogue contradict either profile, and why.

    Input columns: record (str, JSON DialogueRecord with turns).
    Output columns: record, with a ``faithfulness`` verdict appended (failed without a call when
    there are no turns to judge; failed with the reason when the reply does not fit the schema).
    """

    config: FaithfulnessCriticConfig

    def update_records(self, records: list[DialogueRecord], rows: list[dict[str, Any]]) -> list[DialogueRecord]:
        verdicts = self.run_concurrently(self._judge(record) for record in records)
        for record, verdict in zip(records, verdicts):
            record.verdicts.append(verdict)
        return records

    async def _judge(self, record: DialogueRecord) -> Verdict:
        if not record.turns:
            return Verdict(critic=faithfulness.CRITIC_NAME, passed=False, score=None, reason="not judged: the dialogue has no turns")
        try:
            result = await self.client.chat(
                faithfulness.judge_messages(record.speakers, record.turns),
                temperature=self.config.temperature,
                max_tokens=self.config.max_tokens,
                seed=record.generation.seed,
                response_format=self.endpoint.response_format(
                    "faithfulness_verdict", faithfulness.answer_schema(len(record.speakers))
                ),
            )
        except LLMCallError as exc:
            return Verdict(critic=faithfulness.CRITIC_NAME, passed=False, score=None, reason=f"judge call failed: {exc}")
        return faithfulness.faithfulness_verdict(result.text, result.usage.total_tokens)
