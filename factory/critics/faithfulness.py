"""The faithfulness expert of Synthetic-Persona-Chat: does the dialogue contradict either profile?

The judge answers in JSON constrained by a schema (``{"contradiction": bool, "speaker": ...,
"reason": ...}``); a reply that does not fit the schema rejects the dialogue with that reason.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from factory.critics.base import JudgeContext, answer_error, labelled_transcript, no_turns, profile_lines
from factory.recipes.critics import FaithfulnessCriticConfig
from factory.recipes.extensions import CriticSpec
from factory.records import DialogueRecord, PersonaProfile, Turn, Verdict, speaker_label

CRITIC_NAME = "faithfulness"

JUDGE_SYSTEM = (
    "You are a careful annotator checking persona-based conversations. A conversation is unfaithful "
    "when something a user says contradicts that user's own profile (for example, the profile says "
    "'I have two dogs' and the user says they have never owned a pet). Talking about things the profile "
    "does not mention is not a contradiction. Answer only with the JSON object asked for."
)


class FaithfulnessAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    contradiction: bool
    speaker: str = "none"
    reason: str


# The reason comes first so that the judge explains before it decides; the instruction gives no
# fill-in template, because small models copy a template's words into the reason verbatim.
def answer_schema(speakers: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {
            "reason": {"type": "string"},
            "speaker": {"type": "string", "enum": [*(speaker_label(n) for n in range(1, speakers + 1)), "none"]},
            "contradiction": {"type": "boolean"},
        },
        "required": ["reason", "speaker", "contradiction"],
        "additionalProperties": False,
    }


# Two worked examples (after the SPC paper's few-shot expert): one faithful, one not.
FEW_SHOT: list[tuple[list[str], list[str], list[str], dict[str, Any]]] = [
    (
        ["I am a nurse.", "I have two cats."],
        ["I love hiking.", "I am a student."],
        [
            "User 1: Long shift at the hospital today.",
            "User 2: Sounds tiring! I just got back from a hike.",
            "User 1: Lucky you. My cats will want dinner the moment I get home.",
        ],
        {
            "reason": "Both users talk about their work, cats and hiking in line with their profiles.",
            "speaker": "none",
            "contradiction": False,
        },
    ),
    (
        ["I am vegetarian.", "I live in Oslo."],
        ["I play the violin.", "I have three brothers."],
        [
            "User 1: I grilled a huge steak for dinner.",
            "User 2: Nice, I practised violin all evening.",
            "User 1: Oslo is so cold this week.",
        ],
        {
            "reason": "User 1 says 'I grilled a huge steak for dinner' but is vegetarian.",
            "speaker": "User 1",
            "contradiction": True,
        },
    ),
]


def _question(profiles: list[list[str]], lines: list[str]) -> str:
    blocks = [*profile_lines(profiles), "Conversation:"]
    blocks.extend(lines)
    blocks.append(
        "Does anything a user says in this conversation contradict that user's own profile? Answer in "
        "JSON with a short reason (quote the contradicting line if there is one), the speaker who "
        "contradicts their profile (or none), and contradiction true or false."
    )
    return "\n".join(blocks)


def judge_messages(
    speakers: list[PersonaProfile], turns: list[Turn], *, few_shot: bool = False
) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": JUDGE_SYSTEM}]
    if few_shot:
        for first, second, lines, answer in FEW_SHOT:
            messages.append({"role": "user", "content": _question([first, second], lines)})
            messages.append({"role": "assistant", "content": json.dumps(answer)})
    profiles = [list(persona.statements) for persona in speakers]
    messages.append({"role": "user", "content": _question(profiles, labelled_transcript(speakers, turns))})
    return messages


async def judge(record: DialogueRecord, config: FaithfulnessCriticConfig, context: JudgeContext) -> Verdict:
    """The SPC faithfulness expert. Fails without a call when there are no turns."""
    if not record.turns:
        return no_turns(CRITIC_NAME)
    data, error, tokens = await context.ask(
        judge_messages(record.speakers, record.turns, few_shot=config.few_shot),
        "faithfulness_verdict",
        answer_schema(len(record.speakers)),
        config,
        record.generation.seed,
    )
    if data is None:
        return answer_error(CRITIC_NAME, error or "no answer", tokens)
    copied = copied_from_examples(str(data.get("reason", "")), record)
    if copied:
        return answer_error(
            CRITIC_NAME,
            f"unusable judge reply: its reason quotes the prompt's worked example ({copied!r}), not this dialogue",
            tokens,
        )
    return faithfulness_verdict(data, tokens)


_WORDS = re.compile(r"[a-z0-9']+")
SHINGLE = 4


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = _WORDS.findall(text.lower())
    return {tuple(words[i : i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)}


# What only the prompt's examples say: their profiles and lines, and the example in the instructions
# (four words in a row); and the facts their personas are made of (single words: a small judge
# copies "... but is vegetarian" onto a dialogue where nobody is).
_EXAMPLE_SHINGLES = set().union(
    *(_shingles(" ".join([*first, *second, *lines])) for first, second, lines, _ in FEW_SHOT),
    _shingles(JUDGE_SYSTEM.split("Talking about", 1)[0]),
)
EXAMPLE_FACT_WORDS = frozenset(
    {"nurse", "cats", "hiking", "student", "hospital", "vegetarian", "oslo", "violin", "brothers", "steak", "grilled"}
)


def copied_from_examples(reason: str, record: DialogueRecord) -> str | None:
    """The words of ``reason`` that come from the prompt's worked examples and not from this
    dialogue or its profiles: a judge that copies the example's reason (a small model does) has
    not judged this dialogue, whatever its decision says."""
    own_text = " ".join([*(s for p in record.speakers for s in p.statements), *(t.text for t in record.turns)])
    borrowed = (_shingles(reason) & _EXAMPLE_SHINGLES) - _shingles(own_text)
    if borrowed:
        return " ".join(sorted(borrowed)[0])
    facts = (set(_WORDS.findall(reason.lower())) & EXAMPLE_FACT_WORDS) - set(_WORDS.findall(own_text.lower()))
    return sorted(facts)[0] if facts else None


def faithfulness_verdict(data: dict[str, Any], tokens: int) -> Verdict:
    """The verdict a judge's answer (its JSON object) gives; an answer of the wrong shape is unusable."""
    try:
        answer = FaithfulnessAnswer.model_validate(data)
    except ValidationError as exc:
        preview = json.dumps(data)[:120]
        return Verdict(
            critic=CRITIC_NAME,
            passed=False,
            score=None,
            reason=f"unparsable judge reply ({type(exc).__name__}): {preview!r}",
            tokens=tokens,
            answered=False,
        )
    if answer.contradiction:
        who = f"{answer.speaker} " if answer.speaker != "none" else ""
        return Verdict(
            critic=CRITIC_NAME,
            passed=False,
            score=0.0,
            reason=f"{who}contradicts the profile: {answer.reason}",
            tokens=tokens,
        )
    return Verdict(
        critic=CRITIC_NAME, passed=True, score=1.0, reason=answer.reason or "no contradiction found", tokens=tokens
    )


SPEC = CriticSpec(
    CRITIC_NAME,
    FaithfulnessCriticConfig,
    judge,
    "Synthetic-Persona-Chat's expert: does anyone contradict their own profile?",
)
