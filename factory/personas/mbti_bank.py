"""CharacterChat's MBTI character bank (after MBTI-1024): an LLM writes characters for each type.

Each character has CharacterChat's fields; its tone is turned into a few "When the other party
..., you say ..." behaviour examples. A reply is validated field by field; a character that fails
is asked for again with another seed, and dropped with every attempt's reason when none passes.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from factory.errors import RecipeError
from factory.llm.ask import text_pattern
from factory.llm.tasks import JsonRequest, JsonTaskRunner
from factory.personas.demographics import GENDERS, LOCATIONS
from factory.personas.source import Made, SourceContext
from factory.recipes.personas import MBTIBankSource
from factory.records import Attribute, Demographics, Dropped, PersonaProfile
from factory.traits import MBTI_TYPES

# Fields written as first-person sentences; they become the persona's statements, in this order.
SENTENCE_FIELDS = (
    "job",
    "personality",
    "advantages_and_disadvantages",
    "hobby",
    "growth_experience",
    "family_relationship",
    "working_conditions",
    "social_relationship",
    "emotional_state",
    "living_conditions",
    "recent_worry",
)
BEHAVIOUR = re.compile(r"^\s*when the other party\b.+,\s*you say\b.+", re.I | re.S)
FIRST_PERSON = re.compile(r"\b(i|i'm|i've|i'd|my|me|myself)\b", re.I)


# Patterns keep even a small model inside the shape validation asks for (see text_pattern);
# validation still checks every reply.
SENTENCE_PATTERN = text_pattern(8, 140, prefix="(I|My) ")
BEHAVIOUR_PATTERN = r'^When the other party [^"\\\n,]{3,80}, you say [^"\\\n]{3,120}$'
NAME_PATTERN = r"^[A-Z][a-z]{1,14}( [A-Z][a-z]{1,14})?$"


def character_schema(examples: int) -> dict[str, Any]:
    sentence = {"type": "string", "pattern": SENTENCE_PATTERN}
    properties: dict[str, Any] = {
        "name": {"type": "string", "pattern": NAME_PATTERN},
        "gender": {"type": "string", "enum": list(GENDERS)},
        "age": {"type": "integer", "minimum": 16, "maximum": 90},
        "region": {"type": "string", "pattern": text_pattern(1, 40, prefix="[A-Z]")},
        "tone": {"type": "string", "pattern": text_pattern(5, 80)},
    }
    properties.update({name: sentence for name in SENTENCE_FIELDS})
    properties["behaviour_examples"] = {
        "type": "array",
        "items": {"type": "string", "pattern": BEHAVIOUR_PATTERN},
        "minItems": examples,
        "maxItems": examples,
    }
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


class MBTICharacter(BaseModel):
    """A character as validated; the reason a reply is refused is this model's first error."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    name: str = Field(min_length=2, max_length=60)
    gender: str
    age: int = Field(ge=16, le=90)
    region: str = Field(min_length=2, max_length=80)
    tone: str = Field(min_length=5, max_length=200)
    job: str
    personality: str
    advantages_and_disadvantages: str
    hobby: str
    growth_experience: str
    family_relationship: str
    working_conditions: str
    social_relationship: str
    emotional_state: str
    living_conditions: str
    recent_worry: str
    behaviour_examples: list[str]

    @field_validator("gender")
    @classmethod
    def _known_gender(cls, value: str) -> str:
        if value.lower() not in GENDERS:
            raise ValueError(f"gender {value!r} is not one of {', '.join(GENDERS)}")
        return value.lower()

    @field_validator("name")
    @classmethod
    def _real_name(cls, value: str) -> str:
        if value.lower() in {"name", "character", "unknown", "n/a"} or not re.search(r"[A-Za-z]", value):
            raise ValueError(f"{value!r} is a placeholder, not a name")
        return value

    @field_validator(*SENTENCE_FIELDS)
    @classmethod
    def _first_person_sentence(cls, value: str) -> str:
        if len(value) < 10:
            raise ValueError("too short for a sentence")
        if not FIRST_PERSON.search(value):
            raise ValueError(f"not written in the first person: {value[:60]!r}")
        return value

    @field_validator("behaviour_examples")
    @classmethod
    def _behaviour_shape(cls, examples: list[str]) -> list[str]:
        for number, example in enumerate(examples, start=1):
            if not BEHAVIOUR.match(example):
                raise ValueError(f"example {number} is not 'When the other party ..., you say ...': {example[:60]!r}")
        return [example.strip() for example in examples]

    @model_validator(mode="after")
    def _distinct_fields(self) -> MBTICharacter:
        values = [getattr(self, name).lower() for name in SENTENCE_FIELDS]
        repeated = len(values) - len(set(values))
        if repeated > 1:
            raise ValueError(f"{repeated} sentence fields repeat another field word for word")
        return self


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"]) or "character"
    return f"{where}: {error['msg']}"


@dataclass(frozen=True)
class CharacterSlot:
    """One character to write: its type, its number within the type, and hints that spread the
    bank over genders, ages and places (a small model left alone writes the same person)."""

    code: str
    number: int
    gender: str
    age: int
    region: str
    seed: int

    @property
    def id(self) -> str:
        return f"mbti_bank-{self.code.lower()}-{self.number:04d}"


def plan_slots(source: MBTIBankSource, rng: random.Random) -> list[CharacterSlot]:
    codes = [code.upper() for code in source.types] if source.types else list(MBTI_TYPES)
    unknown = [code for code in codes if code not in MBTI_TYPES]
    if unknown:
        raise RecipeError(
            f"unknown MBTI type(s) {', '.join(unknown)}; valid types are {', '.join(MBTI_TYPES)}",
            field="sources.types",
        )
    return [
        CharacterSlot(
            code=code,
            number=number,
            gender=rng.choice(GENDERS),
            age=rng.randint(18, 75),
            region=rng.choice(LOCATIONS),
            seed=rng.randrange(2**31),
        )
        for code in codes
        for number in range(1, source.per_type + 1)
    ]


SYSTEM = "You create realistic, specific characters for role-play. You answer with one JSON object and nothing else."


def character_messages(slot: CharacterSlot, examples: int) -> list[dict[str, str]]:
    kind = MBTI_TYPES[slot.code]
    axes = "; ".join(kind.axes)
    fields = ", ".join(SENTENCE_FIELDS)
    prompt = (
        f"Create a character whose MBTI type is {slot.code} ({kind.nickname}): {kind.description}\n"
        f"The type's four axes: {axes}.\n"
        f"The character is a {slot.gender}, about {slot.age} years old, from {slot.region}.\n\n"
        "Give the character a first name (name), gender, age, region, and a tone: how they speak, in a few words.\n"
        f"Write each of these fields as one first-person sentence the character would say about themself "
        f"(using I or my): {fields}. Everything must fit the type.\n"
        f"Then write exactly {examples} behaviour_examples that show the tone, each of the form: "
        "When the other party <does something>, you say <what the character says>."
    )
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]


def character_profile(slot: CharacterSlot, character: MBTICharacter) -> PersonaProfile:
    kind = MBTI_TYPES[slot.code]
    # The content digest keeps ids distinct across banks built with other seeds or models.
    digest = hashlib.sha256(character.model_dump_json().encode()).hexdigest()[:8]
    return PersonaProfile(
        id=f"{slot.id}-{digest}",
        kind="mbti",
        name=character.name,
        demographics=Demographics(age=character.age, gender=character.gender, location=character.region),
        mbti=slot.code,
        statements=[getattr(character, name) for name in SENTENCE_FIELDS],
        description=f"{character.name} is an {slot.code} ({kind.nickname}). {character.personality}",
        speaking_style=character.tone,
        behaviour_examples=character.behaviour_examples,
        attributes=[Attribute(name=name, value=getattr(character, name)) for name in SENTENCE_FIELDS],
        source=f"mbti_bank {slot.code} #{slot.number}",
    )


async def write_character(
    runner: JsonTaskRunner, slot: CharacterSlot, source: MBTIBankSource
) -> PersonaProfile | Dropped:
    reasons = []
    schema = character_schema(source.behaviour_examples)
    for attempt in range(source.max_attempts):
        reply = await runner.ask(
            JsonRequest(
                messages=character_messages(slot, source.behaviour_examples),
                schema=schema,
                schema_name="mbti_character",
                temperature=source.temperature,
                max_tokens=source.max_tokens,
                seed=slot.seed + attempt,
            )
        )
        if reply.data is None:
            reasons.append(f"attempt {attempt + 1}: {reply.error}")
            continue
        try:
            character = MBTICharacter.model_validate(reply.data)
        except ValidationError as exc:
            reasons.append(f"attempt {attempt + 1}: {_first_error(exc)}")
            continue
        if len(character.behaviour_examples) != source.behaviour_examples:
            reasons.append(
                f"attempt {attempt + 1}: behaviour_examples: {len(character.behaviour_examples)} given, "
                f"{source.behaviour_examples} asked for"
            )
            continue
        return character_profile(slot, character)
    return Dropped(source="mbti_bank", item=slot.id, reason="; ".join(reasons))


def build_mbti_bank(
    runner: JsonTaskRunner, source: MBTIBankSource, rng: random.Random, *, show_progress: bool = True
) -> tuple[list[PersonaProfile], list[Dropped]]:
    slots = plan_slots(source, rng)
    results = runner.gather(
        (write_character(runner, slot, source) for slot in slots), desc="mbti characters", show_progress=show_progress
    )
    personas = [result for result in results if isinstance(result, PersonaProfile)]
    dropped = [result for result in results if isinstance(result, Dropped)]
    return personas, dropped


class MBTIBank:
    """``source: mbti_bank``: CharacterChat's characters, written by the LLM for each type."""

    def generative(self, settings: Any) -> bool:
        return True

    def attribution(self, settings: MBTIBankSource) -> str | None:
        return None

    def prepare(self, settings: MBTIBankSource, resolve_path: Callable[[str], Path]) -> None:
        plan_slots(settings, random.Random(0))  # unknown types fail here

    def needs_embeddings(self, settings: MBTIBankSource, prepared: None) -> bool:
        return False

    def make(self, settings: MBTIBankSource, prepared: None, context: SourceContext) -> Made:
        personas, dropped = build_mbti_bank(context.llm(), settings, context.rng, show_progress=context.show_progress)
        return Made(personas, dropped)
