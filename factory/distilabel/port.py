"""Any distilabel LLM behind the factory's chat interface (:class:`factory.llm.port.ChatPort`), so
the factory's critics and writers run on the LLM classes distilabel users already configure."""

from __future__ import annotations

from typing import Any, Literal

from distilabel.models.llms.base import LLM, AsyncLLM

from factory.errors import LLMCallError
from factory.llm.port import ChatResult
from factory.llm.spec import json_response_format
from factory.llm.wire import short
from factory.records import TokenUsage


def _total(counts: object) -> int:
    """distilabel's token statistics: a count, or a count per generation."""
    if isinstance(counts, int):
        return counts
    if isinstance(counts, list):
        return sum(count for count in counts if isinstance(count, int))
    return 0


class DistilabelChat:
    """``ChatPort`` over a loaded distilabel ``LLM``: each call is one generation, its token
    statistics become the factory's usage; generation settings the LLM does not take are left out."""

    def __init__(self, llm: LLM, structured_output: Literal["json_schema", "json_object"] = "json_schema") -> None:
        self.llm = llm
        self.structured_output = structured_output
        self._takes = {parameter.name for parameter in llm.generate_parameters}

    @property
    def model(self) -> str:
        return str(self.llm.model_name)

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        temperature: float,
        max_tokens: int,
        seed: int | None = None,
        response_format: dict[str, Any] | None = None,
    ) -> ChatResult:
        # The body's extras carry the JSON format and seed: distilabel's OpenAILLM validates its own
        # ``response_format`` argument as a flat mapping, which a JSON schema is not.
        extra: dict[str, Any] = {}
        if response_format is not None:
            extra["response_format"] = response_format
        if seed is not None:
            extra["seed"] = seed
        wanted: dict[str, Any] = {"max_new_tokens": max_tokens, "temperature": temperature}
        if extra:
            wanted["extra_body"] = extra
        kwargs = {key: value for key, value in wanted.items() if key in self._takes}
        try:
            if isinstance(self.llm, AsyncLLM):
                output = await self.llm.agenerate(input=messages, num_generations=1, **kwargs)
            else:
                output = self.llm.generate(inputs=[messages], num_generations=1, **kwargs)[0]
        except Exception as exc:  # distilabel's LLMs raise their clients' errors as they are
            raise LLMCallError(f"{self.model}: {type(exc).__name__}: {short(exc)}") from exc
        generations = output.get("generations") or [None]
        text = generations[0]
        if not isinstance(text, str):
            raise LLMCallError(f"{self.model} returned no text")
        statistics = output.get("statistics") or {}
        usage = TokenUsage(
            prompt_tokens=_total(statistics.get("input_tokens")),
            completion_tokens=_total(statistics.get("output_tokens")),
        )
        return ChatResult(text=text, usage=usage, finish_reason=None)

    def response_format(self, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        return json_response_format(self.structured_output, name, schema)
