"""What the learned critic sees of a dialogue: a few numbers, each one measured for a reason.

A conversation worth training on has speakers who each draw on their own persona, turns that answer
the turn before them, no speaker saying the same thing twice, no line that is not a speaker's (an
assistant's boilerplate), and sentences that end. Each feature measures one of those on sentence
embeddings of the turns and the persona statements, so the head on top learns how much each
weighs, not what one corpus's conversations are about; that is what lets it judge dialogues of
another corpus.

Three of the features are small learned probes (:class:`Probes`): a response model (two
projections, so that a turn's query vector meets the next turn's key vector; trained contrastively
on real consecutive turns), an opener probe (does this line open a conversation?) and a boilerplate
probe (is this an assistant's line rather than a speaker's?).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

FEATURES = (
    "grounding_min",  # the least grounded speaker's own-minus-other persona margin (two best turns)
    "grounding_mean",
    "persona_fit_min",  # the least grounded speaker's best similarity to their own statements
    "own_persona_share",  # turns nearer their own speaker's persona than the partner's
    "persona_rank_min",  # the least grounded speaker: share of reference personas their lines fit worse than their own
    "persona_z_min",  # the same, as standard deviations above the reference personas' mean fit
    "response_mean",  # how well each turn answers the one before (response model)
    "response_min",
    "response_gain",  # adjacent pairs against non-adjacent ones: order, not only topic
    "opener_lead",  # the first turn opens a conversation more than any later turn does
    "adjacent_similarity",
    "self_repetition",  # a speaker's nearest pair of their own turns
    "self_copy",  # a speaker's largest word 3-gram overlap between two of their own turns
    "partner_copy",  # a turn's similarity to the partner's turn before it
    "boilerplate_max",  # the most assistant-like line
    "dangling_share",  # turns that end on a word no sentence ends on ("the", "and", "my")
    "short_share",  # turns of three words or fewer
    "mean_words_log",
)

# closed-class words a finished sentence does not end on: a turn ending on one was cut off
DANGLING = frozenset(
    [
        "a",
        "an",
        "the",
        "my",
        "your",
        "his",
        "her",
        "their",
        "our",
        "its",
        "and",
        "or",
        "but",
        "because",
        "if",
        "than",
        "whose",
        "of",
        "with",
        "from",
        "at",
        "into",
        "onto",
    ]
)  # words that end a short reply ("yes I do", "nice to meet you", "I'd love to") are left out
WORD = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True)
class Probes:
    """The learned parts the features use: the response model's projections (d x k) and two
    linear probes on a turn's vector (weights d, bias)."""

    query: np.ndarray
    key: np.ndarray
    opener: tuple[np.ndarray, float]
    boilerplate: tuple[np.ndarray, float]
    # other people's personas (statement vectors, and whose each is), to ask whether a speaker's lines
    # fit their own persona better than they fit anyone's
    reference: np.ndarray
    reference_owner: np.ndarray


@dataclass(frozen=True)
class DialogueVectors:
    """One dialogue, embedded: each turn's vector and speaker index, each speaker's statement vectors."""

    turns: np.ndarray  # (n, d), L2-normalised
    speakers: list[int]  # speaker index of each turn
    statements: list[np.ndarray]  # per speaker, (m_s, d)
    texts: list[str]


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms == 0, 1, norms)


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return np.asarray(1 / (1 + np.exp(-np.clip(values, -30, 30))))


def _groundings(dialogue: DialogueVectors) -> tuple[list[float], list[float], float]:
    """Each speaker's mean own-minus-other margin and mean own similarity over their two best turns,
    and the share of all turns nearer their own persona than another's."""
    margins, fits, nearer, counted = [], [], 0, 0
    for speaker, own in enumerate(dialogue.statements):
        said = dialogue.turns[[i for i, who in enumerate(dialogue.speakers) if who == speaker]]
        others = [s for index, s in enumerate(dialogue.statements) if index != speaker and len(s)]
        if not len(said) or not len(own):
            continue
        own_best = (said @ own.T).max(axis=1)
        other_best = (said @ np.concatenate(others).T).max(axis=1) if others else np.zeros(len(said))
        margins.append(float(np.sort(own_best - other_best)[::-1][:2].mean()))
        fits.append(float(np.sort(own_best)[::-1][:2].mean()))
        nearer += int((own_best > other_best).sum())
        counted += len(said)
    return margins or [0.0], fits or [0.0], nearer / counted if counted else 0.5


def _fit(said: np.ndarray, statements: np.ndarray) -> float:
    """How well a speaker's lines fit a persona: the mean of their two best turns' best statement."""
    return float(np.sort((said @ statements.T).max(axis=1))[::-1][:2].mean())


def _against_reference(dialogue: DialogueVectors, probes: Probes) -> tuple[float, float]:
    """For the speaker whose lines fit their own persona least well against the reference personas:
    the share of reference personas that fit worse, and the z-score of their own fit."""
    if not len(probes.reference):
        return 0.5, 0.0
    owners = int(probes.reference_owner.max()) + 1
    ranks, zs = [], []
    for speaker, own in enumerate(dialogue.statements):
        said = dialogue.turns[[i for i, who in enumerate(dialogue.speakers) if who == speaker]]
        if not len(said) or not len(own):
            continue
        best = said @ probes.reference.T  # (turns, reference statements)
        per_owner = np.full((len(said), owners), -1.0)
        np.maximum.at(per_owner.T, probes.reference_owner, best.T)
        fits = np.sort(per_owner, axis=0)[::-1][:2].mean(axis=0)
        mine = _fit(said, own)
        ranks.append(float((fits < mine).mean()))
        zs.append(float((mine - fits.mean()) / (fits.std() or 1.0)))
    return (min(ranks), min(zs)) if ranks else (0.5, 0.0)


def _response(dialogue: DialogueVectors, probes: Probes) -> tuple[float, float, float]:
    n = len(dialogue.turns)
    if n < 2:
        return 0.0, 0.0, 0.0
    scores = _unit(dialogue.turns @ probes.query) @ _unit(dialogue.turns @ probes.key).T
    adjacent = np.array([scores[i, i + 1] for i in range(n - 1)])
    later = [scores[i, j] for i in range(n) for j in range(i + 2, n)]
    baseline = float(np.mean(later)) if later else float(adjacent.mean())
    return float(adjacent.mean()), float(adjacent.min()), float(adjacent.mean()) - baseline


def _trigrams(text: str) -> set[tuple[str, ...]]:
    words = WORD.findall(text.lower())
    return {tuple(words[i : i + 3]) for i in range(len(words) - 2)}


def _repetition(dialogue: DialogueVectors) -> tuple[float, float, float]:
    """The nearest pair of one speaker's turns (cosine, and 3-gram Jaccard), and the nearest partner echo."""
    similarity = dialogue.turns @ dialogue.turns.T
    grams = [_trigrams(text) for text in dialogue.texts]
    semantic, lexical, echo = 0.0, 0.0, 0.0
    for i in range(len(dialogue.texts)):
        for j in range(i + 1, len(dialogue.texts)):
            if dialogue.speakers[i] == dialogue.speakers[j]:
                semantic = max(semantic, float(similarity[i, j]))
                union = grams[i] | grams[j]
                lexical = max(lexical, len(grams[i] & grams[j]) / len(union) if union else 0.0)
            elif j == i + 1:
                echo = max(echo, float(similarity[i, j]))
    return semantic, lexical, echo


def _surface(texts: list[str]) -> tuple[float, float, float]:
    words = [WORD.findall(text.lower()) for text in texts]
    # a question or an exclamation may end on "you" or "it": only an unpunctuated ending is cut off
    dangling = sum(1 for text, w in zip(texts, words) if w and w[-1] in DANGLING and text.rstrip()[-1:] not in "?!.")
    short = sum(1 for w in words if len(w) <= 3)
    mean_words = sum(len(w) for w in words) / max(1, len(words))
    return dangling / max(1, len(texts)), short / max(1, len(texts)), float(np.log1p(mean_words))


def features(dialogue: DialogueVectors, probes: Probes) -> np.ndarray:
    """The dialogue's feature row, in :data:`FEATURES` order."""
    margins, fits, own_share = _groundings(dialogue)
    rank, z = _against_reference(dialogue, probes)
    response_mean, response_min, response_gain = _response(dialogue, probes)
    opener = _sigmoid(dialogue.turns @ probes.opener[0] + probes.opener[1])
    opener_lead = float(opener[0] - (opener[2:].max() if len(opener) > 2 else 0.0))
    adjacent = [float(dialogue.turns[i] @ dialogue.turns[i + 1]) for i in range(len(dialogue.turns) - 1)]
    semantic, lexical, echo = _repetition(dialogue)
    boilerplate = _sigmoid(dialogue.turns @ probes.boilerplate[0] + probes.boilerplate[1])
    dangling, short, mean_words = _surface(dialogue.texts)
    row = [
        min(margins), float(np.mean(margins)), min(fits), own_share, rank, z, response_mean, response_min, response_gain, opener_lead,
        float(np.mean(adjacent)) if adjacent else 0.0, semantic, lexical, echo,
        float(boilerplate.max()) if len(boilerplate) else 0.0, dangling, short, mean_words,
    ]  # fmt: skip
    return np.asarray(row, dtype=np.float64)
