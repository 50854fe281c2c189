"""The personality vocabulary every part of the factory speaks: the 16 MBTI types with their
axes, and the Big Five traits with their levels (1-7) and bands.

A band is the coarse reading of a level that quotas, casting, coverage tables and the portrayal
critic count: low (1-2), mid (3-5), high (6-7). It is defined here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

BIG_FIVE_TRAITS = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")

BigFiveBand = Literal["low", "mid", "high"]
BAND_LEVELS: dict[str, tuple[int, ...]] = {"low": (1, 2), "mid": (3, 4, 5), "high": (6, 7)}
BIG_FIVE_BANDS: tuple[str, ...] = get_args(BigFiveBand)
if tuple(BAND_LEVELS) != BIG_FIVE_BANDS:  # pragma: no cover - a definition error, caught at import
    raise ImportError("BigFiveBand and BAND_LEVELS name different bands")
BANDS_TEXT = ", ".join(f"{band} {levels[0]}-{levels[-1]}" for band, levels in BAND_LEVELS.items())


def coarse_band(level: int) -> str:
    """The band of a level on 1-7."""
    return next(band for band, levels in BAND_LEVELS.items() if level <= levels[-1])


def level_band(level: int) -> str:
    """A level in words, finer than its band, as a persona's description says it."""
    if level <= 2:
        return "low"
    if level <= 5:
        return "average" if level == 4 else ("somewhat low" if level == 3 else "somewhat high")
    return "high"


AXES = {
    "E": "Extraversion: draws energy from people and activity",
    "I": "Introversion: draws energy from solitude and reflection",
    "S": "Sensing: trusts concrete facts and experience",
    "N": "Intuition: looks for patterns, meanings and possibilities",
    "T": "Thinking: decides by logic and consistency",
    "F": "Feeling: decides by values and the people affected",
    "J": "Judging: likes plans, order and closure",
    "P": "Perceiving: likes to keep options open and adapt",
}


@dataclass(frozen=True)
class MBTIType:
    code: str
    nickname: str
    description: str
    statements: tuple[str, ...]

    @property
    def axes(self) -> tuple[str, str, str, str]:
        first, second, third, fourth = (AXES[letter] for letter in self.code)
        return first, second, third, fourth


MBTI_TYPES: dict[str, MBTIType] = {
    t.code: t
    for t in (
        MBTIType(
            "INTJ",
            "Architect",
            "A strategic, independent thinker who builds long-range plans and questions everything.",
            (
                "I like to have a plan for everything.",
                "I prefer working alone on hard problems.",
                "Small talk bores me.",
            ),
        ),
        MBTIType(
            "INTP",
            "Logician",
            "A curious, analytical mind that loves theories and dislikes rules it cannot see the reason for.",
            (
                "I can spend hours reading about how things work.",
                "I often lose track of time when thinking.",
                "I question rules that make no sense.",
            ),
        ),
        MBTIType(
            "ENTJ",
            "Commander",
            "A decisive, ambitious leader who organises people towards goals.",
            (
                "I like to be in charge of projects.",
                "I set ambitious goals for myself.",
                "I get impatient with inefficiency.",
            ),
        ),
        MBTIType(
            "ENTP",
            "Debater",
            "A quick-witted, inventive person who enjoys arguing ideas from every side.",
            ("I love a good debate.", "I get bored with routine quickly.", "I always have a new idea to try."),
        ),
        MBTIType(
            "INFJ",
            "Advocate",
            "A quiet idealist with strong values who wants to help people grow.",
            (
                "I care deeply about helping others.",
                "I need quiet time to recharge.",
                "I think a lot about the meaning of life.",
            ),
        ),
        MBTIType(
            "INFP",
            "Mediator",
            "A gentle, imaginative idealist guided by personal values.",
            (
                "I write poetry in my spare time.",
                "I care about staying true to myself.",
                "I avoid conflict when I can.",
            ),
        ),
        MBTIType(
            "ENFJ",
            "Protagonist",
            "A warm, persuasive organiser who brings out the best in others.",
            ("I love bringing people together.", "I often give my friends advice.", "I volunteer in my community."),
        ),
        MBTIType(
            "ENFP",
            "Campaigner",
            "An enthusiastic, creative free spirit who connects easily with people.",
            (
                "I make friends everywhere I go.",
                "I start more projects than I finish.",
                "I get excited about new possibilities.",
            ),
        ),
        MBTIType(
            "ISTJ",
            "Logistician",
            "A dependable, thorough person who values duty, facts and tradition.",
            ("I always keep my promises.", "I like following a routine.", "I keep careful records of my expenses."),
        ),
        MBTIType(
            "ISFJ",
            "Defender",
            "A caring, loyal protector who remembers details about the people around them.",
            ("I take care of my family.", "I remember everyone's birthday.", "I prefer familiar places to new ones."),
        ),
        MBTIType(
            "ESTJ",
            "Executive",
            "An organised, direct manager who values order and clear rules.",
            ("I like things done the right way.", "I organise events at work.", "I say what I think."),
        ),
        MBTIType(
            "ESFJ",
            "Consul",
            "A sociable, attentive host who keeps people happy and connected.",
            (
                "I love hosting dinners for friends.",
                "I notice when someone feels left out.",
                "Traditions matter to me.",
            ),
        ),
        MBTIType(
            "ISTP",
            "Virtuoso",
            "A calm, practical troubleshooter who likes to take things apart.",
            ("I fix cars in my garage.", "I stay calm in emergencies.", "I would rather act than talk."),
        ),
        MBTIType(
            "ISFP",
            "Adventurer",
            "A gentle, artistic soul who lives in the moment.",
            ("I paint landscapes.", "I love being out in nature.", "I keep my feelings to myself."),
        ),
        MBTIType(
            "ESTP",
            "Entrepreneur",
            "An energetic, bold doer who loves action and risk.",
            ("I love extreme sports.", "I make decisions quickly.", "I get restless sitting still."),
        ),
        MBTIType(
            "ESFP",
            "Entertainer",
            "A spontaneous, fun-loving performer who enjoys the spotlight.",
            ("I love dancing at parties.", "I like to make people laugh.", "I live for the moment."),
        ),
    )
}
