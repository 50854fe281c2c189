"""The one chat call every generator, critic and role-play agent makes, as a protocol.

:class:`factory.llm.client.ChatClient` is the implementation the factory ships (retries, an
adaptive limit per base URL, failover); anything else with this signature can stand behind the
same callers: a different judge model, a reply cache, another library's LLM class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from factory.records import TokenUsage


@dataclass
class ChatResult:
    text: str
    usage: TokenUsage
    finish_reason: str | None


class ChatPort(Protocol):
    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        temperature: float,
        max_tokens: int,
        seed: int | None = None,
        response_format: dict[str, Any] | None = None,
    ) -> ChatResult:
        """One chat completion; raises ``LLMCallError`` when it fails for good."""
        ...

    def response_format(self, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        """The ``response_format`` that asks this endpoint for JSON matching ``schema``."""
        ...
