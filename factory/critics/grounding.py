"""Grounding: does each speaker draw on their own persona? Judged with sentence embeddings, no LLM.

For every turn, its best cosine similarity to any of its speaker's own statements is set against
its best to any statement of the other speakers: a turn that fits someone else's persona better
than its own speaker's is off persona (replying to the partner's persona is talk, so it is not
counted against a speaker; it just is not their own). Most turns of a persona-grounded conversation
use no persona at all ("how are you?"), so a speaker is judged on their best-grounded turns: their
grounding is the mean own-minus-other margin of their two best turns (one, if they spoke once).
The dialogue's grounding is its least grounded speaker's (every speaker must play their own
persona), and it passes at the threshold.

This is the critic that is right on a laptop: the packaged all-MiniLM-L6-v2 model is enough to
tell whose persona a line belongs to, where a 135M judge model is at chance.
"""

from __future__ import annotations

import asyncio

import numpy as np

from factory.critics.base import JudgeContext, no_turns
from factory.errors import PipelineError
from factory.llm.embeddings import Embedder
from factory.recipes.critics import GroundingCriticConfig
from factory.recipes.extensions import CriticSpec
from factory.records import DialogueRecord, PersonaProfile, Verdict

CRITIC_NAME = "grounding"
BEST_TURNS = 2  # a speaker's turns judged: persona use is a few turns of a conversation, not most


def line_margins(own: np.ndarray, others: np.ndarray | None, said: np.ndarray) -> np.ndarray:
    """Per line of ``said``, its best cosine to the speaker's own statements less its best to
    anyone else's (none: 0)."""
    other_best = (said @ others.T).max(axis=1) if others is not None and len(others) else np.zeros(len(said))
    return np.asarray((said @ own.T).max(axis=1) - other_best)


def speaker_groundings(statements: list[np.ndarray], turns: list[tuple[int, np.ndarray]]) -> list[float | None]:
    """Each speaker's grounding, from their statements' vectors and the (speaker, vector) of every
    turn (L2-normalised rows, so a dot product is a cosine). None for a speaker with no turns or
    no statements."""
    groundings: list[float | None] = []
    for speaker, own in enumerate(statements):
        vectors = [vector for who, vector in turns if who == speaker]
        others = [s for index, s in enumerate(statements) if index != speaker and len(s)]
        if not vectors or not len(own):
            groundings.append(None)
            continue
        margins = np.sort(line_margins(own, np.concatenate(others) if others else None, np.stack(vectors)))[::-1]
        groundings.append(float(margins[:BEST_TURNS].mean()))
    return groundings


def embedded_statements(
    speakers: list[PersonaProfile], embedder: Embedder, lines: list[str]
) -> tuple[list[np.ndarray], np.ndarray]:
    """Each speaker's statement vectors, and the vectors of ``lines``, from one embedding call."""
    vectors = embedder.embed([*(statement for persona in speakers for statement in persona.statements), *lines])
    statements, start = [], 0
    for persona in speakers:
        statements.append(vectors[start : start + len(persona.statements)])
        start += len(persona.statements)
    return statements, vectors[start:]


async def judge(record: DialogueRecord, config: GroundingCriticConfig, context: JudgeContext) -> Verdict:
    if not record.turns:
        return no_turns(CRITIC_NAME)
    if context.embedder is None:
        raise PipelineError("the grounding critic needs an embedding model, and none was given")
    embedder = context.embedder
    speaker_of = {persona.id: index for index, persona in enumerate(record.speakers)}
    # off the loop: the endpoint stays busy
    statements, said = await asyncio.to_thread(
        embedded_statements, record.speakers, embedder, [turn.text for turn in record.turns]
    )
    turns = [(speaker_of.get(turn.speaker, -1), said[i]) for i, turn in enumerate(record.turns)]
    groundings = speaker_groundings(statements, turns)
    known = [(index, g) for index, g in enumerate(groundings) if g is not None]
    if not known:
        return Verdict(critic=CRITIC_NAME, passed=False, score=0.0, reason="no speaker with both turns and statements")
    weakest, grounding = min(known, key=lambda item: item[1])
    name = record.speaker_name(record.speakers[weakest].id)
    each = ", ".join(f"{record.speaker_name(record.speakers[i].id)} {g:+.2f}" for i, g in known)
    passed = grounding >= config.threshold
    reason = (
        f"every speaker draws on their own persona ({each})"
        if passed
        else f"{name} does not draw on their own persona ({each}; threshold {config.threshold:+.2f})"
    )
    # the score in [0, 1]: a margin of -1 (every line someone else's) to +1
    return Verdict(
        critic=CRITIC_NAME,
        passed=passed,
        score=round((grounding + 1) / 2, 4),
        reason=reason,
        judge=embedder.name,
    )


SPEC = CriticSpec(
    CRITIC_NAME,
    GroundingCriticConfig,
    judge,
    "Does each speaker draw on their own persona? (sentence embeddings, no LLM)",
    embeds=True,
)
