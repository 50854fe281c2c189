"""Distilabel steps of generation: one call writes the whole conversation (SPC), then parsing."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from factory.config import GenerationConfig
from factory.generation.parse import parse_dialogue
from factory.llm.client import LLMCallError
from factory.records import DialogueRecord, Verdict
from factory.steps import RECORD_COLUMN, LLMRecordStep

if TYPE_CHECKING:
    from distilabel.typing import StepColumns

MESSAGES_COLUMN = "messages"


class GenerateDialogues(LLMRecordStep):
    """Writes each dialogue in one Chat Completions call and parses it into turns.

    Input columns:
        - record (str): JSON DialogueRecord with speakers and generation metadata, no turns yet.
        - messages (str): JSON list of chat messages, the generator prompt built at planning.

    Output columns:
        - record (str): the record with ``raw_generation``, ``turns``, token usage and a
          ``format`` verdict (failed, with the reason, when the reply cannot be parsed or the
          request failed for good).
    """

    generation: GenerationConfig

    @property
    def inputs(self) -> StepColumns:
        return [RECORD_COLUMN, MESSAGES_COLUMN]

    def update_records(self, records: list[DialogueRecord], rows: list[dict[str, Any]]) -> list[DialogueRecord]:
        messages = [json.loads(row[MESSAGES_COLUMN]) for row in rows]
        return self.run_concurrently(self._generate(r, m) for r, m in zip(records, messages))

    async def _generate(self, record: DialogueRecord, messages: list[dict[str, str]]) -> DialogueRecord:
        try:
            result = await self.client.chat(
                messages,
                temperature=self.generation.temperature,
                max_tokens=self.generation.max_tokens,
                seed=record.generation.seed,
            )
        except LLMCallError as exc:
            record.verdicts.append(Verdict(critic="format", passed=False, score=0.0, reason=f"generation failed: {exc}"))
            return record
        record.raw_generation = result.text
        record.generation.usage = result.usage
        parsed = parse_dialogue(result.text, record.speakers, result.finish_reason)
        record.turns = parsed.turns
        record.verdicts.append(parsed.verdict)
        return record
