"""A pool persona's free text rewritten by the LLM as first-person statements (``statements_by:
llm``), checked as the MBTI bank's fields are: every statement in the first person, short enough
for a prompt, drawn from the text (it shares a content word with it: the LLM restates, it does
not invent), and none repeating another. A reply that fails is asked for again with another
seed, and the persona is dropped with every attempt's reason when none passes."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from factory.llm.tasks import JsonRequest, JsonTaskRunner
from factory.personas.mbti_bank import FIRST_PERSON
from factory.personas.statements import MAX_STATEMENT_CHARS
from factory.recipes.personas import HubPersonasSource
from factory.records import Dropped, PersonaProfile

MAX_STATEMENTS = 8
SYSTEM = (
    "You rewrite a description of a person as the short statements that person would make about "
    "themselves, in the first person ('I ...', 'My ...'): one fact each, only facts the description "
    "gives. Answer only with the JSON object asked for."
)
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "statements": {"type": "array", "items": {"type": "string"}, "minItems": 1, "maxItems": MAX_STATEMENTS}
    },
    "required": ["statements"],
    "additionalProperties": False,
}
_CONTENT = re.compile(r"[a-z]{4,}")


def content_words(text: str) -> set[str]:
    return set(_CONTENT.findall(text.lower()))


class SplitStatements(BaseModel):
    model_config = ConfigDict(extra="ignore")

    statements: list[str] = Field(min_length=1, max_length=MAX_STATEMENTS)

    @field_validator("statements")
    @classmethod
    def _statement_shape(cls, statements: list[str]) -> list[str]:
        cleaned = [" ".join(statement.split()) for statement in statements]
        for number, statement in enumerate(cleaned, start=1):
            if len(statement) < 8 or len(statement) > MAX_STATEMENT_CHARS:
                raise ValueError(f"statement {number} is {len(statement)} characters: {statement[:60]!r}")
            if not FIRST_PERSON.search(statement):
                raise ValueError(f"statement {number} is not in the first person: {statement[:60]!r}")
        if len({statement.lower() for statement in cleaned}) < len(cleaned):
            raise ValueError("a statement repeats another word for word")
        return cleaned


def messages_for(text: str) -> list[dict[str, str]]:
    prompt = f"Description:\n{text}\n\nWrite the statements, each a short sentence."
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]


def checked(data: dict[str, Any], text: str) -> list[str]:
    """The statements of a reply, or ValueError naming the first that fails."""
    statements = SplitStatements.model_validate(data).statements
    source = content_words(text)
    for number, statement in enumerate(statements, start=1):
        if not content_words(statement) & source:
            raise ValueError(f"statement {number} says nothing the description does: {statement[:60]!r}")
    return statements


async def split_with_llm(
    runner: JsonTaskRunner, persona: PersonaProfile, settings: HubPersonasSource, seed: int
) -> PersonaProfile | Dropped:
    """The persona with the LLM's statements, or Dropped with every attempt's reason."""
    reasons = []
    for attempt in range(settings.max_attempts):
        reply = await runner.ask(
            JsonRequest(
                messages=messages_for(persona.description), schema=SCHEMA, schema_name="persona_statements",
                temperature=settings.temperature, max_tokens=400, seed=seed + attempt,
            )
        )  # fmt: skip
        if reply.data is None:
            reasons.append(f"attempt {attempt + 1}: {reply.error}")
            continue
        try:
            statements = checked(reply.data, persona.description)
        except ValidationError as exc:
            error = exc.errors()[0]
            reasons.append(f"attempt {attempt + 1}: {error['msg'].removeprefix('Value error, ')}")
            continue
        except ValueError as exc:
            reasons.append(f"attempt {attempt + 1}: {exc}")
            continue
        return persona.model_copy(update={"statements": statements})
    return Dropped(source="hub_personas", item=persona.source, reason="; ".join(reasons))
