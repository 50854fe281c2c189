"""CharacterChat's persona memory: before each turn, the aspect of the agent's profile that fits the
last utterance is put in front of it, unless it recalled that aspect lately."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from factory.records import PersonaProfile

_WORD = re.compile(r"[a-z']+")
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "with",
        "from",
        "by",
        "about",
        "as",
        "is",
        "am",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "i",
        "me",
        "my",
        "mine",
        "we",
        "our",
        "you",
        "your",
        "he",
        "she",
        "it",
        "its",
        "they",
        "them",
        "their",
        "this",
        "that",
        "these",
        "those",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "not",
        "no",
        "so",
        "very",
        "just",
        "really",
        "can",
        "will",
        "would",
        "should",
        "could",
        "what",
        "which",
        "who",
        "how",
        "when",
        "where",
        "why",
        "there",
        "here",
        "all",
        "any",
        "some",
        "more",
        "most",
        "much",
        "many",
        "too",
        "also",
        "than",
        "then",
        "out",
        "up",
        "down",
        "over",
        "into",
        "like",
        "get",
        "got",
        "one",
        "im",
        "i'm",
        "you're",
        "it's",
    ]
)


def _stem(word: str) -> str:
    """A crude suffix strip, the same on both sides of a comparison: marathons ~ marathon, baking ~ bake."""
    for suffix in ("ing", "ed", "es", "s", "e"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> set[str]:
    return {_stem(word) for word in _WORD.findall(text.lower()) if word not in STOPWORDS and len(word) > 2}


def aspects_of(persona: PersonaProfile) -> list[str]:
    """What the memory can recall: the statements and the named facts of the profile."""
    return [*persona.statements, *(f"{a.name}: {a.value}" for a in persona.attributes)]


@dataclass
class PersonaMemory:
    """Picks the aspect of a profile that shares the most content words with the last utterance
    (at least ``min_overlap`` of the aspect's words), leaving out aspects this agent recalled in
    its last ``recent`` turns, so that one statement does not take over the conversation."""

    aspects: list[str]
    recent: int = 2
    min_overlap: float = 0.15
    picks: list[str | None] = field(default_factory=list)

    def pick(self, utterance: str | None) -> str | None:
        chosen = None
        if utterance:
            said = content_words(utterance)
            blocked = {aspect for aspect in self.picks[-self.recent :] if aspect} if self.recent else set()
            best = 0.0
            for aspect in self.aspects:
                words = content_words(aspect)
                if aspect in blocked or not words:
                    continue
                overlap = len(words & said) / len(words)
                if overlap >= self.min_overlap and overlap > best:
                    chosen, best = aspect, overlap
        self.picks.append(chosen)
        return chosen

    def talking_point(self, said: list[str]) -> str | None:
        """The first aspect not yet given to the agent nor said by it in ``said`` (its own lines),
        replacing this turn's empty pick; None once every aspect has come up."""
        spoken = content_words(" ".join(said))
        given = {aspect for aspect in self.picks if aspect}
        for aspect in self.aspects:
            words = content_words(aspect)
            if aspect in given or not words or len(words & spoken) / len(words) >= self.min_overlap * 2:
                continue
            if self.picks and self.picks[-1] is None:
                self.picks[-1] = aspect
            return aspect
        return None
