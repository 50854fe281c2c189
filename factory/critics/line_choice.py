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
from factory.critics.grounding import embedded_statements, line_margins, speaker_groundings
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
        margins: list[float] | None = None
        if len(cleanest) > 1 and self.critics.grounding.enabled and self.context.embedder is not None:
            groundings, line_scores = await asyncio.to_thread(
                candidate_groundings, record, turns, [candidates[n] for n in cleanest], self.context.embedder
            )
            threshold = self.critics.grounding.threshold
            reaching = [i for i, g in enumerate(groundings) if g is None or g >= threshold] or range(len(cleanest))
            cleanest, margins = [cleanest[i] for i in reaching], [line_scores[i] for i in reaching]
        if len(cleanest) == 1:
            return cleanest[0]
        kept = [candidates[n] for n in cleanest]
        scores = await asyncio.to_thread(self._scores, record, turns, kept, margins)
        if not scores:
            return cleanest[0]
        # each scoring critic ranks the candidates; the best summed rank wins (no scale to weigh)
        ranks = np.sum([np.argsort(np.argsort(-np.asarray(each), kind="stable"), kind="stable") for each in scores], 0)
        return cleanest[int(np.argmin(ranks))]

    def _scores(
        self, record: DialogueRecord, turns: list[Turn], candidates: list[Turn], margins: list[float] | None
    ) -> list[list[float]]:
        """Per scoring critic the recipe has on, a score for each candidate (higher is better);
        ``margins`` are the grounding critic's, measured already."""
        scores = []
        if self.critics.learned.enabled:
            critic, embedder = loaded(self.critics.learned), embedder_for_critics()
            rows = []
            for line in candidates:
                profiles, lines = record_parts(record.model_copy(update={"turns": [*turns, line]}))
                rows.append(features(critic.vectors(profiles, lines, embedder), critic.probes))
            scores.append([float(p) for p in critic.head.probabilities(np.stack(rows))])
        if margins is not None:
            scores.append(margins)
        return scores


def candidate_groundings(
    record: DialogueRecord, turns: list[Turn], candidates: list[Turn], embedder: Embedder
) -> tuple[list[float | None], list[float]]:
    """Per candidate line, from one embedding call: its speaker's grounding with it (the grounding
    critic's measure of their lines so far and this one; None without statements), and the line's
    own margin (its best cosine to the speaker's statements less its best to anyone else's)."""
    speaker = next(index for index, persona in enumerate(record.speakers) if persona.id == candidates[0].speaker)
    index = {persona.id: n for n, persona in enumerate(record.speakers)}
    earlier = [turn.text for turn in turns if index.get(turn.speaker) == speaker]
    statements, said = embedded_statements(record.speakers, embedder, [*earlier, *(c.text for c in candidates)])
    before, lines = [(speaker, vector) for vector in said[: len(earlier)]], said[len(earlier) :]
    groundings = [speaker_groundings(statements, [*before, (speaker, line)])[speaker] for line in lines]
    own = statements[speaker]
    if not len(own):
        return groundings, [0.0] * len(candidates)
    others = [vectors for n, vectors in enumerate(statements) if n != speaker and len(vectors)]
    margins = line_margins(own, np.concatenate(others) if others else None, lines)
    return groundings, [float(m) for m in margins]
