"""Dialogue quality, after the SPC paper's FED-based experts: five policies (depth, coherency,
consistency, diversity, likeability), each a pairwise comparison of two candidate dialogues for the
same cast. Every pair is judged once on all five policies; each policy's winner takes a vote, and
the candidate with the most votes is kept (ties go to the earlier candidate).

This runs on the driver after a round's per-dialogue experts, because it needs all the candidates
of a cast at once; only candidates that passed every other expert compete.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from typing import Any

from factory.critics.base import JudgeContext, labelled_transcript
from factory.recipes.critics import QualityCriticConfig
from factory.records import DialogueRecord, Verdict

CRITIC_NAME = "quality"
POLICIES = ("depth", "coherency", "consistency", "diversity", "likeability")
POLICY_QUESTIONS = {
    "depth": "Which conversation goes deeper into its topics?",
    "coherency": "Which conversation is more coherent, each turn following from the one before?",
    "consistency": "Which conversation is more consistent, with nobody contradicting themself?",
    "diversity": "Which conversation is more varied in its topics and wording?",
    "likeability": "In which conversation are the speakers more likeable?",
}
SYSTEM = "You compare two conversations between the same people. Answer only with the JSON object asked for."
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {policy: {"type": "string", "enum": ["A", "B"]} for policy in POLICIES},
    "required": list(POLICIES),
    "additionalProperties": False,
}


def messages_for(first: DialogueRecord, second: DialogueRecord) -> list[dict[str, str]]:
    blocks = [
        "Conversation A:",
        *labelled_transcript(first.speakers, first.turns),
        "",
        "Conversation B:",
        *labelled_transcript(second.speakers, second.turns),
        "",
        "For each question, answer A or B:",
    ]
    blocks += [f"- {policy}: {POLICY_QUESTIONS[policy]}" for policy in POLICIES]
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "\n".join(blocks)}]


def majority_vote(count: int, outcomes: dict[tuple[int, ...], dict[str, int]]) -> tuple[int, list[int]]:
    """The winner's index and every candidate's votes. ``outcomes[(i, j, juror)][policy]`` is the
    index (i or j) that won that policy in that juror's comparison of i and j."""
    votes = [0] * count
    for winners in outcomes.values():
        for winner in winners.values():
            votes[winner] += 1
    best = max(range(count), key=lambda index: (votes[index], -index))
    return best, votes


async def compare(
    first: tuple[int, DialogueRecord],
    second: tuple[int, DialogueRecord],
    config: QualityCriticConfig,
    context: JudgeContext,
    seed: int,
) -> tuple[dict[str, int] | None, int]:
    """Each policy's winning index; the pair is shown in a seeded random order against position bias."""
    shown = [first, second]
    random.Random(seed).shuffle(shown)
    data, _error, tokens = await context.ask(
        messages_for(shown[0][1], shown[1][1]), "quality_comparison", ANSWER_SCHEMA, config, seed
    )
    if data is None or any(data.get(policy) not in ("A", "B") for policy in POLICIES):
        return None, tokens
    return {policy: shown[0][0] if data[policy] == "A" else shown[1][0] for policy in POLICIES}, tokens


async def select_best(candidates: list[DialogueRecord], config: QualityCriticConfig, context: JudgeContext) -> None:
    """Append a quality verdict to each candidate: passed for the best, failed for the rest. With a
    jury, every juror compares every pair and each juror's policy winners are votes."""
    if len(candidates) == 1:
        candidates[0].verdicts.append(
            Verdict(critic=CRITIC_NAME, passed=True, score=1.0, reason="the only candidate of its cast left to compare")
        )
        return
    seats = context.seats(CRITIC_NAME)
    outcomes: dict[tuple[int, ...], dict[str, int]] = {}
    tokens = [0] * len(candidates)
    prompt_tokens = [0] * len(candidates)
    failed_pairs = 0
    for i, j in itertools.combinations(range(len(candidates)), 2):
        seed = candidates[i].generation.seed + j
        prompted_before = [seat.meter.prompt_tokens if seat.meter else 0 for seat in seats]
        compared = await asyncio.gather(
            *(compare((i, candidates[i]), (j, candidates[j]), config, seat, seed) for seat in seats)
        )
        for juror, (winners, spent) in enumerate(compared):
            # a comparison's cost is the pair's, shared between its two dialogues
            tokens[i] += spent // 2
            tokens[j] += spent - spent // 2
            meter = seats[juror].meter
            prompted = (meter.prompt_tokens if meter else 0) - prompted_before[juror]
            prompt_tokens[i] += prompted // 2
            prompt_tokens[j] += prompted - prompted // 2
            if winners is None:
                failed_pairs += 1
            else:
                outcomes[(i, j, juror)] = winners
    best, votes = majority_vote(len(candidates), outcomes)
    possible = len(POLICIES) * (len(candidates) - 1) * len(seats)
    note = f"; {failed_pairs} comparison(s) gave no usable answer" if failed_pairs else ""
    judge = " + ".join(seat.judge_model or "?" for seat in seats)
    for index, record in enumerate(candidates):
        won = index == best
        reason = (
            f"best of {len(candidates)} candidates: {votes[index]} of {possible} policy votes{note}"
            if won
            else f"not the best of {len(candidates)}: {votes[index]} of {possible} votes, {candidates[best].id} had {votes[best]}{note}"
        )
        record.verdicts.append(
            Verdict(
                critic=CRITIC_NAME,
                passed=won,
                score=round(votes[index] / possible, 4),
                reason=reason,
                tokens=tokens[index],
                prompt_tokens=prompt_tokens[index],
                judge=judge,
            )
        )
