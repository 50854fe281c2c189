"""USP's implicit user profiles: an LLM reads a real conversation and writes who the user is.

The extractor sees the user and assistant turns only. A system message, where the data has one
(USP's data writes the user's profile there), is set aside as the reference profile and never
shown to the extractor; :func:`agreement` compares what was extracted with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from factory.llm.ask import text_pattern
from factory.llm.embeddings import Embedder
from factory.llm.tasks import JsonRequest, JsonTaskRunner
from factory.personas.conversations import Conversation, load_conversations, load_hub_conversations
from factory.personas.source import Made, SourceContext
from factory.recipes.personas import ImplicitSource
from factory.records import Attribute, BigFiveScores, Demographics, Dropped, PersonaProfile
from factory.traits import BIG_FIVE_TRAITS, coarse_band

SYSTEM = (
    "You are an analyst who infers what a user is like from how they chat with an AI assistant. "
    "You answer with one JSON object and nothing else."
)

_TEXT = {"type": "string", "pattern": text_pattern(1, 200)}
_SHORT = {"type": "string", "pattern": text_pattern(1, 40)}
PROFILE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "age": _SHORT,
        "gender": _SHORT,
        "occupation": _TEXT,
        "education": _TEXT,
        "location": _TEXT,
        "goals": {"type": "array", "items": _TEXT, "minItems": 1, "maxItems": 4},
        "big_five": {
            "type": "object",
            # an enum, not minimum/maximum: every constrained decoder enforces enums
            "properties": {trait: {"type": "integer", "enum": list(range(1, 8))} for trait in BIG_FIVE_TRAITS},
            "required": list(BIG_FIVE_TRAITS),
            "additionalProperties": False,
        },
        "speaking_style": _TEXT,
        "tone": _TEXT,
        "statements": {"type": "array", "items": _TEXT, "minItems": 2, "maxItems": 6},
    },
    "required": [
        "age",
        "gender",
        "occupation",
        "education",
        "location",
        "goals",
        "big_five",
        "speaking_style",
        "tone",
        "statements",
    ],
    "additionalProperties": False,
}

UNKNOWN = {"", "unknown", "not specified", "not mentioned", "n/a", "none", "unclear", "not stated"}


def transcript(conversation: Conversation, max_chars: int) -> str:
    """The turns as ``User:`` / ``Assistant:`` lines. Assistant turns are cut short first: the
    user's own words are the evidence."""
    lines = []
    budget = max_chars
    for role, content in conversation.turns:
        limit = 1200 if role == "user" else 300
        text = content if len(content) <= limit else content[:limit] + " [...]"
        line = f"{'User' if role == 'user' else 'Assistant'}: {text}"
        if len(line) > budget:
            lines.append(line[:budget] + " [...]")
            break
        lines.append(line)
        budget -= len(line) + 1
    return "\n".join(lines)


def extractor_messages(conversation: Conversation, max_chars: int) -> list[dict[str, str]]:
    prompt = (
        "Read this conversation between a user and an AI assistant.\n\n"
        f"{transcript(conversation, max_chars)}\n\n"
        "Infer the user's profile. Objective facts: age, gender, occupation, education, location "
        "(write 'unknown' when the chat gives no hint), and the user's goals in this chat. "
        "Subjective traits: a Big Five estimate (openness, conscientiousness, extraversion, "
        "agreeableness, neuroticism, each 1 = very low to 7 = very high), the user's speaking style "
        "and tone. Finally write 2 to 6 statements the user could say about themself, in the first person."
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]


def _known(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    return None if text.lower().rstrip(".") in UNKNOWN else text


def _age(value: Any) -> int | None:
    match = re.search(r"\d{1,2}", str(value or ""))
    age = int(match.group()) if match else None
    return age if age is not None and 10 <= age <= 99 else None


def profile_from_extraction(conversation: Conversation, data: dict[str, Any]) -> PersonaProfile:
    """Raises ValueError (with the field) when the extraction cannot make a usable profile."""
    scores_data = data.get("big_five")
    if not isinstance(scores_data, dict):
        raise ValueError("big_five: missing")
    try:
        scores = BigFiveScores(**{trait: int(scores_data[trait]) for trait in BIG_FIVE_TRAITS})
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"big_five: {exc}") from None
    statements = [s.strip() for s in data.get("statements") or [] if isinstance(s, str) and s.strip()]
    if not statements:
        raise ValueError("statements: none given")
    goals = [g.strip() for g in data.get("goals") or [] if isinstance(g, str) and g.strip()]
    style = "; ".join(part for part in (_known(data.get("speaking_style")), _known(data.get("tone"))) if part)
    demographics = Demographics(
        age=_age(data.get("age")),
        gender=_known(data.get("gender")),
        occupation=_known(data.get("occupation")),
        education=_known(data.get("education")),
        location=_known(data.get("location")),
    )
    traits = ", ".join(f"{trait} {coarse_band(getattr(scores, trait))}" for trait in BIG_FIVE_TRAITS)
    return PersonaProfile(
        id=conversation.id,
        kind="implicit",
        demographics=demographics,
        big_five=scores,
        statements=statements,
        description=f"A user inferred from a real chat. Goals: {'; '.join(goals) or 'unknown'}. Big Five estimate: {traits}.",
        speaking_style=style,
        attributes=[Attribute(name="goal", value=goal) for goal in goals],
        source=f"implicit {conversation.source}",
    )


async def extract_profile(
    runner: JsonTaskRunner, conversation: Conversation, source: ImplicitSource
) -> PersonaProfile | Dropped:
    reply = await runner.ask(
        JsonRequest(
            messages=extractor_messages(conversation, source.max_chars),
            schema=PROFILE_SCHEMA,
            schema_name="implicit_profile",
            temperature=source.temperature,
            max_tokens=source.max_tokens,
        )
    )
    if reply.data is None:
        return Dropped(source="implicit", item=conversation.source, reason=reply.error or "no reply")
    try:
        return profile_from_extraction(conversation, reply.data)
    except ValueError as exc:
        return Dropped(source="implicit", item=conversation.source, reason=str(exc))


# -- agreement with the reference profiles -------------------------------------------------------

_PREAMBLE = re.compile(r"^.*?your profile is:\s*", re.I | re.S)
_CODA = re.compile(r"\s*You can say anything you want.*$", re.I | re.S)


def reference_parts(reference: str) -> tuple[str, str]:
    """USP's reference is a paragraph of objective facts, then one of personality and style."""
    text = _CODA.sub("", _PREAMBLE.sub("", reference.strip())).strip()
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
    if len(paragraphs) >= 2:
        return paragraphs[0], " ".join(paragraphs[1:])
    return text, text


def objective_text(profile: PersonaProfile) -> str:
    demo = profile.demographics
    facts = [
        f"{label} {value}"
        for label, value in (
            ("Age:", demo.age),
            ("Gender:", demo.gender),
            ("Occupation:", demo.occupation),
            ("Education:", demo.education),
            ("Location:", demo.location),
        )
        if value
    ]
    goals = [a.value for a in profile.attributes if a.name == "goal"]
    return ". ".join(facts + [f"Goal: {goal}" for goal in goals] + profile.statements)


def subjective_text(profile: PersonaProfile) -> str:
    scores = profile.big_five
    traits = (
        [f"{coarse_band(getattr(scores, trait))} {trait}" for trait in BIG_FIVE_TRAITS] if scores is not None else []
    )
    return ". ".join([profile.speaking_style, *traits])


@dataclass
class Agreement:
    """Embedding agreement between extracted profiles and their references.

    For each conversation i, the extracted profile is embedded and compared (cosine) with every
    reference. ``own`` is the mean similarity to its own reference, ``others`` the mean to the
    other conversations' references, and ``top1`` the share of profiles whose own reference is
    the most similar of all (chance: 1 / conversations). Computed separately for the objective
    facts and the subjective traits (USP's two paragraphs).
    """

    conversations: int
    embedder: str
    objective_own: float
    objective_others: float
    objective_top1: float
    subjective_own: float
    subjective_others: float
    subjective_top1: float

    @property
    def chance_top1(self) -> float:
        return 1 / self.conversations if self.conversations else 0.0

    def as_dict(self) -> dict[str, Any]:
        values = {key: value for key, value in self.__dict__.items()}
        values["chance_top1"] = round(self.chance_top1, 4)
        return {key: round(value, 4) if isinstance(value, float) else value for key, value in values.items()}


def _scores(extracted: np.ndarray, references: np.ndarray) -> tuple[float, float, float]:
    similarity = extracted @ references.T
    n = similarity.shape[0]
    own = float(np.mean(np.diag(similarity)))
    others = float((similarity.sum() - np.trace(similarity)) / (n * (n - 1))) if n > 1 else 0.0
    top1 = float(np.mean(np.argmax(similarity, axis=1) == np.arange(n)))
    return own, others, top1


def agreement(pairs: list[tuple[PersonaProfile, str]], embedder: Embedder) -> Agreement | None:
    """``pairs``: (extracted profile, reference text) for every conversation that has a reference."""
    if len(pairs) < 2:
        return None
    references = [reference_parts(reference) for _, reference in pairs]
    objective = _scores(
        embedder.embed([objective_text(profile) for profile, _ in pairs]),
        embedder.embed([ref[0] for ref in references]),
    )
    subjective = _scores(
        embedder.embed([subjective_text(profile) for profile, _ in pairs]),
        embedder.embed([ref[1] for ref in references]),
    )
    return Agreement(len(pairs), embedder.name, *objective, *subjective)


def build_implicit(
    runner: JsonTaskRunner,
    source: ImplicitSource,
    conversations: list[Conversation],
    embedder: Embedder | None,
    *,
    show_progress: bool = True,
) -> tuple[list[PersonaProfile], list[Dropped], Agreement | None]:
    dropped: list[Dropped] = []
    distinct: dict[str, Conversation] = {}
    for conversation in conversations:
        if not conversation.has_user_turn:
            dropped.append(Dropped("implicit", conversation.source, "no user turn to infer a profile from"))
        elif conversation.id in distinct:
            dropped.append(
                Dropped("implicit", conversation.source, f"the same conversation as {distinct[conversation.id].source}")
            )
        else:
            distinct[conversation.id] = conversation
    conversations = list(distinct.values())
    results = runner.gather(
        (extract_profile(runner, conversation, source) for conversation in conversations),
        desc="implicit profiles",
        show_progress=show_progress,
    )
    personas = [r for r in results if isinstance(r, PersonaProfile)]
    dropped += [r for r in results if isinstance(r, Dropped)]
    pairs = [
        (result, conversation.reference)
        for result, conversation in zip(results, conversations)
        if isinstance(result, PersonaProfile) and conversation.reference
    ]
    scores = agreement(pairs, embedder) if embedder is not None else None
    return personas, dropped, scores


class ImplicitProfiles:
    """``source: implicit``: USP's implicit profiles, inferred by the LLM from real chats."""

    def generative(self, settings: Any) -> bool:
        return True

    def attribution(self, settings: ImplicitSource) -> str | None:
        return "usp" if "usp" in (settings.path or "") else None

    def prepare(self, settings: ImplicitSource, resolve_path: Callable[[str], Path]) -> list[Conversation]:
        if settings.path is not None:
            return load_conversations(resolve_path(settings.path), settings.messages_field, settings.count)
        return load_hub_conversations(settings)

    def needs_embeddings(self, settings: ImplicitSource, prepared: list[Conversation]) -> bool:
        return any(conversation.reference for conversation in prepared)

    def make(self, settings: ImplicitSource, prepared: list[Conversation], context: SourceContext) -> Made:
        personas, dropped, agreement = build_implicit(
            context.llm(), settings, prepared, context.embedder, show_progress=context.show_progress
        )
        reports = {"implicit_agreement": agreement.as_dict()} if agreement is not None else {}
        return Made(personas, dropped, reports)
