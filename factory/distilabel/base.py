"""What the factory's distilabel steps share: an event loop for the factory's async code, and the
distilabel LLM a step asks (its client closed when the step unloads)."""

# No ``from __future__ import annotations``: distilabel reads the steps' annotations at run time.
import asyncio
from typing import Any

from distilabel.models.llms.base import LLM, AsyncLLM
from distilabel.steps import Step
from pydantic import PrivateAttr


def close_async_client(llm: LLM) -> None:
    """Close an async LLM's HTTP client on its own loop. distilabel's ``unload`` leaves it open, and
    its connections then outlive the loop they belong to."""
    client = getattr(llm, "_aclient", None)
    close = getattr(client, "close", None)
    if isinstance(llm, AsyncLLM) and close is not None and asyncio.iscoroutinefunction(close):
        llm.event_loop.run_until_complete(close())


class AsyncStep(Step):  # type: ignore[misc]  # distilabel's types are not followed (pyproject)
    """A step that runs the factory's async code on a loop of its own."""

    _loop: asyncio.AbstractEventLoop | None = PrivateAttr(default=None)

    def event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop

    def run_async(self, coroutine: Any) -> Any:
        return self.event_loop().run_until_complete(coroutine)

    def unload(self) -> None:
        if self._loop is not None:
            self._loop.close()
            self._loop = None
        super().unload()


class LLMStep(AsyncStep):
    """A step that asks ``llm``, any distilabel LLM; an async LLM's client belongs to its loop."""

    llm: LLM

    def load(self) -> None:
        super().load()
        self.llm.load()

    def unload(self) -> None:
        close_async_client(self.llm)
        self.llm.unload()
        super().unload()

    def event_loop(self) -> asyncio.AbstractEventLoop:
        if isinstance(self.llm, AsyncLLM):
            loop: asyncio.AbstractEventLoop = self.llm.event_loop
            return loop
        return super().event_loop()
