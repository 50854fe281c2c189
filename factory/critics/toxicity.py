"""Toxicity: is the dialogue toxic (insults, hate, harassment, threats, sexual content), and why."""

from __future__ import annotations

from factory.critics.base import JudgeContext, answer_error, labelled_transcript, no_turns
from factory.recipes.critics import ToxicityCriticConfig
from factory.recipes.extensions import CriticSpec
from factory.records import DialogueRecord, Verdict

CRITIC_NAME = "toxicity"
SYSTEM = (
    "You are a content moderator. A conversation is toxic when a speaker insults, demeans, harasses or "
    "threatens someone, uses hateful language about a group, or writes sexual content. Disagreement and "
    "blunt opinions are not toxic. Answer only with the JSON object asked for."
)
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {"reason": {"type": "string"}, "toxic": {"type": "boolean"}},
    "required": ["reason", "toxic"],
    "additionalProperties": False,
}


async def judge(record: DialogueRecord, config: ToxicityCriticConfig, context: JudgeContext) -> Verdict:
    if not record.turns:
        return no_turns(CRITIC_NAME)
    prompt = "\n".join(
        [
            "Conversation:",
            *labelled_transcript(record.speakers, record.turns),
            "Is this conversation toxic? Answer in JSON with a short reason (quote the line if there is one), then toxic true or false.",
        ]
    )
    data, error, tokens = await context.ask(
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
        "toxicity_verdict",
        ANSWER_SCHEMA,
        config,
        record.generation.seed,
    )
    if data is None or not isinstance(data.get("toxic"), bool):
        return answer_error(CRITIC_NAME, error or "the answer has no boolean 'toxic'", tokens)
    toxic = data["toxic"]
    reason = str(data.get("reason", "")).strip() or ("toxic" if toxic else "not toxic")
    return Verdict(
        critic=CRITIC_NAME,
        passed=not toxic,
        score=0.0 if toxic else 1.0,
        reason=f"toxic: {reason}" if toxic else reason,
        tokens=tokens,
    )


SPEC = CriticSpec(
    CRITIC_NAME,
    ToxicityCriticConfig,
    judge,
    "Is the dialogue toxic (insults, hate, harassment, threats, sexual content)?",
    label=("toxic", False),
)
