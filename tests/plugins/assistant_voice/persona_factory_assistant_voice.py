"""A third-party critic: does any speaker talk like an AI assistant instead of a person?

One module, one spec, one entry point: the factory finds it by the ``persona_factory.critics``
entry point group, and every part of it that knows critics knows this one.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from factory.critics.base import JudgeContext, answer_error, labelled_transcript, no_turns
from factory.recipes.critics import LLMCriticConfig
from factory.recipes.extensions import CriticSpec
from factory.records import DialogueRecord, Verdict

NAME = "assistant_voice"
SYSTEM = "You listen for a speaker who talks like an AI assistant. Answer only with the JSON object asked for."
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"assistant_like": {"type": "boolean"}, "speaker": {"type": "string"}},
    "required": ["assistant_like", "speaker"],
    "additionalProperties": False,
}


class AssistantVoiceConfig(LLMCriticConfig):
    enabled: bool = False
    max_tokens: int = Field(default=60, ge=16)


async def judge(record: DialogueRecord, config: AssistantVoiceConfig, context: JudgeContext) -> Verdict:
    if not record.turns:
        return no_turns(NAME)
    prompt = "\n".join(["Conversation:", *labelled_transcript(record.speakers, record.turns), "Who talks like an AI?"])
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
    data, error, tokens = await context.ask(messages, "assistant_voice", ANSWER_SCHEMA, config, record.generation.seed)
    if data is None or not isinstance(data.get("assistant_like"), bool):
        return answer_error(NAME, error or "the answer has no boolean 'assistant_like'", tokens)
    found = data["assistant_like"]
    reason = f"{data.get('speaker')} talks like an AI assistant" if found else "every speaker talks as a person"
    return Verdict(critic=NAME, passed=not found, score=0.0 if found else 1.0, reason=reason, tokens=tokens)


SPEC = CriticSpec(
    NAME, AssistantVoiceConfig, judge, "Does a speaker talk like an AI assistant?", label=("well_formed", True)
)
