"""JSON tasks for persona building: many schema-constrained chat calls, concurrently, with a bar.

Persona sources ask the model for structured objects (a character, a profile, a list of queries).
Each request names the JSON Schema it wants; the reply is parsed and handed back as a dict, or as
the reason it could not be, so that the caller can retry or drop that one item.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from factory.errors import PipelineError
from factory.llm.ask import ask_json
from factory.llm.client import ChatClient
from factory.llm.keys import ApiKeys
from factory.llm.spec import EndpointSpec
from factory.records import TokenUsage

T = TypeVar("T")


@dataclass
class JsonRequest:
    messages: list[dict[str, str]]
    schema: dict[str, Any]
    schema_name: str
    temperature: float
    max_tokens: int
    seed: int | None = None


@dataclass
class JsonReply:
    data: dict[str, Any] | None
    error: str | None
    text: str = ""
    usage: TokenUsage = field(default_factory=TokenUsage)


class BackgroundLoop:
    """An event loop on its own thread, so synchronous code can drive
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


class JsonTaskRunner:
    """``with JsonTaskRunner(spec, keys) as runner: runner.map(requests)``."""

    def __init__(self, spec: EndpointSpec | None, keys: ApiKeys) -> None:
        """``spec`` None: no endpoint (tasks that need no model still run on the loop)."""
        self.spec = spec
        self._keys = keys
        self._loop: BackgroundLoop | None = None
        self._client: ChatClient | None = None
        self._others: dict[EndpointSpec, ChatClient] = {}
        self.usage = TokenUsage()
        self.calls = 0

    def __enter__(self) -> JsonTaskRunner:
        self._loop = BackgroundLoop()

        async def make_client(spec: EndpointSpec) -> ChatClient:
            return ChatClient(spec, self._keys)

        self._client = self._loop.run(make_client(self.spec)) if self.spec is not None else None
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._loop is not None:
            for client in (self._client, *self._others.values()):
                if client is not None:
                    self._loop.run(client.aclose())
            self._loop.close()
        self._loop = self._client = None
        self._others = {}

    def client_for(self, spec: EndpointSpec) -> ChatClient:
        """A client of ``spec`` on this runner's loop (this runner's own for its spec), closed with it."""
        if self._loop is None:
            raise PipelineError("use JsonTaskRunner as a context manager")
        if spec == self.spec and self._client is not None:
            return self._client
        if spec not in self._others:

            async def make_client() -> ChatClient:
                return ChatClient(spec, self._keys)

            self._others[spec] = self._loop.run(make_client())
        return self._others[spec]

    @property
    def client(self) -> ChatClient | None:
        return self._client

    async def ask(self, request: JsonRequest) -> JsonReply:
        """One request; never raises for a bad reply or a failed call (the reply says why)."""
        if self._client is None or self.spec is None:
            raise PipelineError("JSON tasks need an endpoint: use JsonTaskRunner(spec, ...) as a context manager")
        self.calls += 1
        answer = await ask_json(
            self._client, request.messages, name=request.schema_name, schema=request.schema,
            temperature=request.temperature, max_tokens=request.max_tokens, seed=request.seed,
        )  # fmt: skip
        self.usage = self.usage + answer.usage
        return JsonReply(
            data=answer.data, error=None if answer.data is not None else answer.why_not(), text=answer.text,
            usage=answer.usage,
        )  # fmt: skip

    def gather(
        self, coroutines: Iterable[Coroutine[Any, Any, T]], *, desc: str = "", show_progress: bool = True
    ) -> list[T]:
        """Run coroutines concurrently (the client bounds the requests in flight), with a bar."""
        if self._loop is None:
            raise PipelineError("use JsonTaskRunner as a context manager")
        pending = list(coroutines)
        bar = None
        if show_progress and pending:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(pending), desc=f"{desc:>16}", unit="task", leave=True)

        async def tracked(coroutine: Coroutine[Any, Any, T]) -> T:
            try:
                return await coroutine
            finally:
                if bar is not None:
                    bar.update(1)

        try:
            return self._loop.gather(tracked(coroutine) for coroutine in pending)
        finally:
            if bar is not None:
                bar.close()

    def map(self, requests: list[JsonRequest], *, desc: str = "", show_progress: bool = True) -> list[JsonReply]:
        return self.gather((self.ask(request) for request in requests), desc=desc, show_progress=show_progress)
