"""Running chunks on async Ray actors spread over the cluster's nodes.

A worker that dies (its process killed, its node lost) is replaced and its chunks are given to
the new one; nothing it had not reported is in the journal, so nothing is lost or counted twice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

from factory.critics.base import JudgePanel
from factory.engine.processor import (
    Chunk,
    ChunkProcessor,
    Done,
    EngineSettings,
    RunnerReport,
    Ticks,
    chunks_in_flight,
    key_variables,
    merge_endpoint_reports,
)
from factory.errors import FactoryError, PipelineError
from factory.llm.keys import ApiKeys
from factory.llm.spec import EndpointSpec
from factory.records import DialogueRecord


def _worker_class() -> Any:
    import ray

    @ray.remote(max_restarts=0)
    class EngineWorker:
        """An async actor: its chunks run concurrently on the actor's event loop."""

        def __init__(self, settings: EngineSettings, keys: ApiKeys) -> None:
            self.settings = settings
            self.keys = keys
            self.processor: ChunkProcessor | None = None

        async def process(self, chunk: Chunk) -> list[str]:
            if self.processor is None:
                self.processor = ChunkProcessor(self.settings, self.keys)
            return [record.model_dump_json() for record in await self.processor.process(chunk)]

        async def report(self) -> dict[str, Any]:
            return self.processor.report() if self.processor else {}

        async def finished(self) -> tuple[int, int]:
            """Dialogues finished and requests sent so far, for the driver's progress."""
            return (self.processor.finished, self.processor.requests()) if self.processor else (0, 0)

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


def split_panel(panel: JudgePanel, workers: int) -> JudgePanel:
    """A judge endpoint is split like the generator's: the judge server sees the recipe's total."""
    jurors = tuple(replace(juror, spec=split_limits(juror.spec, workers)) for juror in panel.jurors)
    return replace(panel, jurors=jurors)


def worker_nodes(cpus_per_worker: float | None) -> list[str]:
    """``ray.workers: auto``: a node id per worker, one per alive node, or as many as
    ``cpus_per_worker`` fits in each node's CPUs."""
    import ray

    nodes: list[str] = []
    for node in ray.nodes():  # type: ignore[no-untyped-call]
        if not node.get("Alive"):
            continue
        cpus = float(node.get("Resources", {}).get("CPU", 0))
        per_node = max(1, int(cpus // cpus_per_worker)) if cpus_per_worker else 1
        nodes += [node["NodeID"]] * per_node
    return nodes or [""]


class RayRunner:
    """Chunks on ``workers`` async Ray actors, spread over the cluster's nodes (``auto``: one per
    node, each asked for by its node, so none is left out)."""

    WORKER_NAME = "persona-factory-worker"

    def __init__(
        self,
        settings: EngineSettings,
        workers: int | str,
        cpus_per_worker: float | None,
        keys: ApiKeys | None = None,
        max_restarts: int | None = None,
    ) -> None:
        # the values of the variables these endpoints name, and no other: as an actor argument, which
        # Ray keeps in memory (a runtime environment's env_vars would do, but Ray logs those)
        self.keys = (keys or ApiKeys({})).only(key_variables(settings))
        self.nodes = worker_nodes(cpus_per_worker) if workers == "auto" else []
        workers = len(self.nodes) if workers == "auto" else int(workers)
        self.settings = EngineSettings(
            split_limits(settings.endpoint, workers),
            settings.generation,
            settings.critics,
            {key: split_limits(spec, workers) for key, spec in settings.agents.items()},
            {name: split_panel(panel, workers) for name, panel in settings.judges.items()},
            settings.reply_cache,
        )
        self.workers = workers
        self.cpus_per_worker = cpus_per_worker
        self.max_restarts = 3 * workers if max_restarts is None else max_restarts

    def _start_worker(self, index: int) -> Any:
        options: dict[str, Any] = {"scheduling_strategy": self._placement(index), "name": f"{self.WORKER_NAME}-{index}"}
        if self.cpus_per_worker is not None:
            options["num_cpus"] = self.cpus_per_worker
        return _worker_class().options(**options).remote(self.settings, self.keys)

    def _placement(self, index: int) -> Any:
        """Each of ``auto``'s workers on its node (soft: a replacement goes elsewhere if the node is
        gone); a number of workers spread as Ray sees fit."""
        node = self.nodes[index % len(self.nodes)] if self.nodes else ""
        if not node:
            return "SPREAD"
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        return NodeAffinitySchedulingStrategy(node_id=node, soft=True)

    def run(self, chunks: Iterable[Chunk], done: Done, progress: Ticks | None = None) -> RunnerReport:
        import ray

        report = RunnerReport()
        started = time.monotonic()
        pool = _WorkerPool(self, report)
        shown = WorkerProgress(progress)
        try:
            pool.start(self.workers)
            feed = _Feed(iter(chunks))
            while True:
                pool.fill(feed)
                if not pool.pending:
                    break
                ready, _ = ray.wait(list(pool.pending), num_returns=1, timeout=PROGRESS_POLL_SECONDS)
                if not ready:
                    shown.poll(pool.workers)
                    continue
                slot, records = pool.collect(ready[0], feed)
                if records is None:
                    continue
                done(records)
                report.chunks += 1
                report.dialogues += len(records)
                shown.returned(slot, len(records))
            report.endpoints = merge_endpoint_reports(
                [ray.get(worker.report.remote()) for worker in pool.workers.values()], levels="sum"
            )
        finally:
            pool.stop()
        report.seconds = time.monotonic() - started
        return report


class _Feed:
    """The chunks still to hand out: the ones a dead worker left come first."""

    def __init__(self, chunks: Iterator[Chunk]) -> None:
        self.chunks = chunks
        self.retry: list[Chunk] = []
        self.exhausted = False

    def next(self) -> Chunk | None:
        if self.retry:
            return self.retry.pop()
        chunk = next(self.chunks, None)
        self.exhausted = chunk is None
        return chunk

    def waiting(self) -> bool:
        return bool(self.retry) or not self.exhausted


class _WorkerPool:
    """The run's workers, what each has in hand, and the replacing of those that die."""

    def __init__(self, runner: RayRunner, report: RunnerReport) -> None:
        self.runner, self.report = runner, report
        self.window = chunks_in_flight(runner.settings, 1)  # settings are already one worker's share
        self.workers: dict[int, Any] = {}
        self.load: dict[int, int] = {}
        self.pending: dict[Any, tuple[int, Chunk]] = {}
        self.next_index = 0

    def start(self, count: int) -> None:
        for _ in range(count):
            self.workers[self.next_index] = self.runner._start_worker(self.next_index)
            self.load[self.next_index] = 0
            self.next_index += 1

    def fill(self, feed: _Feed) -> None:
        """One chunk per worker at a time, so that every worker gets work even in a short run."""
        while feed.waiting():
            open_slots = [slot for slot in self.workers if self.load[slot] < self.window]
            if not open_slots:
                return
            for slot in open_slots:
                chunk = feed.next()
                if chunk is None:
                    return
                self.pending[self.workers[slot].process.remote(chunk)] = (slot, chunk)
                self.load[slot] += 1

    def collect(self, ref: Any, feed: _Feed) -> tuple[int, list[DialogueRecord] | None]:
        """A chunk that came back: its records, or None when its worker died (the chunk goes back
        to the feed, and the worker is replaced)."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        slot, chunk = self.pending.pop(ref)
        if slot in self.load:  # not a worker already replaced
            self.load[slot] -= 1
        try:
            return slot, [DialogueRecord.model_validate_json(text) for text in ray.get(ref)]
        except RayTaskError as exc:
            # a run-level failure inside a worker (every endpoint out too long): the same error as
            # in process, not Ray's wrapper of it
            cause = getattr(exc, "cause", None)
            raise (cause if isinstance(cause, FactoryError) else PipelineError(f"a worker failed: {exc}")) from None
        except RayActorError:
            feed.retry.append(chunk)
            if slot in self.workers and not _alive(self.workers[slot]):
                self._replace(slot)
            return slot, None

    def _replace(self, slot: int) -> None:
        self.report.worker_restarts += 1
        if self.report.worker_restarts > self.runner.max_restarts:
            raise PipelineError(
                f"{self.report.worker_restarts} workers died; giving up (the run can be resumed with --resume)"
            ) from None
        del self.workers[slot], self.load[slot]
        self.start(1)

    def stop(self) -> None:
        import ray

        for worker in self.workers.values():
            ray.kill(worker)


PROGRESS_POLL_SECONDS = 0.5


class WorkerProgress:
    """Progress per finished dialogue on Ray: chunks come back whole, so while they are out the
    workers are asked how many dialogues they have finished and how many requests they sent.
    Never moves back (a worker that dies takes its counts with it; its dialogues count again
    when they are redone)."""

    def __init__(self, progress: Ticks | None) -> None:
        self.progress = progress
        self.shown = self.calls_shown = 0
        self.total_returned = 0
        self.returned_by: dict[int, int] = {}
        self.calls_by: dict[int, int] = {}

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
        in_flight = 0
        for slot, (finished, calls) in zip(workers, counts):
            in_flight += max(0, finished - self.returned_by.get(slot, 0))
            self.calls_by[slot] = max(calls, self.calls_by.get(slot, 0))
        self._show(self.total_returned + in_flight)

    def _show(self, total: int) -> None:
        calls = sum(self.calls_by.values())
        if self.progress is not None and (total > self.shown or calls > self.calls_shown):
            self.progress(max(0, total - self.shown), max(0, calls - self.calls_shown))
            self.shown, self.calls_shown = max(total, self.shown), max(calls, self.calls_shown)


def _alive(worker: Any) -> bool:
    import ray

    try:
        ray.get(worker.pid.remote(), timeout=30)
        return True
    except Exception:
        return False
