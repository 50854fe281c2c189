"""Personality portrayal (PsyPlay's back-test): from the dialogue alone, infer each speaker's MBTI
type or Big Five levels, and pass when they match the assigned ones within a tolerance.

A speaker with neither an MBTI type nor Big Five levels has nothing to check and is left out;
the score is the share of MBTI axes and Big Five traits inferred within tolerance.
"""

from __future__ import annotations

from typing import Any

from factory.critics.base import JudgeContext, answer_error, labelled_transcript, no_turns
from factory.recipes.critics import PortrayalCriticConfig
from factory.recipes.extensions import CriticSpec
from factory.records import DialogueRecord, PersonaProfile, Verdict, speaker_label
from factory.traits import BIG_FIVE_TRAITS, MBTI_TYPES

CRITIC_NAME = "portrayal"
SYSTEM = (
    "You are a personality psychologist. From how a person talks in a conversation, you estimate their "
    "personality. Answer only with the JSON object asked for."
)


def checked_kind(speaker: PersonaProfile) -> str | None:
    return "mbti" if speaker.mbti else ("big_five" if speaker.big_five else None)


def answer_schema(kind: str) -> dict[str, Any]:
    if kind == "mbti":
        estimate: dict[str, Any] = {"type": "string", "enum": list(MBTI_TYPES)}
    else:
        estimate = {
            "type": "object",
            "properties": {trait: {"type": "integer", "enum": list(range(1, 8))} for trait in BIG_FIVE_TRAITS},
            "required": list(BIG_FIVE_TRAITS),
            "additionalProperties": False,
        }
    return {
        "type": "object",
        "properties": {"reason": {"type": "string"}, "estimate": estimate},
        "required": ["reason", "estimate"],
        "additionalProperties": False,
    }


def messages_for(record: DialogueRecord, index: int, kind: str) -> list[dict[str, str]]:
    task = (
        "their MBTI type (four letters)"
        if kind == "mbti"
        else "their Big Five levels (openness, conscientiousness, extraversion, agreeableness, neuroticism; 1 = very low, 7 = very high)"
    )
    prompt = "\n".join(
        [
            "Conversation:",
            *labelled_transcript(record.speakers, record.turns),
            f"Judging only by what User {index} says and how, estimate {task}. Give a short reason first.",
        ]
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]


def compare(speaker: PersonaProfile, estimate: Any, config: PortrayalCriticConfig) -> tuple[int, int, bool, str]:
    """(matched units, units, within tolerance, note)."""
    if speaker.mbti:
        guess = str(estimate).upper()
        wrong = sum(a != b for a, b in zip(speaker.mbti, guess)) if len(guess) == 4 else 4
        return 4 - wrong, 4, wrong <= config.mbti_tolerance, f"{speaker.mbti} read as {guess}"
    if speaker.big_five is None:
        return 0, 0, False, "neither an MBTI type nor Big Five levels to compare with"
    if not isinstance(estimate, dict):
        return 0, 5, False, "no Big Five estimate"
    off = {t: abs(int(estimate.get(t, 0) or 0) - getattr(speaker.big_five, t)) for t in BIG_FIVE_TRAITS}
    matched = sum(d <= config.big_five_tolerance for d in off.values())
    worst = max(off, key=lambda trait: off[trait])
    return matched, 5, matched == 5, f"Big Five off by up to {off[worst]} ({worst})"


async def judge(record: DialogueRecord, config: PortrayalCriticConfig, context: JudgeContext) -> Verdict:
    if not record.turns:
        return no_turns(CRITIC_NAME)
    matched = units = tokens = 0
    passed = True
    notes = []
    for index, speaker in enumerate(record.speakers, start=1):
        kind = checked_kind(speaker)
        if kind is None:
            continue
        data, error, spent = await context.ask(
            messages_for(record, index, kind), f"portrayal_{kind}", answer_schema(kind), config, record.generation.seed
        )
        tokens += spent
        if data is None or "estimate" not in data:
            return answer_error(CRITIC_NAME, error or f"{speaker_label(index)}: no estimate", tokens)
        hit, total, ok, note = compare(speaker, data["estimate"], config)
        matched, units, passed = matched + hit, units + total, passed and ok
        notes.append(f"{speaker_label(index)}: {note}")
    if not units:
        return Verdict(
            critic=CRITIC_NAME,
            passed=True,
            score=None,
            reason="no speaker has an MBTI type or Big Five levels to check",
        )
    return Verdict(
        critic=CRITIC_NAME, passed=passed, score=round(matched / units, 4), reason="; ".join(notes), tokens=tokens
    )


SPEC = CriticSpec(
    CRITIC_NAME,
    PortrayalCriticConfig,
    judge,
    "PsyPlay's back-test: infer each speaker's MBTI type or Big Five levels from the dialogue.",
    label=("portrayed", True),
    calls=lambda speakers: sum(1 for speaker in speakers if checked_kind(speaker)),
)
