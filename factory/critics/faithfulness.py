"""The faithfulness expert of Synthetic-Persona-Chat: does the dialogue contradict either profile?

The judge answers in JSON constrained by a schema (``{"contradiction": bool, "speaker": ...,
"reason": ...}``); a reply that does not fit the schema rejects the dialogue with that reason.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from factory.records import PersonaProfile, Turn, Verdict

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
            "speaker": {"type": "string", "enum": [*(f"User {n}" for n in range(1, speakers + 1)), "none"]},
            "contradiction": {"type": "boolean"},
        },
        "required": ["reason", "speaker", "contradiction"],
        "additionalProperties": False,
    }


def judge_messages(speakers: list[PersonaProfile], turns: list[Turn]) -> list[dict[str, str]]:
    label = {persona.id: f"User {index}" for index, persona in enumerate(speakers, start=1)}
    blocks = []
    for index, persona in enumerate(speakers, start=1):
        blocks.append(f"User {index} Profile:")
        blocks.extend(f"- {statement}" for statement in persona.statements)
    blocks.append("Conversation:")
    blocks.extend(f"{label.get(turn.speaker, turn.speaker)}: {turn.text}" for turn in turns)
    blocks.append(
        "Does anything a user says in this conversation contradict that user's own profile? Answer in "
        "JSON with a short reason (quote the contradicting line if there is one), the speaker who "
        "contradicts their profile (or none), and contradiction true or false."
    )
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": "\n".join(blocks)}]


def faithfulness_verdict(reply: str, tokens: int) -> Verdict:
    try:
        answer = FaithfulnessAnswer.model_validate(json.loads(_strip_fences(reply)))
    except (json.JSONDecodeError, ValidationError, TypeError) as exc:
        preview = reply.strip().replace("\n", " ")[:120]
        return Verdict(
            critic=CRITIC_NAME,
            passed=False,
            score=None,
            reason=f"unparsable judge reply ({type(exc).__name__}): {preview!r}",
            tokens=tokens,
        )
    if answer.contradiction:
        who = f"{answer.speaker} " if answer.speaker != "none" else ""
        return Verdict(critic=CRITIC_NAME, passed=False, score=0.0, reason=f"{who}contradicts the profile: {answer.reason}", tokens=tokens)
    return Verdict(critic=CRITIC_NAME, passed=True, score=1.0, reason=answer.reason or "no contradiction found", tokens=tokens)


def _strip_fences(reply: str) -> str:
    text = reply.strip()
    if text.startswith("```"):
        text = text.strip("`")
        text = text[text.find("{") :] if "{" in text else text
    return text
