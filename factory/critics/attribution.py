"""Speaker attribution (after PersonaEval): with the speaker labels hidden, can the judge tell
which persona said each turn? The share of turns attributed right is the score."""

from __future__ import annotations

from typing import Any

from factory.critics.base import JudgeContext, answer_error, no_turns, profile_lines
from factory.recipes.critics import AttributionCriticConfig
from factory.recipes.extensions import CriticSpec
from factory.records import DialogueRecord, Verdict, speaker_label

CRITIC_NAME = "attribution"
SYSTEM = (
    "You read a conversation whose speaker names are hidden, and the profiles of the people in it. You "
    "decide who said each turn. Answer only with the JSON object asked for."
)


def answer_schema(turns: int, speakers: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "speakers": {
                "type": "array",
                "items": {"type": "string", "enum": [speaker_label(n) for n in range(1, speakers + 1)]},
                "minItems": turns,
                "maxItems": turns,
            }
        },
        "required": ["speakers"],
        "additionalProperties": False,
    }


def messages_for(record: DialogueRecord) -> list[dict[str, str]]:
    lines = [*profile_lines([p.statements for p in record.speakers]), "Conversation (speakers hidden):"]
    lines += [f"Turn {n}: {turn.text}" for n, turn in enumerate(record.turns, start=1)]
    lines.append(f"For each of the {len(record.turns)} turns, in order, say which user said it.")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(lines)}]


async def judge(record: DialogueRecord, config: AttributionCriticConfig, context: JudgeContext) -> Verdict:
    if not record.turns:
        return no_turns(CRITIC_NAME)
    data, error, tokens = await context.ask(
        messages_for(record),
        "attribution",
        answer_schema(len(record.turns), len(record.speakers)),
        config,
        record.generation.seed,
    )
    guesses = (data or {}).get("speakers")
    if data is None or not isinstance(guesses, list) or len(guesses) != len(record.turns):
        return answer_error(CRITIC_NAME, error or "the answer does not name a speaker for every turn", tokens)
    label = {persona.id: speaker_label(n) for n, persona in enumerate(record.speakers, start=1)}
    right = sum(guess == label.get(turn.speaker) for guess, turn in zip(guesses, record.turns))
    accuracy = right / len(record.turns)
    return Verdict(
        critic=CRITIC_NAME,
        passed=accuracy >= config.threshold,
        score=round(accuracy, 4),
        reason=f"{right} of {len(record.turns)} turns attributed to the right speaker (threshold {config.threshold:.0%})",
        tokens=tokens,
    )


SPEC = CriticSpec(
    CRITIC_NAME,
    AttributionCriticConfig,
    judge,
    "PersonaEval: with speaker labels hidden, who said each turn?",
)
