"""What dialogues cost: each token priced by the endpoint that spent it (``pricing`` in a recipe's
``llm``, a judge's ``llm`` or a juror's). The same prices make a plan's estimate, a budget's
stop, the progress line's figure and a version's card, so all four speak of one cost."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from factory.recipes.llm import PricingConfig
from factory.records import DialogueRecord, Verdict


@dataclass(frozen=True)
class Prices:
    """The generator's price and each LLM critic's jurors' prices, in the order of its panel.
    A cost is ``None`` where tokens were spent at an endpoint with no price set."""

    generator: PricingConfig | None = None
    judges: Mapping[str, tuple[PricingConfig | None, ...]] = field(default_factory=dict)

    @property
    def priced(self) -> bool:
        return self.generator is not None or any(p is not None for prices in self.judges.values() for p in prices)

    def generation(self, record: DialogueRecord) -> float | None:
        usage = record.generation.usage
        if not usage.total_tokens:
            return 0.0
        if self.generator is None:
            return None
        return self.generator.cost(usage.prompt_tokens, usage.completion_tokens)

    def verdict(self, verdict: Verdict) -> float | None:
        """A verdict's cost: each juror's tokens at that juror's price (a jury's are kept apart)."""
        prices = self.judges.get(verdict.critic, ())
        parts: list[tuple[int, int]] = [(j.tokens, j.prompt_tokens) for j in verdict.jurors] or [
            (verdict.tokens, verdict.prompt_tokens)
        ]
        total = 0.0
        for index, (tokens, prompt_tokens) in enumerate(parts):
            if not tokens:
                continue
            price = prices[min(index, len(prices) - 1)] if prices else None
            if price is None:
                return None
            total += price.cost(prompt_tokens, tokens - prompt_tokens)
        return total

    def record(self, record: DialogueRecord) -> float | None:
        """What one dialogue cost to write and judge; ``None`` when any part of it is unpriced."""
        costs = [self.generation(record), *(self.verdict(v) for v in record.verdicts)]
        return None if any(cost is None for cost in costs) else sum(cost for cost in costs if cost is not None)


def add_cost(total: float | None, cost: float | None) -> float | None:
    """A running sum that stays unknown once an unpriced part has been added."""
    return None if total is None or cost is None else total + cost


def usd(cost: float | None) -> str:
    """A cost as the card and the command line print it."""
    if cost is None:
        return "n/a"
    return f"${cost:,.4f}" if cost < 1 else f"${cost:,.2f}"
