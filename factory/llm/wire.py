"""The Chat Completions wire format: a request body as sent (alone or as a batch line), and an
answer read back as text, usage and finish reason, or named for what it is instead."""

from __future__ import annotations

from typing import Any

from factory.errors import NotAChatCompletion
from factory.llm.port import ChatResult
from factory.records import TokenUsage


def chat_body(
    model: str,
    messages: list[dict[str, str]],
    temperature: float,
    max_tokens: int,
    seed: int | None,
    response_format: dict[str, Any] | None,
) -> dict[str, Any]:
    """A Chat Completions request body, as sent alone or as a line of a batch."""
    body: dict[str, Any] = {"model": model, "messages": messages, "temperature": temperature, "max_tokens": max_tokens}
    if seed is not None:
        body["seed"] = seed
    if response_format is not None:
        body["response_format"] = response_format
    return body


def json_object_form(response_format: dict[str, Any]) -> dict[str, Any]:
    """A ``json_schema`` response format as llama.cpp's Python server takes it."""
    if response_format.get("type") != "json_schema":
        return response_format
    return {"type": "json_object", "schema": response_format.get("json_schema", {}).get("schema", {})}


def short(exc: Exception | None, limit: int = 300) -> str:
    text = str(exc) if exc is not None else ""
    return text if len(text) <= limit else text[:limit] + "..."


def describe_answer(response: Any) -> str:
    """What an endpoint sent instead of the JSON expected, in a few words and a preview."""
    if isinstance(response, (bytes, str)):
        text = response.decode(errors="replace") if isinstance(response, bytes) else response
        what = "an HTML page" if text.lstrip()[:15].lower().startswith(("<!doctype", "<html")) else "plain text"
        preview = " ".join(text.split())[:80]
        return f"{what}: {preview!r}" if preview else "an empty body"
    if isinstance(response, dict):
        return f"JSON without choices (keys: {', '.join(list(response)[:6]) or 'none'})"
    return f"a JSON {type(response).__name__}"


def completion_result(response: Any) -> ChatResult:
    """Text, usage and finish reason of a Chat Completions answer (its JSON)."""
    choices = response.get("choices") if isinstance(response, dict) else None
    choice = choices[0] if isinstance(choices, list) and choices else None
    if not isinstance(choice, dict):
        raise NotAChatCompletion(f"the endpoint answered {describe_answer(response)}")
    usage = response.get("usage") or {}
    if not isinstance(usage, dict):
        usage = {}
    return ChatResult(
        text=(choice.get("message") or {}).get("content") or "",
        usage=TokenUsage(
            prompt_tokens=usage.get("prompt_tokens") or 0,
            completion_tokens=usage.get("completion_tokens") or 0,
        ),
        finish_reason=choice.get("finish_reason"),
    )
