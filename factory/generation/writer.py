"""What a generation mode is to the engine: a :class:`Writer` that plans a dialogue on the driver
and writes it where it is judged.

A mode is one module with a Writer, registered by name in :data:`factory.generation.WRITERS`; the
engine looks the writer up by the mode a cast was planned with and never branches on it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from factory.llm.port import ChatPort
from factory.personas.casting import Cast
from factory.recipes.generation import GenerationConfig
from factory.records import DialogueRecord, Turn


class LineChooser(Protocol):
    async def __call__(self, record: DialogueRecord, turns: list[Turn], candidates: list[Turn]) -> int:
        """Which of ``candidates`` (lines for the next turn after ``turns``) to keep: its index."""
        ...


@dataclass
class Voices:
    """The chat ports a writer may talk through: the recipe's, and the role-play speakers' that
    have a model or endpoint of their own (keyed by role or position: user, speaker2, ...); and,
    where a turn samples several lines, who chooses among them (the engine's critics; unset, the
    first whole one is kept)."""

    default: ChatPort
    agents: dict[str, ChatPort] = field(default_factory=dict)
    choose_line: LineChooser | None = None


@dataclass(frozen=True)
class FewShotExample:
    id: str
    profiles: tuple[tuple[str, ...], ...]  # one per speaker
    lines: tuple[tuple[int, str], ...]  # (speaker index, text)

    @classmethod
    def from_record(cls, record: DialogueRecord, max_turns: int) -> FewShotExample:
        """A dialogue of an earlier round, as an example for the next (the Generator-Critic loop)."""
        index = {persona.id: n for n, persona in enumerate(record.speakers)}
        return cls(
            id=record.id,
            profiles=tuple(tuple(persona.statements) for persona in record.speakers),
            lines=tuple((index[turn.speaker], turn.text) for turn in record.turns[:max_turns]),
        )


# The few-shot examples for one dialogue, drawn with the cast's own random generator.
FewShotPicker = Callable[[random.Random], list[FewShotExample]]


class Writer(Protocol):
    def plan(
        self, cast: Cast, rng: random.Random, generation: GenerationConfig, examples: FewShotPicker
    ) -> tuple[dict[str, Any], list[dict[str, str]]]:
        """On the driver, from the cast's seed: what the record's generation metadata starts with
        (the prompt's hash, the examples shown, a scenario) and the prompt to send, if any."""
        ...

    async def write(
        self, record: DialogueRecord, prompt: list[dict[str, str]], voices: Voices, generation: GenerationConfig
    ) -> None:
        """Where the dialogue is judged: its turns (or a failed ``format`` verdict) into ``record``."""
        ...
