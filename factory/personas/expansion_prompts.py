"""What the persona expansion asks the LLM, and the JSON shapes it asks for."""

from __future__ import annotations

from typing import Any

from factory.llm.ask import text_pattern
from factory.llm.tasks import JsonRequest
from factory.recipes.personas import SPCExpansionSource

SYSTEM = "You help build a bank of realistic persona statements. You answer with one JSON object and nothing else."


def expansion_request(
    prompt: str,
    schema: dict[str, Any],
    name: str,
    source: SPCExpansionSource,
    seed: int,
    temperature: float | None = None,
) -> JsonRequest:
    return JsonRequest(
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
        schema=schema,
        schema_name=name,
        temperature=source.temperature if temperature is None else temperature,
        max_tokens=source.max_tokens,
        seed=seed,
    )


_STRING = {"type": "string", "pattern": text_pattern(5, 160)}
QUERY_SCHEMA = {
    "type": "object",
    "properties": {"query": {"type": "string", "pattern": r'^[A-Z][^"\\\n?]{5,120}\?$'}},
    "required": ["query"],
    "additionalProperties": False,
}


def list_schema(key: str, count: int) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {key: {"type": "array", "items": _STRING, "minItems": 1, "maxItems": count}},
        "required": [key],
        "additionalProperties": False,
    }


CONTRADICTION_SCHEMA = {
    "type": "object",
    "properties": {"reason": {"type": "string", "maxLength": 300}, "contradicts": {"type": "boolean"}},
    "required": ["reason", "contradicts"],
    "additionalProperties": False,
}


def induce_query_prompt(statements: list[str]) -> str:
    listed = "\n".join(f"- {s}" for s in statements)
    return (
        "Each of these persona statements answers the same question one could ask a person about themself:\n"
        f"{listed}\n\nWrite that one question, ending with a question mark."
    )


def new_queries_prompt(queries: list[str], count: int) -> str:
    listed = "\n".join(f"- {q}" for q in queries)
    return (
        f"Here are questions that get to know a person:\n{listed}\n\n"
        f"Write {count} new questions of the same kind, each about a different part of someone's life, "
        "none a rewording of the ones above."
    )


def new_statements_prompt(query: str, examples: list[str], count: int) -> str:
    shown = "\n".join(f"- {e}" for e in examples) or "- (none yet)"
    return (
        f"Question: {query}\nStatements people have given as their answer:\n{shown}\n\n"
        f"Write {count} new, different first-person persona statements that answer the question, "
        "each short and specific, as different people would say them."
    )


def contradiction_prompt(profile: list[str], candidate: str) -> str:
    listed = "\n".join(f"{i}. {s}" for i, s in enumerate(profile, start=1))
    return (
        f"One person says all of these about themself:\n{listed}\n\nThe same person now also says: {candidate}\n\n"
        "Could all of it be true of one person at once, or does the new sentence contradict one of the "
        "numbered sentences? Explain briefly, then answer contradicts true or false."
    )
