"""What the factory's distilabel steps share.

Every step reads and writes one column, ``record``: the JSON of a :class:`DialogueRecord` being
built up (generation fills the turns, each critic appends its verdict). One column keeps the
schema identical in every batch whatever the content, and the record validated at every hop.
"""

import os
import socket
from collections.abc import Coroutine, Iterable
from typing import Any, Optional, TypeVar

from distilabel.steps import Step, StepInput
from distilabel.typing import StepColumns, StepOutput
from pydantic import PrivateAttr

from factory.llm.client import BackgroundLoop, ChatClient, EndpointSpec
from factory.records import DialogueRecord, StepPlacement

RECORD_COLUMN = "record"
T = TypeVar("T")

# No `from __future__ import annotations` in this module: distilabel finds a step's input
# parameter by its real `StepInput` annotation, which postponed (string) annotations hide.


def current_placement(step_name: str) -> StepPlacement:
    """The Ray node this code runs on (``local`` outside Ray), for the run manifest."""
    node_id = "local"
    try:
        import ray

        if ray.is_initialized():
            node_id = ray.get_runtime_context().get_node_id()
    except ImportError:  # pragma: no cover - ray is a dependency; this keeps unit use light
        pass
    return StepPlacement(step=step_name, node_id=node_id, hostname=socket.gethostname())


class RecordStep(Step):
    """A step that maps each ``record`` to an updated ``record``.

    Input columns: ``record`` (JSON of a DialogueRecord). Output columns: ``record``.
    """

    @property
    def inputs(self) -> StepColumns:
        return [RECORD_COLUMN]

    @property
    def outputs(self) -> StepColumns:
        return [RECORD_COLUMN]

    def process(self, inputs: StepInput) -> StepOutput:  # type: ignore[override]
        # distilabel replaces the output of a batch whose step raised with None; pass such rows
        # on untouched so the driver can tell a failed run from a finished one.
        live = [row for row in inputs if row.get(RECORD_COLUMN) is not None]
        records = [DialogueRecord.model_validate_json(row[RECORD_COLUMN]) for row in live]
        updated = self.update_records(records, live) if records else []
        placement = current_placement(self.name)  # type: ignore[arg-type]
        for row, record in zip(live, updated):
            record.generation.placements.append(placement)
            row[RECORD_COLUMN] = record.model_dump_json()
        yield inputs

    def update_records(self, records: list[DialogueRecord], rows: list[dict[str, Any]]) -> list[DialogueRecord]:
        """Return the updated records; ``rows`` are the batch's rows, for columns besides ``record``."""
        raise NotImplementedError


class LLMRecordStep(RecordStep):
    """A record step that calls the LLM. Requests of a whole batch run concurrently on one
    event loop, bounded by the endpoint's ``max_concurrency``. The API key is read from
    ``OPENAI_API_KEY`` on the worker (Ray passes it in the runtime environment), so it is never
    part of the step's serialised form."""

    endpoint: EndpointSpec

    _loop: Optional[BackgroundLoop] = PrivateAttr(default=None)
    _client: Optional[ChatClient] = PrivateAttr(default=None)

    def load(self) -> None:
        super().load()
        self._loop = BackgroundLoop()

        async def make_client() -> ChatClient:
            return ChatClient(self.endpoint, os.environ.get("OPENAI_API_KEY"))

        self._client = self._loop.run(make_client())

    def unload(self) -> None:
        if self._loop is not None:
            if self._client is not None:
                self._loop.run(self._client.aclose())
            self._loop.close()
        self._loop = self._client = None
        super().unload()

    @property
    def client(self) -> ChatClient:
        if self._client is None:
            raise RuntimeError(f"step {self.name} used before load()")
        return self._client

    def run_concurrently(self, coroutines: Iterable[Coroutine[Any, Any, T]]) -> list[T]:
        assert self._loop is not None
        return self._loop.gather(coroutines)
