"""An APC-style persona faithfulness score (after the Atomic Persona Consistency metric).

For every persona statement s of a speaker, judged against that speaker's turns:

    P_rel(s)          is the statement relevant to what the speaker says?
    P_entail(s)       do the speaker's turns entail it?
    P_contradict(s)   do they contradict it?

    APC = sum over s of  P_rel * P_entail + (1 - P_rel) * (1 - P_contradict)

A relevant statement earns credit only when the dialogue bears it out; an irrelevant one earns
credit unless it is contradicted. The judge is the LLM with constrained answers (relevant yes/no;
entailment / neutral / contradiction), so the probabilities are 0 or 1; the score is divided by
the number of statements to lie in [0, 1], and the dialogue passes at ``threshold``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from factory.critics.base import JudgeContext, answer_error, no_turns
from factory.recipes.critics import APCCriticConfig
from factory.recipes.extensions import CriticSpec
from factory.records import DialogueRecord, Verdict, speaker_label

CRITIC_NAME = "apc"
RELATIONS = ("entailment", "neutral", "contradiction")


@dataclass(frozen=True)
class StatementJudgement:
    relevance: float  # P_rel
    entailment: float  # P_entail
    contradiction: float  # P_contradict

    @property
    def credit(self) -> float:
        return self.relevance * self.entailment + (1 - self.relevance) * (1 - self.contradiction)


def apc_score(judgements: list[StatementJudgement]) -> float:
    """The APC sum over statements (not normalised)."""
    return sum(judgement.credit for judgement in judgements)


def answer_schema(count: int) -> dict[str, Any]:
    item = {
        "type": "object",
        "properties": {"relevant": {"type": "boolean"}, "relation": {"type": "string", "enum": list(RELATIONS)}},
        "required": ["relevant", "relation"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"judgements": {"type": "array", "items": item, "minItems": count, "maxItems": count}},
        "required": ["judgements"],
        "additionalProperties": False,
    }


SYSTEM = (
    "You check whether what a person says in a conversation fits statements about them. For each "
    "numbered statement, say whether it is relevant to what the person says, and whether the person's "
    "words entail it, are neutral towards it, or contradict it. Answer only with the JSON object asked for."
)


def messages_for(statements: list[str], lines: list[str]) -> list[dict[str, str]]:
    listed = "\n".join(f"{i}. {s}" for i, s in enumerate(statements, start=1))
    said = "\n".join(f"- {line}" for line in lines)
    prompt = (
        f"Statements about the person:\n{listed}\n\nWhat the person says in the conversation:\n{said}\n\n"
        f"Give {len(statements)} judgements, one per statement, in order."
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]


def _judgement(item: Any) -> StatementJudgement | None:
    if (
        not isinstance(item, dict)
        or not isinstance(item.get("relevant"), bool)
        or item.get("relation") not in RELATIONS
    ):
        return None
    relation = item["relation"]
    return StatementJudgement(
        relevance=1.0 if item["relevant"] else 0.0,
        entailment=1.0 if relation == "entailment" else 0.0,
        contradiction=1.0 if relation == "contradiction" else 0.0,
    )


async def judge(record: DialogueRecord, config: APCCriticConfig, context: JudgeContext) -> Verdict:
    if not record.turns:
        return no_turns(CRITIC_NAME)
    judgements: list[StatementJudgement] = []
    tokens = 0
    notes = []
    for index, persona in enumerate(record.speakers, start=1):
        said = [turn.text for turn in record.turns if turn.speaker == persona.id]
        if not persona.statements:
            continue
        if not said:
            # A silent speaker bears out nothing: every statement counts as irrelevant and uncontradicted.
            judgements.extend(StatementJudgement(0.0, 0.0, 0.0) for _ in persona.statements)
            continue
        data, error, spent = await context.ask(
            messages_for(persona.statements, said),
            "apc_judgements",
            answer_schema(len(persona.statements)),
            config,
            record.generation.seed,
        )
        tokens += spent
        items = (data or {}).get("judgements")
        parsed = [_judgement(item) for item in items] if isinstance(items, list) else []
        if data is None or len(parsed) != len(persona.statements) or any(j is None for j in parsed):
            return answer_error(
                CRITIC_NAME, error or f"{speaker_label(index)}: judgements do not match the statements", tokens
            )
        judgements.extend(j for j in parsed if j is not None)
        contradicted = [s for s, j in zip(persona.statements, parsed) if j is not None and j.contradiction]
        if contradicted:
            notes.append(f"{speaker_label(index)} contradicts {contradicted[0]!r}")
    if not judgements:
        return Verdict(
            critic=CRITIC_NAME, passed=True, score=None, reason="no persona statements to check", tokens=tokens
        )
    score = apc_score(judgements) / len(judgements)
    passed = score >= config.threshold
    reason = f"APC {score:.2f} over {len(judgements)} statements (threshold {config.threshold:.2f})"
    if notes:
        reason += "; " + "; ".join(notes)
    return Verdict(critic=CRITIC_NAME, passed=passed, score=round(score, 4), reason=reason, tokens=tokens)


SPEC = CriticSpec(
    CRITIC_NAME,
    APCCriticConfig,
    judge,
    "The APC score: relevance and entailment of every persona statement against its speaker.",
    calls=lambda speakers: sum(1 for speaker in speakers if speaker.statements),
)
