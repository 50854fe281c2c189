"""The records the factory publishes: persona profiles and dialogue records.

These pydantic models are the single source of truth for the published data. The JSON Schemas in
``schemas/`` are generated from them (``persona-factory schemas export``) and the parquet schema
is derived from them (``factory.dataset.arrow``), so the three cannot disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = "1.9"  # 1.9: a dialogue record keeps the names its speakers went by

PersonaKind = Literal["mbti", "big_five", "statements", "implicit"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Demographics(_Record):
    """What is known of a persona's circumstances; every field may be unknown."""

    age: int | None = None
    gender: str | None = None
    occupation: str | None = None
    education: str | None = None
    location: str | None = None


class BigFiveScores(_Record):
    """A level per trait on a 1-7 scale (1 = very low, 4 = average, 7 = very high)."""

    openness: int = Field(ge=1, le=7)
    conscientiousness: int = Field(ge=1, le=7)
    extraversion: int = Field(ge=1, le=7)
    agreeableness: int = Field(ge=1, le=7)
    neuroticism: int = Field(ge=1, le=7)


class Attribute(_Record):
    """A named fact about a persona that has no field of its own (hobby, recent worry, goal, ...)."""

    name: str
    value: str


class PersonaProfile(_Record):
    """One persona, whatever its source. ``statements`` is always filled: it is what the
    generator and the critics read, whatever the kind."""

    id: str = Field(description="Stable id, unique within a run (derived from source and content).")
    kind: PersonaKind
    name: str | None = None
    demographics: Demographics = Field(default_factory=Demographics)
    mbti: str | None = Field(default=None, description="The four-letter MBTI type, e.g. INTJ.")
    big_five: BigFiveScores | None = None
    statements: list[str] = Field(description="First-person persona statements.")
    topics: list[str] = Field(
        default_factory=list,
        description="The query each statement answers (e.g. 'What is your job?'), in statement order; "
        "empty when unknown. Compatible casting pairs personas by shared topics.",
    )
    description: str = Field(default="", description="Free-text description of the persona.")
    speaking_style: str = Field(default="", description="How the persona talks: tone, register, habits.")
    behaviour_examples: list[str] = Field(
        default_factory=list, description="'When the other party ..., you say ...' examples of the persona's tone."
    )
    attributes: list[Attribute] = Field(default_factory=list, description="Further named facts.")
    source: str = Field(default="", description="Where the persona came from (file and row, or sampler).")


class Turn(_Record):
    speaker: str = Field(description="The id of the speaking persona (one of the record's speakers).")
    text: str
    memory: str | None = Field(
        default=None, description="Role-play: the profile aspect put in front of the agent before this turn, if any."
    )
    closing: bool = Field(
        default=False, description="Role-play: a turn that closes the conversation after a stop rule."
    )
    cleaned: list[str] = Field(
        default_factory=list,
        description="What cleaning changed in the model's line: label (a speaker label taken off), other_speaker "
        "(the part written for another speaker cut), narration (asterisks or stage directions taken out), trimmed "
        "(cut by the token limit, trimmed to its last whole sentence), asked_again (cut before any sentence ended).",
    )


class JurorVerdict(_Record):
    """One juror's verdict, kept beside the aggregate that decided."""

    judge: str = Field(description="The juror's model.")
    passed: bool
    score: float | None = None
    reason: str
    tokens: int = 0
    prompt_tokens: int = 0
    answered: bool = True


class Verdict(_Record):
    critic: str
    passed: bool
    score: float | None = Field(default=None, description="The critic's score in [0, 1], if it gives one.")
    reason: str
    tokens: int = Field(default=0, description="Tokens the critic spent on this dialogue.")
    prompt_tokens: int = Field(default=0, description="Of those, the prompts' (the rest were completions).")
    answered: bool = Field(
        default=True,
        description="False when the critic's judge gave no usable answer (the call failed, the reply was unparsable or "
        "copied the prompt's example): the dialogue fails, but the verdict says nothing about it.",
    )
    judge: str | None = Field(
        default=None,
        description="The model that gave it (a jury's models joined by ' + '); unset for a critic of rules alone.",
    )
    jurors: list[JurorVerdict] = Field(
        default_factory=list, description="A jury's verdicts, one per juror; the aggregate above decided."
    )
    decided_by: str | None = Field(
        default=None,
        description="Set when this critic was not asked: the critic whose sure score decided for it (the learned "
        "critic, above its uncertain band).",
    )


FORMAT = "format"  # the generator's own critic: a dialogue it could not write or parse goes no further


def format_verdict(passed: bool, reason: str) -> Verdict:
    """The generator's verdict on its own output: written and parsed, or why not."""
    return Verdict(critic=FORMAT, passed=passed, score=1.0 if passed else 0.0, reason=reason)


class TokenUsage(_Record):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


class StepPlacement(_Record):
    """Which Ray node ran a pipeline step for this dialogue. The node id is Ray's random id, not a
    host name: published data names no machine."""

    step: str
    node_id: str


# What serves a model: the embedded llama.cpp server, or any OpenAI-compatible endpoint (a
# user's, a Ray Serve deployment, a Batch API's); declared once, for endpoints and the records they make.
EndpointKind = Literal["embedded", "openai-compatible"]


class GenerationMeta(_Record):
    model: str
    endpoint_kind: EndpointKind = "openai-compatible"
    prompt_hash: str = Field(description="sha256 of the generator's messages, to find identical prompts.")
    seed: int
    iteration: int = Field(default=0, description="Round of the Generator-Critic loop that made it.")
    cast_id: str = Field(default="", description="The cast it was written for; candidates of one cast share it.")
    candidate: int = Field(default=0, description="Which of the cast's candidates it is (best-of-N).")
    usage: TokenUsage = Field(default_factory=TokenUsage)
    few_shot_ids: list[str] = Field(default_factory=list)
    placements: list[StepPlacement] = Field(default_factory=list)
    mode: Literal["spc", "role_play"] = Field(
        default="spc", description="spc: written in one call; role_play: one agent per speaker, one call per turn."
    )
    scenario: str = Field(default="", description="Role-play: the situation the dialogue opened with.")
    ended_by: str = Field(
        default="",
        description="Role-play: why it ended: max_turns, sentiment or goal (closing turns followed the last two).",
    )


class DialogueRecord(_Record):
    id: str
    recipe: str = Field(description="Name of the recipe that made it.")
    speakers: list[PersonaProfile] = Field(description="Full persona snapshot of every speaker.")
    roles: list[str] = Field(
        default_factory=list,
        description="Role of each speaker, in speaker order (e.g. user, assistant); empty when all are peers.",
    )
    names: list[str] = Field(
        default_factory=list,
        description="The name each speaker went by in the conversation, in speaker order (a role-play gives a "
        "nameless persona one); empty when they are User 1, User 2, ... or their personas' names.",
    )
    turns: list[Turn]
    generation: GenerationMeta
    raw_generation: str = Field(default="", description="The generator's reply as received.")
    verdicts: list[Verdict] = Field(default_factory=list)
    accepted: bool = False

    def speaker_name(self, speaker_id: str) -> str:
        """The name the speaker went by: the one the conversation gave them, their persona's, or User N."""
        for index, persona in enumerate(self.speakers):
            if persona.id == speaker_id:
                played = self.names[index] if index < len(self.names) else None
                return played or persona.name or speaker_label(index + 1)
        return speaker_id


def speaker_label(number: int) -> str:
    """How prompts, judges and transcripts name the n-th speaker (from 1), as Synthetic-Persona-Chat
    does: "User 1", "User 2", ..."""
    return f"User {number}"


class ChatMessage(_Record):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatExample(_Record):
    """An accepted role-play dialogue as chat fine-tuning data, in the OpenAI messages format,
    with the persona's agent prompt as the system message."""

    id: str = Field(description="The dialogue's id in the default config.")
    persona: str = Field(description="The id of the persona whose prompt is the system message.")
    messages: list[ChatMessage]


PUBLISHED_MODELS: dict[str, type[BaseModel]] = {
    "persona_profile": PersonaProfile,
    "dialogue_record": DialogueRecord,
    "chat_example": ChatExample,
}


def json_schemas(models: dict[str, type[BaseModel]] | None = None) -> dict[str, dict[str, Any]]:
    """The JSON Schema of each published record (or of ``models``), keyed by the file stem it is written to."""
    schemas = {}
    for stem, model in (PUBLISHED_MODELS if models is None else models).items():
        schema = model.model_json_schema()
        schema["$id"] = f"https://persona-factory/schemas/{stem}/{SCHEMA_VERSION}"
        schemas[stem] = schema
    return schemas


def render_schema(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def export_json_schemas(directory: Path, schemas: dict[str, dict[str, Any]] | None = None) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for stem, schema in (json_schemas() if schemas is None else schemas).items():
        path = directory / f"{stem}.schema.json"
        path.write_text(render_schema(schema), encoding="utf-8")
        written.append(path)
    return written


@dataclass
class Dropped:
    """A persona a bank's source could not make, and why: published in the bank's manifest and card."""

    source: str
    item: str
    reason: str


def dotted(value: object, prefix: str = "") -> dict[str, object]:
    """A nested mapping as {dotted key: leaf}, the way recipe changes are named ("llm.timeout");
    an empty mapping is a leaf of its own."""
    if isinstance(value, dict) and value:
        flat: dict[str, object] = {}
        for key, item in value.items():
            flat.update(dotted(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}
