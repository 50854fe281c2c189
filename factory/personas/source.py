"""What a persona source is to a run or a bank build: a :class:`PersonaSource`.

A source is one module with a class following this protocol, registered by its recipe tag in
:data:`factory.personas.sources.SOURCES`; its settings are a model in
:mod:`factory.recipes.personas` whose ``source`` field is that tag. Callers never ask which kind
of source they hold.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from factory.llm.embeddings import Embedder
from factory.llm.tasks import JsonTaskRunner
from factory.records import Dropped, PersonaProfile


@dataclass
class SourceContext:
    """What a source may use to make its personas."""

    resolve_path: Callable[[str], Path]
    rng: random.Random
    runner: JsonTaskRunner | None = None  # the LLM, for generative sources
    embedder: Embedder | None = None
    show_progress: bool = True
    names_taken: set[str] = field(default_factory=set)  # the names drawn so far, so none repeats in a pool

    def llm(self) -> JsonTaskRunner:
        if self.runner is None:
            from factory.errors import PipelineError

            raise PipelineError("this persona source writes with an LLM, and no endpoint was opened")
        return self.runner


@dataclass
class Made:
    """A source's personas, those it could not make, and what it says of itself."""

    personas: list[PersonaProfile]
    dropped: list[Dropped] = field(default_factory=list)
    reports: dict[str, Any] = field(default_factory=dict)  # e.g. {"spc_expansion": {...}} for the card
    bank: dict[str, Any] | None = None  # the bank revision it read, for the manifest


class PersonaSource(Protocol):
    def generative(self, settings: Any) -> bool:
        """Writes with an LLM (a bank build opens the endpoint for it); a dialogue run takes only
        the sources that do not."""
        ...

    # The shipped data it draws on, a key of the bank card's attributions, when it reads one.
    def attribution(self, settings: Any) -> str | None: ...

    def prepare(self, settings: Any, resolve_path: Callable[[str], Path]) -> Any:
        """Read and check the input, before any model or folder is touched: bad input fails here."""
        ...

    def needs_embeddings(self, settings: Any, prepared: Any) -> bool: ...

    def make(self, settings: Any, prepared: Any, context: SourceContext) -> Made: ...
