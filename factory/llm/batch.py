"""Chat calls through an endpoint's Batch API (OpenAI's Files and Batches, ``vllm run-batch``
behind a server that speaks them): half the price at the providers that offer it.

:class:`BatchChat` is a :class:`ChatPort`, so the writers and critics run unchanged: each call
waits while the port gathers the calls of the moment (every dialogue of a round asks its
generation at once, then each critic of the cascade in turn), writes them as one batch input
file, uploads it, submits the batch and polls it. Each line's ``custom_id`` is the reply key (the
model and everything that determines the answer), and every answer is kept in the run's own
reply store, so:

- a resumed run asks the same questions, finds them in the batch registry (``registry.json``)
  and polls the batch already submitted instead of submitting it again;
- the lines a batch failed are submitted again, alone, up to ``max_retries`` times;
- a batch that expired, failed or was cancelled has what it answered kept, and the rest submitted
  again.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai

from factory.errors import EndpointError, LLMCallError
from factory.llm.cache import ReplyCache, reply_key
from factory.llm.client import PLACEHOLDER_API_KEY, ChatClient
from factory.llm.keys import ApiKeys
from factory.llm.port import ChatResult
from factory.llm.spec import public
from factory.llm.wire import chat_body, completion_result, short

GATHER_SECONDS = 0.5  # no new call for this long: every coroutine that will ask has asked
FINISHED = ("completed", "expired", "failed", "cancelled")


class BatchRegistry:
    """The batches a run submitted, and the reply keys of each: on disk before any poll, so a run
    killed after submitting finds them again."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / "registry.json"
        self.batches: dict[str, dict[str, Any]] = (
            json.loads(self.path.read_text(encoding="utf-8")) if self.path.is_file() else {}
        )

    def submitted(self, batch_id: str, keys: list[str]) -> None:
        self.batches[batch_id] = {"keys": keys, "done": False, "submitted_at": time.time()}
        self._save()

    def finished(self, batch_id: str, status: str) -> None:
        self.batches[batch_id].update(done=True, status=status)
        self._save()

    def pending_batch_of(self, key: str) -> str | None:
        return next(
            (batch for batch, entry in self.batches.items() if not entry["done"] and key in entry["keys"]), None
        )

    def _save(self) -> None:
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(self.batches), encoding="utf-8")
        os.replace(partial, self.path)  # a kill mid-write leaves the last registry, whole


@dataclass
class _Waiting:
    body: dict[str, Any]
    futures: list[asyncio.Future[ChatResult]] = field(default_factory=list)
    failures: int = 0


class BatchChat:
    """A ChatPort whose calls go through the endpoint's Batch API (see the module's docstring)."""

    def __init__(self, client: ChatClient, keys: ApiKeys, directory: Path, poll_seconds: float) -> None:
        self.client, self.spec = client, client.spec
        self.poll_seconds = poll_seconds
        self.registry = BatchRegistry(directory)
        self.replies = ReplyCache(directory)  # the run's answers, whatever the reply cache's setting
        self.api = openai.AsyncOpenAI(
            base_url=self.spec.base_url,
            api_key=keys.for_endpoint(self.spec) or PLACEHOLDER_API_KEY,
            timeout=self.spec.timeout,
        )
        self.waiting: dict[str, _Waiting] = {}
        self.polling: dict[str, asyncio.Task[None]] = {}
        self.waiting_on: dict[str, dict[str, _Waiting]] = {}  # batch id -> the calls its answers resolve
        self._gather: asyncio.Task[None] | None = None
        # what the manifest's execution.endpoints says of the URL's Batch API
        self.counts = {
            "batches": 0, "batch_lines": 0, "batch_failed_lines": 0, "batch_lines_resubmitted": 0,
            "batches_found_submitted": 0,
        }  # fmt: skip

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
        key = reply_key(self.spec.model, body)
        answered = self.replies.get(key)
        if answered is not None:
            return answered
        future: asyncio.Future[ChatResult] = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(key, _Waiting(body)).futures.append(future)
        if self._gather is not None:
            self._gather.cancel()  # a call came: the moment is not over yet
        self._gather = asyncio.create_task(self._submit_after_a_pause())
        return await future

    async def _submit_after_a_pause(self) -> None:
        await asyncio.sleep(GATHER_SECONDS)
        self._gather = None
        asked, self.waiting = self.waiting, {}
        fresh: dict[str, _Waiting] = {}
        for key, waiting in asked.items():
            batch = self.registry.pending_batch_of(key)
            if batch is None:
                fresh[key] = waiting
                continue
            self.counts["batches_found_submitted"] += 1
            self._poll(batch).setdefault(key, waiting)  # submitted by an earlier attempt: wait for it
        if fresh:
            try:
                batch = await self._submit(fresh)
            except Exception as exc:  # the whole submission failed: every call of it fails alike
                error = (
                    exc if isinstance(exc, EndpointError) else LLMCallError(f"batch submission failed: {short(exc)}")
                )
                for waiting in fresh.values():
                    for future in waiting.futures:
                        if not future.done():
                            future.set_exception(error)
                return
            self._poll(batch).update(fresh)

    async def _submit(self, lines: dict[str, _Waiting]) -> str:
        payload = "".join(
            json.dumps({"custom_id": key, "method": "POST", "url": "/v1/chat/completions", "body": waiting.body}) + "\n"
            for key, waiting in lines.items()
        ).encode()
        try:
            uploaded = await self.api.files.create(file=("batch.jsonl", payload), purpose="batch")
            batch = await self.api.batches.create(
                input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
            )
        except openai.NotFoundError:
            raise EndpointError(
                f"the endpoint at {public(self.spec.base_url)} has no Batch API (/files, /batches answered 404); "
                "set llm.batch: false"
            ) from None
        self.registry.submitted(batch.id, list(lines))
        self.counts["batches"] += 1
        self.counts["batch_lines"] += len(lines)
        return batch.id

    def _poll(self, batch_id: str) -> dict[str, _Waiting]:
        """The calls waiting on ``batch_id``, its poller started once."""
        if batch_id not in self.polling:
            waiting: dict[str, _Waiting] = {}
            self.polling[batch_id] = asyncio.create_task(self._until_finished(batch_id, waiting))
            self.waiting_on[batch_id] = waiting
        return self.waiting_on[batch_id]

    async def _until_finished(self, batch_id: str, waiting: dict[str, _Waiting]) -> None:
        try:
            while True:
                batch = await self.api.batches.retrieve(batch_id)
                if batch.status in FINISHED:
                    break
                await asyncio.sleep(self.poll_seconds)
            answered = await self._read(batch.output_file_id)
            failed = await self._read(batch.error_file_id)
        except Exception as exc:
            error = LLMCallError(f"polling batch {batch_id} failed: {short(exc)}")
            for entry in waiting.values():
                for future in entry.futures:
                    if not future.done():
                        future.set_exception(error)
            return
        self.registry.finished(batch_id, batch.status)
        again: dict[str, _Waiting] = {}
        for key, entry in waiting.items():
            line = answered.get(key)
            if line is not None and (line.get("response") or {}).get("status_code") != 200:
                failed[key], line = line, None
            if line is not None:
                result = completion_result(line["response"]["body"])
                self.replies.put(key, result)
                for future in entry.futures:
                    if not future.done():
                        future.set_result(result)
                continue
            if key in failed:
                entry.failures += 1
                self.counts["batch_failed_lines"] += 1
            if entry.failures > self.spec.max_retries:
                error = LLMCallError(f"batch line failed {entry.failures} times: {str(failed.get(key))[:300]}")
                for future in entry.futures:
                    if not future.done():
                        future.set_exception(error)
                continue
            again[key] = entry  # failed, or never answered (the batch expired): asked again, alone
        if again:
            self.counts["batch_lines_resubmitted"] += len(again)
            for key, entry in again.items():
                self.waiting.setdefault(key, _Waiting(entry.body, [], entry.failures)).futures.extend(entry.futures)
            if self._gather is None:
                self._gather = asyncio.create_task(self._submit_after_a_pause())

    async def _read(self, file_id: str | None) -> dict[str, dict[str, Any]]:
        if not file_id:
            return {}
        content = await self.api.files.content(file_id)
        lines = (json.loads(line) for line in content.text.splitlines() if line.strip())
        return {line["custom_id"]: line for line in lines}

    def report(self) -> dict[str, Any]:
        return dict(self.counts)

    async def aclose(self) -> None:
        for task in [*self.polling.values(), *([self._gather] if self._gather else [])]:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task
        await self.api.close()
        self.replies.close()
