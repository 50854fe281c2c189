"""Asking a model for a JSON answer: the one way generators, critics, role-play judges and
persona sources do it.

The request names a JSON Schema (sent as the endpoint's response format, so a constrained decoder
keeps the reply in shape); the reply is parsed into a JSON object, or the answer says why there is
none: the call failed for good, or the reply was not a JSON object.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from factory.errors import LLMCallError
from factory.llm.port import ChatPort
from factory.records import TokenUsage


@dataclass
class JsonAnswer:
    data: dict[str, Any] | None
    error: str | None = None  # why there is no data
    text: str = ""
    usage: TokenUsage = field(default_factory=TokenUsage)
    call_error: LLMCallError | None = None  # set when the call itself failed (no reply at all)
    cut_off: bool = False  # the reply stopped at max_tokens

    def why_not(self) -> str:
        """The error, saying when the reply was cut short (the likely reason it did not parse)."""
        return f"{self.error} (cut at max_tokens)" if self.cut_off else str(self.error)


async def ask_json(
    chat: ChatPort,
    messages: list[dict[str, str]],
    *,
    name: str,
    schema: dict[str, Any],
    temperature: float,
    max_tokens: int,
    seed: int | None = None,
) -> JsonAnswer:
    """Never raises for a failed call or a bad reply: the answer says which."""
    try:
        result = await chat.chat(
            messages,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            response_format=chat.response_format(name, schema),
        )
    except LLMCallError as exc:
        return JsonAnswer(data=None, error=str(exc), call_error=exc)
    try:
        data = parse_json_object(result.text)
    except ValueError as exc:
        cut_off = result.finish_reason == "length"
        return JsonAnswer(data=None, error=str(exc), text=result.text, usage=result.usage, cut_off=cut_off)
    return JsonAnswer(data=data, text=result.text, usage=result.usage)


def parse_json_object(text: str) -> dict[str, Any]:
    """The JSON object in a reply; tolerates a fence or prose around it, which some servers add
    even under a response format."""
    stripped = text.strip()
    # strict=False lets a raw newline inside a string through: grammar-constrained decoders allow
    # one, and the value is still unambiguous.
    try:
        value = json.loads(stripped, strict=False)
    except json.JSONDecodeError:
        start, end = stripped.find("{"), stripped.rfind("}")
        if start < 0 or end <= start:
            raise ValueError(f"no JSON object in the reply (began: {stripped[:80]!r})") from None
        try:
            value = json.loads(stripped[start : end + 1], strict=False)
        except json.JSONDecodeError as exc:
            raise ValueError(f"the reply is not valid JSON: {exc.msg}") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


def text_pattern(low: int, high: int, prefix: str = "") -> str:
    """A JSON Schema ``pattern`` for one line of free text. Patterns keep a constrained decoder
    (llama.cpp's grammar, OpenAI's strict schemas) inside the shape asked for; quotes and
    backslashes are left out so that the grammar cannot break the JSON string."""
    return rf'^{prefix}[^"\\\n]{{{low},{high}}}$'
