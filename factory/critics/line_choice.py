"""Which of a turn's candidate lines a role-play keeps (``generation.role_play.line_candidates``):
the critics that will judge the dialogue choose, line by line, as best-of-N sampling against a
reward model does.

Each candidate is put after the turns so far and the partial dialogue is judged: first by the
heuristic gate (fewest problems: a line cut off, boilerplate, a speaker saying their own line
again, a copy of the partner's); then, while the speaker has not yet drawn on their own persona
(the grounding critic's measure of their lines so far is under its threshold), only the lines that
bring them to it are kept, where any does: a small model given a talking point uses it in about
two lines of five, and otherwise echoes its partner's topic; among those, by the learned critic's
probability that the dialogue reads as a real conversation, and by the grounding critic's measure
for the line (its speaker's own persona against the others'), each where the recipe has it on:
each ranks the candidates and the best summed rank is kept. With neither, the first of the
cleanest is kept.
Every candidate shares the prefix, so what the prefix already breaks (too few turns so far) weighs
the same on each and the choice is by the new line alone.

The same critics judge the finished dialogue, so a chosen line is one they already like: the
card's pass rates then measure what the writer could be made to say, and what does not choose
(the LLM judges, the distance to real conversations) is the independent word.
"""

from __future__ import annotations

import asyncio

import numpy as np

from factory.critics.base import JudgeContext
from factory.critics.grounding import line_margins, speaker_groundings
from factory.critics.heuristic import heuristic_verdict
from factory.critics.learned.critic import embedder_for_critics, loaded
from factory.critics.learned.features import features
from factory.critics.learned.model import record_parts
from factory.llm.embeddings import Embedder
from factory.recipes.critics import CriticsConfig
from factory.records import DialogueRecord, Turn


class CriticsLineChooser:
    """The engine's :class:`~factory.generation.writer.LineChooser`, from the recipe's critics."""

    def __init__(self, critics: CriticsConfig, context: JudgeContext) -> None:
        self.critics, self.context = critics, context

    async def __call__(self, record: DialogueRecord, turns: list[Turn], candidates: list[Turn]) -> int:
        heuristic = self.critics.heuristic
        problems = [
            heuristic_verdict([*turns, line], record.speakers, self.context.generation, heuristic).score or 0.0
            for line in candidates
        ]
        cleanest = [n for n, score in enumerate(problems) if score == max(problems)]
        if len(cleanest) > 1 and self.critics.grounding.enabled and self.context.embedder is not None:
            reached = await asyncio.to_thread(
                groundings_reached, record, turns, [candidates[n] for n in cleanest], self.context.embedder,
                self.critics.grounding.threshold,
            )  # fmt: skip
            cleanest = [n for n, reaches in zip(cleanest, reached) if reaches] or cleanest
        if len(cleanest) == 1:
            return cleanest[0]
        kept = [candidates[n] for n in cleanest]
        scores = await asyncio.to_thread(self._scores, record, turns, kept)
        if not scores:
            return cleanest[0]
        # each scoring critic ranks the candidates; the best summed rank wins (no scale to weigh)
        ranks = np.sum([np.argsort(np.argsort(-np.asarray(each), kind="stable"), kind="stable") for each in scores], 0)
        return cleanest[int(np.argmin(ranks))]

    def _scores(self, record: DialogueRecord, turns: list[Turn], candidates: list[Turn]) -> list[list[float]]:
        """Per scoring critic the recipe has on, a score for each candidate (higher is better)."""
        scores = []
        if self.critics.learned.enabled:
            critic, embedder = loaded(self.critics.learned), embedder_for_critics()
            rows = []
            for line in candidates:
                profiles, lines = record_parts(record.model_copy(update={"turns": [*turns, line]}))
                rows.append(features(critic.vectors(profiles, lines, embedder), critic.probes))
            scores.append([float(p) for p in critic.head.probabilities(np.stack(rows))])
        if self.critics.grounding.enabled and self.context.embedder is not None:
            scores.append(own_persona_margins(record, candidates, self.context.embedder))
        return scores


def own_persona_margins(record: DialogueRecord, candidates: list[Turn], embedder: Embedder) -> list[float]:
    """The grounding critic's measure for each line, with its embedding model: the line's best
    cosine to its speaker's own statements less its best to anyone else's."""
    speaker = next(index for index, persona in enumerate(record.speakers) if persona.id == candidates[0].speaker)
    own = record.speakers[speaker].statements
    others = [s for index, persona in enumerate(record.speakers) if index != speaker for s in persona.statements]
    if not own:
        return [0.0] * len(candidates)
    vectors = embedder.embed([*own, *others, *(line.text for line in candidates)])
    split = len(own) + len(others)
    return [float(m) for m in line_margins(vectors[: len(own)], vectors[len(own) : split], vectors[split:])]


def groundings_reached(
    record: DialogueRecord, turns: list[Turn], candidates: list[Turn], embedder: Embedder, threshold: float
) -> list[bool]:
    """Per candidate, whether the speaker's grounding (the grounding critic's, over their lines so
    far and this one) reaches ``threshold``; every one does once two earlier lines have."""
    speaker = next(index for index, persona in enumerate(record.speakers) if persona.id == candidates[0].speaker)
    index = {persona.id: n for n, persona in enumerate(record.speakers)}
    statements = [statement for persona in record.speakers for statement in persona.statements]
    earlier = [turn for turn in turns if index.get(turn.speaker) == speaker]
    vectors = embedder.embed([*statements, *(t.text for t in earlier), *(c.text for c in candidates)])
    profiles, start = [], 0
    for persona in record.speakers:
        profiles.append(vectors[start : start + len(persona.statements)])
        start += len(persona.statements)
    said = [(speaker, vectors[start + n]) for n in range(len(earlier))]
    reached = []
    for n in range(len(candidates)):
        grounding = speaker_groundings(profiles, [*said, (speaker, vectors[start + len(earlier) + n])])[speaker]
        reached.append(grounding is None or grounding >= threshold)
    return reached
