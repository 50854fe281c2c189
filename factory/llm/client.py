"""Every LLM call of the factory: OpenAI Chat Completions through the ``openai`` client.

Concurrency is bounded per client; 429, 5xx, timeouts and dropped connections are retried with
exponential backoff and jitter; a request the endpoint refuses outright (400: prompt too long,
bad schema) fails at once, so that only its row is rejected.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from collections.abc import Coroutine, Iterable
from typing import Any, Literal, TypeVar

import openai
from pydantic import BaseModel, ConfigDict

from factory.errors import EndpointError, FactoryError
from factory.records import TokenUsage

T = TypeVar("T")

# The llama.cpp server and most local servers accept any key; the client insists on one.
PLACEHOLDER_API_KEY = "not-needed"
RETRYABLE = (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError, openai.APIConnectionError)


class EndpointSpec(BaseModel):
    """Where to send requests and how. Holds no secret: it is serialised into pipeline files."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str
    model: str
    kind: Literal["embedded", "openai-compatible", "scripted"] = "openai-compatible"
    max_concurrency: int = 16
    max_retries: int = 5
    timeout: float = 300.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    structured_output: Literal["json_schema", "json_object"] = "json_schema"

    def response_format(self, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        """OpenAI's ``json_schema`` format, or the ``json_object`` + ``schema`` form that
        llama.cpp's Python server understands (it rejects ``json_schema``)."""
        if self.structured_output == "json_object":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


class LLMCallError(FactoryError, RuntimeError):
    """One request failed for good; the row it belongs to is rejected with this reason."""


@dataclass
class ChatResult:
    text: str
    usage: TokenUsage
    finish_reason: str | None


def prompt_hash(messages: list[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with equal jitter: half the step is fixed, half is random."""
    step = min(cap, base * (2**attempt))
    return step / 2 + (rng or random).uniform(0, step / 2)


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    if response is None:
        return None
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class ChatClient:
    """An ``openai.AsyncOpenAI`` client with bounded concurrency and our retry policy.

    Use it from one event loop (its semaphore and connection pool belong to that loop).
    """

    def __init__(self, spec: EndpointSpec, api_key: str | None) -> None:
        self.spec = spec
        self._client = openai.AsyncOpenAI(
            base_url=spec.base_url,
            api_key=api_key or PLACEHOLDER_API_KEY,
            timeout=spec.timeout,
            max_retries=0,  # retries are ours, so they are counted, jittered and bounded alike
        )
        self._semaphore = asyncio.Semaphore(spec.max_concurrency)
        self.attempts = 0

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        temperature: float,
        max_tokens: int,
        seed: int | None = None,
        response_format: dict[str, Any] | None = None,
    ) -> ChatResult:
        extra: dict[str, Any] = {}
        if seed is not None:
            extra["seed"] = seed
        if response_format is not None:
            extra["response_format"] = response_format
        last_error: Exception | None = None
        for attempt in range(self.spec.max_retries + 1):
            async with self._semaphore:
                self.attempts += 1
                try:
                    response = await self._client.chat.completions.create(
                        model=self.spec.model,
                        messages=messages,  # type: ignore[arg-type]
                        temperature=temperature,
                        max_tokens=max_tokens,
                        **extra,
                    )
                except RETRYABLE as exc:
                    last_error = exc
                except openai.APIStatusError as exc:
                    raise LLMCallError(f"endpoint refused the request ({exc.status_code}): {_short(exc)}") from exc
                else:
                    return _result(response)
            if attempt < self.spec.max_retries:
                delay = _retry_after(last_error) or backoff_delay(attempt, self.spec.backoff_base, self.spec.backoff_max)
                await asyncio.sleep(min(delay, self.spec.backoff_max))
        raise LLMCallError(
            f"gave up after {self.spec.max_retries + 1} attempts: {type(last_error).__name__}: {_short(last_error)}"
        )

    async def aclose(self) -> None:
        await self._client.close()


def _short(exc: Exception | None, limit: int = 300) -> str:
    text = str(exc) if exc is not None else ""
    return text if len(text) <= limit else text[:limit] + "..."


def _result(response: Any) -> ChatResult:
    if not response.choices:
        raise LLMCallError("endpoint returned no choices")
    choice = response.choices[0]
    usage = response.usage
    return ChatResult(
        text=choice.message.content or "",
        usage=TokenUsage(
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
        ),
        finish_reason=choice.finish_reason,
    )


def check_endpoint(spec: EndpointSpec, api_key: str | None, *, attempts: int = 3) -> list[str]:
    """Fail fast, before any work starts, when the endpoint cannot be used at all."""
    client = openai.OpenAI(base_url=spec.base_url, api_key=api_key or PLACEHOLDER_API_KEY, timeout=10, max_retries=0)
    last_error: Exception | None = None
    try:
        for attempt in range(attempts):
            try:
                return [model.id for model in client.models.list()]
            except openai.AuthenticationError as exc:
                raise EndpointError(
                    f"the endpoint at {spec.base_url} rejected the API key ({exc.status_code}); "
                    "set OPENAI_API_KEY to a valid key"
                ) from exc
            except openai.NotFoundError:
                return []  # some servers do not list models; the first chat call will tell
            except (openai.APIConnectionError, openai.APITimeoutError, openai.InternalServerError) as exc:
                last_error = exc
                if attempt + 1 < attempts:
                    import time

                    time.sleep(backoff_delay(attempt, 0.5, 4.0))
    finally:
        client.close()
    raise EndpointError(
        f"cannot reach the LLM endpoint at {spec.base_url} ({type(last_error).__name__}: {_short(last_error)}). "
        "Check --base-url (or OPENAI_BASE_URL), or leave it out to run the embedded model."
    )


class BackgroundLoop:
    """An event loop on its own thread, so synchronous code (distilabel's ``process``) can drive
    many concurrent requests and keep one connection pool alive across batches."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="llm-loop", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result()

    def gather(self, coroutines: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
        """Run coroutines concurrently on the loop (gathered there: futures belong to one loop)."""

        async def all_of() -> list[T]:
            return list(await asyncio.gather(*coroutines))

        return self.run(all_of())

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
        self.loop.close()
