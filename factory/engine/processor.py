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
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

from factory.critics.base import JudgeContext, blocked_by, hard_gates, passed_so_far
from factory.critics.quality import select_best
from factory.critics.registry import JUDGES
from factory.errors import FactoryError, LLMCallError, PipelineError
from factory.failpoints import failpoint
from factory.generation.parse import parse_dialogue
from factory.generation.role_play import Agents, role_play
from factory.llm.client import ChatClient, EndpointSpec
from factory.recipes.critics import CriticsConfig
from factory.recipes.generation import GenerationConfig
from factory.records import DialogueRecord, StepPlacement, format_verdict

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


def where_am_i() -> str:
    """The Ray node id, or ``local``: which node ran a step, without naming the machine."""
    ray = sys.modules.get("ray")  # a run without Ray never imports it
    return ray.get_runtime_context().get_node_id() if ray is not None and ray.is_initialized() else "local"


async def write_dialogue(
    record: DialogueRecord, messages: list[dict[str, str]], client: ChatClient, generation: GenerationConfig
) -> None:
    """The generator's call and the parse; a failed call is a failed ``format`` verdict."""
    try:
        result = await client.chat(
            messages, temperature=generation.temperature, max_tokens=generation.max_tokens, seed=record.generation.seed
        )
    except LLMCallError as exc:
        record.verdicts.append(format_verdict(False, f"generation failed: {exc}"))
        return
    record.raw_generation = result.text
    record.generation.usage = result.usage
    parsed = parse_dialogue(result.text, record.speakers, result.finish_reason)
    record.turns = parsed.turns
    record.verdicts.append(parsed.verdict)


async def judge(record: DialogueRecord, critics: CriticsConfig, context: JudgeContext) -> None:
    """The experts of the cascade in order; a dialogue that failed a hard gate costs the rest nothing."""
    gates = hard_gates(critics)
    for name, config in critics.cascade():
        if blocked_by(record, gates) is None:
            record.verdicts.append(await JUDGES[name](record, config, context))


class ChunkProcessor:
    """Runs chunks on one event loop with one client (so one adaptive limit per base URL)."""

    def __init__(self, settings: EngineSettings, api_key: str | None) -> None:
        self.settings = settings
        self.client = ChatClient(settings.endpoint, api_key)
        self.agent_clients = {key: ChatClient(spec, api_key) for key, spec in settings.agents.items()}
        self.context = JudgeContext(self.client, settings.endpoint, settings.generation)
        self.placement = where_am_i()
        self.finished = 0  # dialogues judged by this processor, reported chunks or not (for progress)
        self.on_finished: Callable[[], None] | None = None

    def _agents(self, record: DialogueRecord) -> Agents:
        role_play = self.settings.generation.role_play

        def key_for(index: int) -> str:
            role = record.roles[index] if index < len(record.roles) else None
            return role if role in role_play.agents else f"speaker{index + 1}"

        keys = [key_for(index) for index in range(len(record.speakers))]
        default_temperature = self.settings.generation.temperature
        return Agents(
            for_speaker=[self.agent_clients.get(key, self.client) for key in keys],
            temperatures=[
                (role_play.agents[key].temperature if key in role_play.agents else None) or default_temperature
                for key in keys
            ],
            judge=self.client,
        )

    async def _one(self, row: PlannedRow) -> DialogueRecord:
        record = row[0]  # planned for this one dialogue; a Ray worker gets its own copy
        generation = self.settings.generation
        if record.generation.mode == "role_play":
            await role_play(
                record,
                generation.role_play,
                self._agents(record),
                min_turns=generation.min_turns,
                max_turns=generation.max_turns,
            )
        else:
            await write_dialogue(record, row[1], self.client, generation)
        failpoint("judging")
        await judge(record, self.settings.critics, self.context)
        stages = ["generate", *(name for name, _ in self.settings.critics.cascade())]
        record.generation.placements.extend(StepPlacement(step=stage, node_id=self.placement) for stage in stages)
        self.finished += 1
        if self.on_finished is not None:
            self.on_finished()
        return record

    async def process(self, chunk: Chunk) -> list[DialogueRecord]:
        records = await asyncio.gather(*(self._one(row) for row in chunk))
        generation, critics = self.settings.generation, self.settings.critics
        if critics.quality.enabled and generation.candidates > 1:
            by_cast: dict[str, list[DialogueRecord]] = {}
            for record in sorted(records, key=lambda r: r.id):
                if passed_so_far(record):
                    by_cast.setdefault(record.generation.cast_id, []).append(record)
            await asyncio.gather(*(select_best(group, critics.quality, self.context) for group in by_cast.values()))
        return list(records)

    def report(self) -> dict[str, dict[str, Any]]:
        # an agent with only its own model shares the recipe's URL: its calls add to that URL's
        clients = (self.client, *self.agent_clients.values())
        return merge_endpoint_reports([client.report() for client in clients], levels="sum")

    async def aclose(self) -> None:
        for client in (self.client, *self.agent_clients.values()):
            await client.aclose()


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
    """Enough chunks per worker that its adaptive limit, at its maximum, never runs dry."""
    per_worker = settings.endpoint.max_concurrency * len(settings.endpoint.base_urls) / max(1, workers)
    return max(2, -(-2 * int(per_worker) // settings.generation.chunk_size))


Done = Callable[[list[DialogueRecord]], None]


class LocalRunner:
    """Chunks on an event loop of this process."""

    def __init__(self, settings: EngineSettings, api_key: str | None) -> None:
        self.settings = settings
        self.api_key = api_key

    def run(self, chunks: Iterable[Chunk], done: Done, progress: Callable[[int], None] | None = None) -> RunnerReport:
        return asyncio.run(self._run(iter(chunks), done, progress))

    async def _run(self, chunks: Iterator[Chunk], done: Done, progress: Callable[[int], None] | None) -> RunnerReport:
        report = RunnerReport()
        started = time.monotonic()
        processor = ChunkProcessor(self.settings, self.api_key)
        if progress:
            processor.on_finished = lambda: progress(1)
        window = chunks_in_flight(self.settings, 1)
        pending: set[asyncio.Task[list[DialogueRecord]]] = set()
        try:
            exhausted = False
            while pending or not exhausted:
                while not exhausted and len(pending) < window:
                    chunk = next(chunks, None)
                    if chunk is None:
                        exhausted = True
                    else:
                        pending.add(asyncio.create_task(processor.process(chunk)))
                if not pending:
                    break
                finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                failed = [task.exception() for task in finished if task.exception() is not None]
                if failed:
                    raise failed[0]
                for task in finished:
                    records = task.result()
                    done(records)
                    report.chunks += 1
                    report.dialogues += len(records)
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            report.endpoints = processor.report()
            await processor.aclose()
        report.seconds = time.monotonic() - started
        return report


class Secret:
    """The API key on its way to a worker: an argument of the actor's constructor, which Ray keeps
    in memory. A runtime environment's ``env_vars`` would do, but Ray writes those into its logs
    (``runtime_env_agent.log``). Its repr names no key, should anything print it."""

    def __init__(self, value: str | None) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "Secret(***)" if self.value else "Secret(None)"


def _worker_class() -> Any:
    import ray

    @ray.remote(max_restarts=0)
    class EngineWorker:
        """An async actor: its chunks run concurrently on the actor's event loop."""

        def __init__(self, settings: EngineSettings, api_key: Secret) -> None:
            self.settings = settings
            self.api_key = api_key
            self.processor: ChunkProcessor | None = None

        async def process(self, chunk: Chunk) -> list[str]:
            if self.processor is None:
                self.processor = ChunkProcessor(self.settings, self.api_key.value)
            return [record.model_dump_json() for record in await self.processor.process(chunk)]

        async def report(self) -> dict[str, Any]:
            return self.processor.report() if self.processor else {}

        async def finished(self) -> int:
            return self.processor.finished if self.processor else 0

        def pid(self) -> int:
            return os.getpid()

    return EngineWorker


def split_limits(endpoint: EndpointSpec, workers: int) -> EndpointSpec:
    """Each worker gets its share of the concurrency bounds: the endpoint sees the recipe's total."""
    share = max(1, -(-endpoint.max_concurrency // workers))
    return endpoint.model_copy(
        update={
            "max_concurrency": share,
            "min_concurrency": min(endpoint.min_concurrency, share),
            "initial_concurrency": max(1, min(share, -(-endpoint.initial_concurrency // workers))),
        }
    )


class RayRunner:
    """Chunks on ``workers`` async Ray actors, spread over the cluster's nodes."""

    WORKER_NAME = "persona-factory-worker"

    def __init__(
        self,
        settings: EngineSettings,
        workers: int,
        cpus_per_worker: float | None,
        api_key: str | None = None,
        max_restarts: int | None = None,
    ) -> None:
        self.api_key = Secret(api_key)
        self.settings = EngineSettings(
            split_limits(settings.endpoint, workers),
            settings.generation,
            settings.critics,
            {key: split_limits(spec, workers) for key, spec in settings.agents.items()},
        )
        self.workers = workers
        self.cpus_per_worker = cpus_per_worker
        self.max_restarts = 3 * workers if max_restarts is None else max_restarts

    def _start_worker(self, index: int) -> Any:
        options: dict[str, Any] = {"scheduling_strategy": "SPREAD", "name": f"{self.WORKER_NAME}-{index}"}
        if self.cpus_per_worker is not None:
            options["num_cpus"] = self.cpus_per_worker
        return _worker_class().options(**options).remote(self.settings, self.api_key)

    def run(self, chunks: Iterable[Chunk], done: Done, progress: Callable[[int], None] | None = None) -> RunnerReport:
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        report = RunnerReport()
        started = time.monotonic()
        chunks = iter(chunks)
        window = chunks_in_flight(self.settings, 1)  # settings are already one worker's share
        workers = {index: self._start_worker(index) for index in range(self.workers)}
        shown = WorkerProgress(progress)
        next_index = self.workers
        pending: dict[Any, tuple[int, Chunk]] = {}
        retry: list[Chunk] = []
        load = dict.fromkeys(workers, 0)

        def submit(slot: int, chunk: Chunk) -> None:
            pending[workers[slot].process.remote(chunk)] = (slot, chunk)
            load[slot] += 1

        try:
            exhausted = False
            while True:
                # one chunk per worker at a time, so that every worker gets work even in a short run
                while retry or not exhausted:
                    open_slots = [slot for slot in workers if load[slot] < window]
                    if not open_slots:
                        break
                    for slot in open_slots:
                        chunk = retry.pop() if retry else next(chunks, None)
                        if chunk is None:
                            exhausted = True
                            break
                        submit(slot, chunk)
                if not pending:
                    break
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=PROGRESS_POLL_SECONDS)
                if not ready:
                    shown.poll(workers)
                    continue
                ref = ready[0]
                slot, chunk = pending.pop(ref)
                if slot in load:  # not a worker already replaced
                    load[slot] -= 1
                try:
                    records = [DialogueRecord.model_validate_json(text) for text in ray.get(ref)]
                except RayTaskError as exc:
                    # a run-level failure inside a worker (every endpoint out too long): the same
                    # error as in process, not Ray's wrapper of it
                    cause = getattr(exc, "cause", None)
                    raise (
                        cause if isinstance(cause, FactoryError) else PipelineError(f"a worker failed: {exc}")
                    ) from None
                except RayActorError:
                    # The worker is gone; its unfinished chunks come back here one by one.
                    retry.append(chunk)
                    if slot in workers and not _alive(workers[slot]):
                        report.worker_restarts += 1
                        if report.worker_restarts > self.max_restarts:
                            raise PipelineError(
                                f"{report.worker_restarts} workers died; giving up (the run can be resumed with --resume)"
                            ) from None
                        del workers[slot], load[slot]
                        workers[next_index] = self._start_worker(next_index)
                        load[next_index] = 0
                        next_index += 1
                    continue
                done(records)
                report.chunks += 1
                report.dialogues += len(records)
                shown.returned(slot, len(records))
            report.endpoints = merge_endpoint_reports(
                [ray.get(worker.report.remote()) for worker in workers.values()], levels="sum"
            )
        finally:
            for worker in workers.values():
                ray.kill(worker)
        report.seconds = time.monotonic() - started
        return report


PROGRESS_POLL_SECONDS = 0.5


class WorkerProgress:
    """Progress per finished dialogue on Ray: chunks come back whole, so while they are out the
    workers are asked how many dialogues they have finished. Never moves back (a worker that dies
    takes its count with it; its dialogues count again when they are redone)."""

    def __init__(self, progress: Callable[[int], None] | None) -> None:
        self.progress = progress
        self.shown = 0
        self.total_returned = 0
        self.returned_by: dict[int, int] = {}

    def returned(self, slot: int, dialogues: int) -> None:
        self.returned_by[slot] = self.returned_by.get(slot, 0) + dialogues
        self.total_returned += dialogues
        self._show(self.total_returned)

    def poll(self, workers: dict[int, Any]) -> None:
        if self.progress is None:
            return
        import ray

        try:
            counts = ray.get([worker.finished.remote() for worker in workers.values()], timeout=PROGRESS_POLL_SECONDS)
        except Exception:
            return
        in_flight = sum(max(0, count - self.returned_by.get(slot, 0)) for slot, count in zip(workers, counts))
        self._show(self.total_returned + in_flight)

    def _show(self, total: int) -> None:
        if self.progress is not None and total > self.shown:
            self.progress(total - self.shown)
            self.shown = total


def _alive(worker: Any) -> bool:
    import ray

    try:
        ray.get(worker.pid.remote(), timeout=30)
        return True
    except Exception:
        return False


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
