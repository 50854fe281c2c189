"""Running chunks on an event loop of this process (a run with ``ray.enabled: false``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Iterator

from factory.engine.processor import Chunk, ChunkProcessor, Done, EngineSettings, RunnerReport, Ticks, chunks_in_flight
from factory.llm.keys import ApiKeys
from factory.records import DialogueRecord


class LocalRunner:
    """Chunks on an event loop of this process."""

    def __init__(self, settings: EngineSettings, keys: ApiKeys) -> None:
        self.settings = settings
        self.keys = keys

    def run(self, chunks: Iterable[Chunk], done: Done, progress: Ticks | None = None) -> RunnerReport:
        return asyncio.run(self._run(iter(chunks), done, progress))

    async def _run(self, chunks: Iterator[Chunk], done: Done, progress: Ticks | None) -> RunnerReport:
        report = RunnerReport()
        started = time.monotonic()
        processor = ChunkProcessor(self.settings, self.keys)
        if progress:
            asked = [0]

            def finished_one() -> None:
                now = processor.requests()
                progress(1, now - asked[0])
                asked[0] = now

            processor.on_finished = finished_one
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
                failed = [error for task in finished if (error := task.exception()) is not None]
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
