"""A run's budget: tokens or USD it may spend, checked before each chunk is handed out.

A chunk is started only when what is spent, what is in flight and the chunk itself (each dialogue
at the mean cost of those finished so far, or the plan's estimate before any has) stay within
the budget. The run then stops at a chunk boundary: every finished dialogue is journaled, and
``--resume`` with a larger budget goes on from there. What the journal held before a resume
counts as spent, so a budget is the whole run's.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from factory.engine.processor import Chunk
from factory.errors import InputError
from factory.llm.pricing import Prices
from factory.records import DialogueRecord


@dataclass(frozen=True)
class Budget:
    max_tokens: int | None = None
    max_cost: float | None = None

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens <= 0:
            raise InputError("must be more than 0", field="--max-tokens")
        if self.max_cost is not None and not (math.isfinite(self.max_cost) and self.max_cost > 0):
            # nan compares false with everything, so a budget of nan (or inf) would hold nothing back
            raise InputError(f"must be a number of USD more than 0, not {self.max_cost:g}", field="--max-cost")

    @property
    def limited(self) -> bool:
        return self.max_tokens is not None or self.max_cost is not None

    def flags(self, tokens: int | None = None, cost: float | None = None) -> str:
        """The flags that give this budget (or one of ``tokens`` / ``cost``)."""
        parts = []
        if self.max_tokens is not None:
            parts.append(f"--max-tokens {tokens if tokens is not None else self.max_tokens}")
        if self.max_cost is not None:
            parts.append(f"--max-cost {cost if cost is not None else self.max_cost:g}")
        return " ".join(parts)


def record_tokens(record: DialogueRecord) -> int:
    return record.generation.usage.total_tokens + sum(verdict.tokens for verdict in record.verdicts)


class BudgetGate:
    """Lets chunks through while the budget allows, and says why it stopped one."""

    def __init__(self, budget: Budget, prices: Prices, estimate_tokens: float, estimate_cost: float | None) -> None:
        if budget.max_cost is not None and estimate_cost is None:
            raise InputError(
                "a cost budget needs every endpoint's price: set llm.pricing (and the judges' own when they are "
                "on other servers)",
                field="--max-cost",
            )
        self.budget, self.prices = budget, prices
        self.estimate_tokens, self.estimate_cost = estimate_tokens, estimate_cost or 0.0
        self.tokens, self.cost, self.finished, self.in_flight = 0, 0.0, 0, 0
        self.stopped: str | None = None  # which budget held a chunk back: "tokens" or "cost"

    def spent(self, records: Iterable[DialogueRecord]) -> None:
        """Dialogues finished (now, or by an earlier attempt of the run)."""
        for record in records:
            self.tokens += record_tokens(record)
            self.cost += self.prices.record(record) or 0.0
            self.finished += 1

    def done(self, records: list[DialogueRecord]) -> None:
        self.in_flight -= len(records)
        self.spent(records)

    def per_dialogue(self) -> tuple[float, float]:
        """Tokens and USD a dialogue takes: the mean of those finished, or the plan's estimate."""
        if self.finished:
            return self.tokens / self.finished, self.cost / self.finished
        return self.estimate_tokens, self.estimate_cost

    def measuring(self) -> bool:
        """Nothing has finished and the plan could not price a dialogue: what the first chunk
        costs is not known until it is done, so it must run alone before any other starts."""
        tokens, cost = self.per_dialogue()
        return not self.finished and (
            (self.budget.max_tokens is not None and tokens <= 0) or (self.budget.max_cost is not None and cost <= 0)
        )

    def admits(self, dialogues: int) -> bool:
        tokens, cost = self.per_dialogue()
        coming = self.in_flight + dialogues
        budget = self.budget
        if budget.max_tokens is not None and self.tokens + coming * tokens > budget.max_tokens:
            self.stopped = "tokens"
            return False
        if budget.max_cost is not None and self.cost + coming * cost > budget.max_cost:
            self.stopped = "cost"
            return False
        return True

    def reason(self) -> str:
        """Why the run stopped, in what was spent when it ended (the chunks in flight when the budget
        held the next back finished first, and count)."""
        if self.stopped == "cost":
            return f"${self.cost:,.4f} spent of --max-cost {self.budget.max_cost:g}"
        return f"{self.tokens:,} tokens spent of --max-tokens {self.budget.max_tokens or 0:,}"

    def gate(self, chunks: Iterable[Chunk]) -> Iterator[Chunk]:
        """The chunks, until one would pass the budget (a first chunk that cannot be priced: alone,
        then nothing until it is measured; see ``measuring``)."""
        for chunk in chunks:
            if self.stopped is not None or (self.measuring() and self.in_flight) or not self.admits(len(chunk)):
                return
            self.in_flight += len(chunk)
            yield chunk
