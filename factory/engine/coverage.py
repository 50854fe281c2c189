"""How the quota cells fare through the critics: dialogues cast and accepted per cell, per round,
and the critic that rejected each cell's dialogues most; what ``accepted_per_cell`` tops up from,
and what the card reports."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from factory.critics.base import passed_so_far
from factory.personas.casting import Cast, CellTopUp, cells_of
from factory.records import DialogueRecord

Cell = tuple[str, str]


@dataclass
class CellCoverage:
    cells: list[Cell]
    requested: int | None = None  # accepted_per_cell, when the recipe asks for it
    # per round (iteration): cell -> dialogues, cell -> accepted
    cast: dict[int, Counter[Cell]] = field(default_factory=dict)
    accepted: dict[int, Counter[Cell]] = field(default_factory=dict)
    rejected_by: dict[Cell, Counter[str]] = field(default_factory=dict)

    def add(self, record: DialogueRecord) -> None:
        iteration = record.generation.iteration
        for cell in cells_of(record.speakers, self.cells):
            self.cast.setdefault(iteration, Counter())[cell] += 1
            if passed_so_far(record):
                self.accepted.setdefault(iteration, Counter())[cell] += 1
            else:
                failed = next((v.critic for v in record.verdicts if not v.passed), None)
                if failed is not None:
                    self.rejected_by.setdefault(cell, Counter())[failed] += 1

    def before(self, iteration: int) -> tuple[Counter[Cell], Counter[Cell]]:
        """Dialogues cast and accepted per cell in the rounds before ``iteration``."""
        cast: Counter[Cell] = Counter()
        accepted: Counter[Cell] = Counter()
        for earlier in range(iteration):
            cast.update(self.cast.get(earlier, Counter()))
            accepted.update(self.accepted.get(earlier, Counter()))
        return cast, accepted

    def next_casts(self, top_up: CellTopUp, iteration: int) -> list[Cast]:
        """The casts of top-up round ``iteration``: none once every cell is full or out of attempts."""
        return top_up.casts(top_up.demand(*self.before(iteration)), iteration)

    def report(self) -> list[dict[str, Any]]:
        """Per cell: requested, cast, accepted, and for a cell left short, the critic that rejected
        most of its dialogues."""
        cast, accepted = self.before(max([*self.cast, *self.accepted], default=-1) + 1)
        rows = []
        for cell in self.cells:
            short = self.requested is not None and accepted[cell] < self.requested
            critics = self.rejected_by.get(cell, Counter()).most_common(1)
            rows.append(
                {
                    "cell": f"{cell[0]}={cell[1]}",
                    "requested": self.requested,
                    "cast": cast[cell],
                    "accepted": accepted[cell],
                    "filled": not short,
                    "rejected_most_by": critics[0][0] if critics else None,
                }
            )
        return rows
