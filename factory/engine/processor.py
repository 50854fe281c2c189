"""The Generator-Critic engine: every dialogue is one coroutine from prompt to verdicts, and the
endpoint is kept busy across dialogue boundaries.

    write (SPC, one call per candidate) -> the experts of the cascade, in order
    -> once all of a cast's candidates are done: best-of-N quality

A *chunk* is a few whole casts. Chunks are the unit of work a worker takes and of the journal:
a finished chunk is written down at once, so a resumed run skips it. Many chunks are in flight
at a time, so a slow dialogue never holds the endpoint idle; how many requests actually reach the
endpoint is the client's adaptive limit, not the number of chunks.

Two runners share this code: :class:`LocalRunner` on the caller's event loop (one process), and
:class:`RayRunner`, whose workers are async Ray actors spread over the cluster. A worker that
dies (its process killed, its node lost) is replaced and its chunks are given to the new one;
nothing it had not reported is in the journal, so nothing is lost or counted twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from factory.critics.base import JudgeContext, JudgePanel, blocked_by, hard_gates, passed_so_far
from factory.critics.line_choice import CriticsLineChooser
from factory.critics.quality import select_best
from factory.critics.registry import cascade_verdict, embedding_settings
from factory.failpoints import failpoint
from factory.generation import WRITERS
from factory.generation.writer import Voices
from factory.llm.batch import BatchChat
from factory.llm.cache import ReplyCache
from factory.llm.client import ChatClient
from factory.llm.embeddings import Embedder, open_embedder
from factory.llm.keys import ApiKeys
from factory.llm.port import ChatPort
from factory.llm.spec import EndpointSpec, public
from factory.recipes.critics import CriticsConfig
from factory.recipes.generation import GenerationConfig
from factory.records import DialogueRecord, StepPlacement

# One planned dialogue: the empty record and the generator prompt.
PlannedRow = tuple[DialogueRecord, list[dict[str, str]]]
Chunk = list[PlannedRow]


@dataclass(frozen=True)
class EngineSettings:
    """What a worker needs besides its chunks: picklable, and free of secrets."""

    endpoint: EndpointSpec
    generation: GenerationConfig
    critics: CriticsConfig
    # role-play speakers with their own model or endpoint, by role or position (speaker1, ...)
    agents: dict[str, EndpointSpec] = field(default_factory=dict)
    # each LLM critic's judges; a critic missing here is judged by the generator's endpoint
    judges: dict[str, JudgePanel] = field(default_factory=dict)
    # the reply cache's folder (llm.cache), or None: off
    reply_cache: str | None = None
    # llm.batch: where the run keeps its batches and their answers, and how often it polls them
    batch_dir: str | None = None
    batch_poll_seconds: float = 30.0


def key_variables(settings: EngineSettings) -> set[str]:
    """The environment variables the keys of these settings' endpoints are read from."""
    specs = [settings.endpoint, *settings.agents.values()]
    specs += [juror.spec for panel in settings.judges.values() for juror in panel.jurors]
    names = {spec.api_key_env for spec in specs}
    embeddings = embedding_settings(settings.critics)
    if embeddings is not None:
        names.add(embeddings.key_env(settings.endpoint.api_key_env))
    return names


def where_am_i() -> str:
    """The Ray node id, or ``local``: which node ran a step, without naming the machine."""
    ray = sys.modules.get("ray")  # a run without Ray never imports it
    return ray.get_runtime_context().get_node_id() if ray is not None and ray.is_initialized() else "local"


async def judge(record: DialogueRecord, critics: CriticsConfig, context: JudgeContext) -> None:
    """The experts of the cascade in order; a dialogue that failed a hard gate costs the rest nothing."""
    gates = hard_gates(critics)
    for name, _config in critics.cascade():
        if blocked_by(record, gates) is None:
            record.verdicts.append(await cascade_verdict(name, record, critics, context))


class ChunkProcessor:
    """Runs chunks on one event loop with one client (so one adaptive limit per base URL)."""

    def __init__(self, settings: EngineSettings, keys: ApiKeys) -> None:
        self.settings = settings
        self.cache = ReplyCache(settings.reply_cache) if settings.reply_cache else None
        self.client = ChatClient(settings.endpoint, keys, self.cache)
        self.agent_clients = {key: ChatClient(spec, keys, self.cache) for key, spec in settings.agents.items()}
        self.batches: dict[str, BatchChat] = {}
        self.keys = keys
        self.voices = Voices(self._port(self.client), {key: self._port(c) for key, c in self.agent_clients.items()})
        # one client per judge endpoint, shared by the critics it judges for (so one adaptive limit)
        self.judge_clients: dict[EndpointSpec, ChatClient] = {settings.endpoint: self.client}
        for panel in settings.judges.values():
            for juror in panel.jurors:
                if juror.spec not in self.judge_clients:
                    self.judge_clients[juror.spec] = ChatClient(juror.spec, keys, self.cache)
        self.context = JudgeContext(
            self._port(self.client), settings.generation, judge_model=settings.endpoint.model,
            panels=dict(settings.judges), clients={spec: self._port(c) for spec, c in self.judge_clients.items()},
            embedder=_embedder(settings, keys),
        )  # fmt: skip
        if settings.generation.role_play.line_candidates > 1:
            self.voices.choose_line = CriticsLineChooser(settings.critics, self.context)
        self.placement = where_am_i()
        self.finished = 0  # dialogues judged by this processor, reported chunks or not (for progress)
        self.on_finished: Callable[[], None] | None = None

    def _port(self, client: ChatClient) -> ChatPort:
        """The client itself, or with llm.batch, the Batch API of its endpoint: one per base URL
        and model (specs that differ in limits alone share it, and its registry on disk)."""
        if self.settings.batch_dir is None:
            return client
        name = hashlib.sha256(f"{client.spec.base_url}\n{client.spec.model}".encode()).hexdigest()[:16]
        if name not in self.batches:
            where = Path(self.settings.batch_dir) / name
            self.batches[name] = BatchChat(client, self.keys, where, self.settings.batch_poll_seconds)
        return self.batches[name]

    async def _one(self, row: PlannedRow) -> DialogueRecord:
        record = row[0]  # planned for this one dialogue; a Ray worker gets its own copy
        writer = WRITERS[record.generation.mode]
        await writer.write(record, row[1], self.voices, self.settings.generation)
        failpoint("judging")
        await judge(record, self.settings.critics, self.context)
        judged = {verdict.critic for verdict in record.verdicts}  # a gate that stopped it spared the rest
        stages = ["generate", *(name for name, _ in self.settings.critics.cascade() if name in judged)]
        record.generation.placements.extend(StepPlacement(step=stage, node_id=self.placement) for stage in stages)
        self.finished += 1
        if self.on_finished is not None:
            self.on_finished()
        return record

    async def process(self, chunk: Chunk) -> list[DialogueRecord]:
        records = list(await asyncio.gather(*(self._one(row) for row in chunk)))
        if self.settings.generation.candidates > 1:
            await self.best_of_casts(records)
        return records

    async def best_of_casts(self, records: list[DialogueRecord]) -> None:
        """Best-of-N: the quality critic keeps one of each cast's candidates that passed so far."""
        critics = self.settings.critics
        if not critics.quality.enabled:
            return
        by_cast: dict[str, list[DialogueRecord]] = {}
        for record in sorted(records, key=lambda r: r.id):
            if passed_so_far(record):
                by_cast.setdefault(record.generation.cast_id or record.id, []).append(record)
        await asyncio.gather(*(select_best(group, critics.quality, self.context) for group in by_cast.values()))

    def requests(self) -> int:
        """Requests sent so far by every client of this processor (retries included; cache hits not)."""
        return sum(client.attempts for client in self._clients())

    def _clients(self) -> list[ChatClient]:
        return list({id(c): c for c in (*self.judge_clients.values(), *self.agent_clients.values())}.values())

    def report(self) -> dict[str, dict[str, Any]]:
        # an agent or judge with only its own model shares the recipe's URL: its calls add to that URL's
        reports = merge_endpoint_reports([client.report() for client in self._clients()], levels="sum")
        for batch in self.batches.values():  # a batch's lines are not chat requests: counted apart, per URL
            into = reports.setdefault(public(batch.spec.base_url), {})
            for key, value in batch.report().items():
                into[key] = into.get(key, 0) + value
        return reports

    async def aclose(self) -> None:
        for batch in self.batches.values():
            await batch.aclose()
        for client in self._clients():
            await client.aclose()
        if self.context.embedder is not None:
            self.context.embedder.close()
        if self.cache is not None:
            self.cache.close()


def _embedder(settings: EngineSettings, keys: ApiKeys) -> Embedder | None:
    """The embedding model of the critics that embed (grounding's), loaded only when one judges."""
    embeddings = embedding_settings(settings.critics)
    if embeddings is None:
        return None
    key = keys.get(embeddings.key_env(settings.endpoint.api_key_env))
    return open_embedder(embeddings, settings.endpoint.base_url, key)


@dataclass
class RunnerReport:
    chunks: int = 0
    dialogues: int = 0
    worker_restarts: int = 0
    seconds: float = 0.0
    endpoints: dict[str, dict[str, Any]] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "chunks": self.chunks,
            "dialogues": self.dialogues,
            "worker_restarts": self.worker_restarts,
            "seconds": round(self.seconds, 2),
            "endpoints": self.endpoints or {},
        }


def chunks_in_flight(settings: EngineSettings, workers: int) -> int:
    """Enough chunks per worker that its adaptive limit, at its maximum, never runs dry; with
    llm.batch, every chunk at once, so that a round's calls go out as one batch."""
    if settings.batch_dir is not None:
        return 1 << 30
    per_worker = settings.endpoint.max_concurrency * len(settings.endpoint.base_urls) / max(1, workers)
    return max(2, -(-2 * int(per_worker) // settings.generation.chunk_size))


Done = Callable[[list[DialogueRecord]], None]
# dialogues finished and requests sent since the last call: what moves a progress display
Ticks = Callable[[int, int], None]


def merge_endpoint_reports(
    reports: list[dict[str, dict[str, Any]]], *, levels: Literal["sum", "last"]
) -> dict[str, dict[str, Any]]:
    """Per-URL numbers of several clients. Counts add up; the concurrency limit is a level: the
    workers' limits at once add up (``sum``), a later round's replaces an earlier's (``last``)."""
    merged: dict[str, dict[str, Any]] = {}
    for report in reports:
        for url, numbers in report.items():
            into = merged.setdefault(url, {})
            for key, value in numbers.items():
                replace = key == "concurrency_limit" and levels == "last"
                into[key] = value if replace else into.get(key, 0) + value
    return merged
