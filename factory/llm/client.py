"""Every LLM call of the factory: OpenAI Chat Completions through the ``openai`` client.

Concurrency adapts per base URL (:mod:`factory.llm.limiter`); 429, 5xx, timeouts and dropped connections are retried with
exponential backoff and jitter; a request the endpoint refuses outright (400: prompt too long,
bad schema) fails at once, so that only its row is rejected.

An endpoint that answers, but not with a Chat Completion (an HTML page, plain text, no choices,
cut-off JSON), is not a model: one such reply rejects its row, several in a row stop the run with
:class:`EndpointError` naming the URL and what it sent. A server that refuses OpenAI's
``json_schema`` response format (llama-cpp-python's own server answers it with a 500) is asked
again with the ``json_object`` + ``schema`` form, and from then on only with that form.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass
from typing import Any

import openai

from factory.errors import EndpointError, LLMCallError, NotAChatCompletion
from factory.llm.cache import ReplyCache, reply_key
from factory.llm.embedded import check_running_servers
from factory.llm.keys import ApiKeys
from factory.llm.limiter import AdaptiveLimiter
from factory.llm.port import ChatResult
from factory.llm.spec import EndpointSpec, public
from factory.llm.wire import chat_body, completion_result, json_object_form, short

# The llama.cpp server and most local servers accept any key; the client insists on one.
PLACEHOLDER_API_KEY = "not-needed"
CONNECTIONS_PER_POOL = 16
RETRYABLE = (openai.RateLimitError, openai.InternalServerError, openai.APITimeoutError, openai.APIConnectionError)
# Replies in a row from one URL that are not a Chat Completion before the run stops: one bad reply
# is a row's bad luck, a run of them is a server that is not a model (or a wrong base URL).
PROTOCOL_FAILURES_TO_STOP = 5


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential backoff with equal jitter: half the step is fixed, half is random."""
    step = min(cap, base * 2.0**attempt)
    uniform = rng.uniform if rng is not None else random.uniform
    return step / 2 + uniform(0, step / 2)


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    if response is None:
        return None
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


@dataclass
class EndpointHealth:
    """One base URL of the pool: its clients, its concurrency and whether it is taken out."""

    url: str
    clients: list[openai.AsyncOpenAI]
    limiter: AdaptiveLimiter
    calls: int = 0
    failures: int = 0
    ejections: int = 0
    consecutive_failures: int = 0
    down_until: float = 0.0
    protocol_failures: int = 0
    consecutive_protocol_failures: int = 0
    json_object_fallbacks: int = 0
    last_answer: float = 0.0  # time.monotonic() of the URL's last answer of any kind
    # what the answers of this URL said they cost (replies from the cache cost nothing and are not here)
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The next client, in turn: each holds a share of the connections."""
        return self.clients[self.calls % len(self.clients)]

    def report(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "failures": self.failures,
            "ejections": self.ejections,
            "concurrency_limit": round(self.limiter.limit, 1),
            "concurrency_decreases": self.limiter.decreases,
            "not_chat_completions": self.protocol_failures,
            "json_schema_refused": self.json_object_fallbacks,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }


class ChatClient:
    """``openai.AsyncOpenAI`` clients for the endpoint's base URLs, with adaptive concurrency per
    URL and our retry policy.

    Each request goes to the URL with the most room. A URL that fails ``eject_after`` times in a row
    (5xx, timeouts, dropped connections) is taken out for a while, doubling each time, and comes
    back on probation (its concurrency at the minimum, growing again as it answers). While every URL
    is out, requests wait rather than spend their retries; after ``outage_seconds`` of that the run
    stops with :class:`EndpointError` (it can be resumed).

    Use it from one event loop (its condition and connection pools belong to that loop).
    """

    def __init__(self, spec: EndpointSpec, keys: ApiKeys, cache: ReplyCache | None = None) -> None:
        self.spec = spec
        api_key = keys.for_endpoint(spec)  # this endpoint's own key, no other
        self.cache = cache
        self.cache_hits = self.cache_misses = 0
        # questions that reached the endpoint (not the cache): plain text (the dialogues, role-play
        # turns) and JSON answers (critics, role-play's judge, persona sources)
        self.asked = {"generation_requests": 0, "judge_requests": 0}
        self.endpoints = [
            EndpointHealth(
                url=url,
                # httpx's pool looks at every pooled connection on every request, so one pool of
                # many connections costs more CPU per call than the call itself; several small
                # pools, used in turn, keep that scan short (bench/throughput.py)
                clients=[
                    openai.AsyncOpenAI(
                        base_url=url,
                        api_key=api_key or PLACEHOLDER_API_KEY,
                        timeout=spec.timeout,
                        max_retries=0,  # retries are ours, so they are counted, jittered and bounded alike
                    )
                    for _ in range(-(-spec.max_concurrency // CONNECTIONS_PER_POOL))
                ],
                limiter=AdaptiveLimiter(
                    minimum=spec.min_concurrency,
                    maximum=spec.max_concurrency,
                    initial=spec.initial_concurrency,
                    latency_tolerance=spec.latency_tolerance,
                    adaptive=spec.adaptive_concurrency,
                ),
            )
            for url in spec.base_urls
        ]
        self._changed = asyncio.Condition()
        self._all_down_since: float | None = None
        self.attempts = 0
        # None until the endpoint has answered a json_schema request, or refused one
        self.json_schema_accepted: bool | None = None if spec.structured_output == "json_schema" else False

    async def _acquire(self) -> EndpointHealth:
        async with self._changed:
            while True:
                now = time.monotonic()
                up = [e for e in self.endpoints if e.down_until <= now]
                ready = [e for e in up if e.limiter.capacity > 0]
                if ready:
                    chosen = max(ready, key=lambda e: (e.limiter.capacity / e.limiter.limit, -e.calls))
                    chosen.limiter.started()
                    chosen.calls += 1
                    self.attempts += 1
                    return chosen
                wait: float | None = None
                if not up:
                    self._all_down_since = self._all_down_since or now
                    if now - self._all_down_since > self.spec.outage_seconds:
                        raise EndpointError(
                            f"no endpoint of {self.spec.model} answered for {self.spec.outage_seconds:.0f} s "
                            f"({', '.join(public(e.url) for e in self.endpoints)})"
                        )
                    wait = min(e.down_until for e in self.endpoints) - now
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), wait)

    async def _release(self, endpoint: EndpointHealth, outcome: str, latency: float, kind: str) -> None:
        async with self._changed:
            if outcome == "ok":
                endpoint.limiter.succeeded(latency, kind)
                endpoint.consecutive_failures = 0
                endpoint.ejections = 0
                self._all_down_since = None
            elif outcome == "refused":
                endpoint.limiter.failed_quietly()
            else:
                endpoint.limiter.overloaded()
                if outcome == "failed":
                    endpoint.failures += 1
                    endpoint.consecutive_failures += 1
                    if endpoint.consecutive_failures >= self.spec.eject_after:
                        endpoint.ejections += 1
                        endpoint.consecutive_failures = 0
                        pause = min(self.spec.backoff_max, self.spec.eject_seconds * 2 ** (endpoint.ejections - 1))
                        endpoint.down_until = time.monotonic() + pause
                        endpoint.limiter.limit = float(endpoint.limiter.minimum)
            # wake only as many waiters as can start (waking all of them on every answer costs
            # more than the requests when thousands are queued)
            now = time.monotonic()
            room = sum(e.limiter.capacity for e in self.endpoints if e.down_until <= now)
            if room:
                self._changed.notify(room)

    def response_format(self, name: str, schema: dict[str, Any]) -> dict[str, Any]:
        return self.spec.response_format(name, schema)

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        temperature: float,
        max_tokens: int,
        seed: int | None = None,
        response_format: dict[str, Any] | None = None,
    ) -> ChatResult:
        body = chat_body(self.spec.model, messages, temperature, max_tokens, seed, response_format)
        key = reply_key(self.spec.model, body) if self.cache is not None else ""
        if self.cache is not None:
            cached = self.cache.get(key)
            if cached is not None:
                self.cache_hits += 1
                return cached
            self.cache_misses += 1
        self.asked["generation_requests" if response_format is None else "judge_requests"] += 1
        result = await self._ask(body, response_format)
        if self.cache is not None:
            self.cache.put(key, result)
        return result

    async def _ask(self, body: dict[str, Any], response_format: dict[str, Any] | None) -> ChatResult:
        """The request, retried by our policy, until it is answered or the retries are spent."""
        kind = _request_kind(response_format)
        last_error: Exception | None = None
        attempt = 0
        while attempt <= self.spec.max_retries:
            if self.json_schema_accepted is False and _is_json_schema(body):
                body = {**body, "response_format": json_object_form(body["response_format"])}
            outcome = await self._attempt(body, kind, wants_json=response_format is not None)
            if isinstance(outcome, ChatResult):
                return outcome
            last_error, ask_again = outcome
            if ask_again:
                # Asked again at once, in the form llama.cpp-style servers take (not an attempt of
                # its own); if that is answered, the endpoint is asked that way from now on.
                body = {**body, "response_format": json_object_form(body["response_format"])}
                continue
            if attempt < self.spec.max_retries:
                delay = _retry_after(last_error) or backoff_delay(
                    attempt, self.spec.backoff_base, self.spec.backoff_max
                )
                await asyncio.sleep(min(delay, self.spec.backoff_max))
            attempt += 1
        raise LLMCallError(
            f"gave up after {self.spec.max_retries + 1} attempts: {type(last_error).__name__}: {short(last_error)}"
        )

    async def _attempt(
        self, body: dict[str, Any], kind: str, *, wants_json: bool
    ) -> ChatResult | tuple[Exception, bool]:
        """One request to one base URL: the result, or the error to retry after and whether to ask
        again at once without a JSON schema; raises what no retry can fix."""
        endpoint = await self._acquire()
        started = time.monotonic()
        asked_json_schema = _is_json_schema(body)
        try:
            # The body is plain JSON already, so it is posted as it is, and the answer read as
            # JSON: `chat.completions.create` walks every message through its TypedDicts and
            # builds pydantic objects of the reply, a fifth of the client's CPU per call
            # (bench/throughput.py). Errors, retries and headers are the client's as ever.
            response = await endpoint.client.post("/chat/completions", body=body, cast_to=object)
            result = completion_result(response)
        except openai.RateLimitError as exc:
            await self._release(endpoint, "overloaded", 0.0, kind)
            return exc, False
        except (openai.APIStatusError, *RETRYABLE) as exc:
            if asked_json_schema and self.json_schema_accepted is not True and _may_refuse_schemas(exc):
                await self._release(endpoint, "refused", 0.0, kind)
                return exc, True
            if isinstance(exc, openai.APIStatusError):
                endpoint.last_answer = time.monotonic()
            if isinstance(exc, RETRYABLE):
                await self._release(endpoint, "failed", 0.0, kind)
                if isinstance(exc, openai.APITimeoutError):
                    self._check_answering(endpoint, started)
                elif isinstance(exc, openai.APIConnectionError):
                    # An embedded server given up on is the end of the run, not a retry: its word may
                    # have been raised inside this very request and wrapped as a connection error.
                    check_running_servers()
                return exc, False
            await self._release(endpoint, "refused", 0.0, kind)
            raise LLMCallError(f"endpoint refused the request ({exc.status_code}): {short(exc)}") from exc
        except (NotAChatCompletion, ValueError) as exc:  # ValueError: a body cut off mid-JSON
            await self._release(endpoint, "refused", 0.0, kind)
            failure = (
                exc
                if isinstance(exc, NotAChatCompletion)
                else NotAChatCompletion(f"the endpoint's answer is not JSON ({short(exc, 120)})")
            )
            self._not_a_chat_completion(endpoint, failure)
            raise failure from exc
        except BaseException:
            await self._release(endpoint, "refused", 0.0, kind)
            raise
        endpoint.consecutive_protocol_failures = 0
        endpoint.last_answer = time.monotonic()
        endpoint.prompt_tokens += result.usage.prompt_tokens
        endpoint.completion_tokens += result.usage.completion_tokens
        if wants_json and self.json_schema_accepted is None:
            self.json_schema_accepted = asked_json_schema
            endpoint.json_object_fallbacks += not asked_json_schema
        await self._release(endpoint, "ok", time.monotonic() - started, kind)
        return result

    def _check_answering(self, timed_out: EndpointHealth, started: float) -> None:
        """A request that waited llm.timeout for an answer, while no base URL answered anything since
        it was sent: the endpoint has stopped answering, and asking again would only wait as long
        again, once per retry. The run stops with one line (and can be resumed)."""
        if any(endpoint.last_answer >= started for endpoint in self.endpoints):
            return  # the endpoint answers others: this one was slow, and is retried
        raise EndpointError(
            f"the endpoint at {public(timed_out.url)} answered nothing for {self.spec.timeout:g} s (llm.timeout); "
            "is the server up and not stuck? Raise llm.timeout if its answers take longer"
        )

    def _not_a_chat_completion(self, endpoint: EndpointHealth, exc: Exception) -> None:
        endpoint.protocol_failures += 1
        endpoint.consecutive_protocol_failures += 1
        if endpoint.consecutive_protocol_failures >= PROTOCOL_FAILURES_TO_STOP:
            raise EndpointError(
                f"the endpoint at {public(endpoint.url)} is not answering as an OpenAI-compatible server: "
                f"{endpoint.consecutive_protocol_failures} replies in a row were not a Chat Completion (the last: "
                f"{exc}); check --base-url (it usually ends in /v1)"
            ) from None

    def report(self) -> dict[str, dict[str, Any]]:
        """Per base URL (without credentials): calls, failures, ejections, the concurrency reached;
        the questions asked and the reply cache's hits and misses are the first URL's (they are the
        endpoint's, not a URL's)."""
        report = {public(e.url): e.report() for e in self.endpoints}
        report[public(self.endpoints[0].url)].update(self.asked)
        if self.cache is not None:
            report[public(self.endpoints[0].url)].update(cache_hits=self.cache_hits, cache_misses=self.cache_misses)
        return report

    async def aclose(self) -> None:
        for endpoint in self.endpoints:
            for client in endpoint.clients:
                await client.close()


def _is_json_schema(body: dict[str, Any]) -> bool:
    return (body.get("response_format") or {}).get("type") == "json_schema"


def _may_refuse_schemas(exc: Exception) -> bool:
    """A status that a server without json_schema answers with (400, 422, or llama-cpp-python's 500)."""
    return isinstance(exc, openai.APIStatusError) and exc.status_code in (400, 422, 500)


def _request_kind(response_format: dict[str, Any] | None) -> str:
    if response_format is None:
        return "text"
    return str(response_format.get("json_schema", {}).get("name") or response_format.get("type"))
