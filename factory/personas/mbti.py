"""MBTI personas: the 16 types, each with its four axes, a description and first-person
statements, sampled deterministically for a seed."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from factory.errors import RecipeError
from factory.personas.demographics import sample_demographics
from factory.records import PersonaProfile

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
        return tuple(AXES[letter] for letter in self.code)  # type: ignore[return-value]


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


def mbti_persona(code: str, index: int, rng: random.Random) -> PersonaProfile:
    kind = MBTI_TYPES[code]
    name, demographics = sample_demographics(rng)
    axes = "; ".join(kind.axes)
    digest = hashlib.sha256(f"{code}|{name}|{demographics.model_dump_json()}".encode()).hexdigest()[:8]
    return PersonaProfile(
        id=f"mbti-{index:05d}-{code.lower()}-{digest}",
        kind="mbti",
        name=name,
        demographics=demographics,
        mbti=code,
        statements=list(kind.statements),
        description=f"{name} is an {code} ({kind.nickname}). {kind.description} Axes: {axes}.",
        source=f"mbti sampler #{index}",
    )


def sample_mbti(count: int, rng: random.Random, types: list[str] | None = None) -> list[PersonaProfile]:
    """Sample ``count`` MBTI personas; types cycle so every allowed type appears before any repeats."""
    allowed = [t.upper() for t in types] if types else list(MBTI_TYPES)
    unknown = [t for t in allowed if t not in MBTI_TYPES]
    if unknown:
        raise RecipeError(
            f"unknown MBTI type(s) {', '.join(unknown)}; valid types are {', '.join(MBTI_TYPES)}",
            field="personas.types",
        )
    order = list(allowed)
    rng.shuffle(order)
    return [mbti_persona(order[i % len(order)], i, rng) for i in range(count)]
