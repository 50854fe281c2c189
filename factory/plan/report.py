"""What a plan says: each step's calls, tokens and cost, and the table ``persona-factory plan`` prints."""

from __future__ import annotations

from dataclasses import dataclass, field

from factory.llm.pricing import usd
from factory.llm.tokens import SampledTotal, TokenCounter
from factory.recipes.llm import PricingConfig


@dataclass
class StepPlan:
    """One step's requests: the generator's, or one critic's (its jurors' together)."""

    step: str
    model: str
    calls_worst: int
    calls_expected: float
    prompt_tokens: float | None  # expected; None: cannot be told before a version exists
    completion_tokens: float | None
    worst_prompt_tokens: float | None
    worst_completion_tokens: float | None
    pricing: PricingConfig | None
    prompt_sample: SampledTotal | None = None  # the prompt tokens were counted on a sample of the casts

    def cost(self, worst: bool = False) -> float | None:
        prompt, completion = (
            (self.worst_prompt_tokens, self.worst_completion_tokens)
            if worst
            else (self.prompt_tokens, self.completion_tokens)
        )
        if self.pricing is None or prompt is None or completion is None:
            return None
        return self.pricing.cost(round(prompt), round(completion))


@dataclass
class RunPlan:
    recipe: str
    casts: int
    candidates: int
    dialogues: int
    rounds: int
    tokenizer: TokenCounter
    measured_on: str | None  # the version the expected figures come from
    steps: list[StepPlan] = field(default_factory=list)
    top_up_casts: int = 0  # casting.accepted_per_cell: the most casts its top-up rounds may add

    def total(self, attribute: str) -> float | None:
        values = [getattr(step, attribute) for step in self.steps]
        return None if any(v is None for v in values) else sum(values)

    def total_cost(self, worst: bool = False) -> float | None:
        costs = [step.cost(worst) for step in self.steps]
        return None if any(c is None for c in costs) else sum(c for c in costs if c is not None)

    def expected_tokens(self) -> float | None:
        prompt, completion = self.total("prompt_tokens"), self.total("completion_tokens")
        return None if prompt is None or completion is None else prompt + completion

    def render(self) -> str:
        basis = (
            f"expected figures from {self.measured_on}: its critics' shares of the dialogues and its tokens per call"
            if self.measured_on
            else "no earlier version to measure from: expected is the worst case (every dialogue reaches every "
            "critic, every reply as long as max_tokens)"
        )
        counted = (
            "counted with " + self.tokenizer.name if self.tokenizer.exact else "estimated at " + self.tokenizer.name
        )
        sample = next((step.prompt_sample for step in self.steps if step.prompt_sample), None)
        if sample and sample.sampled < sample.population:
            counted += (
                f", the generator's on a seeded sample of {sample.sampled:,} of {sample.population:,} casts "
                f"(±{sample.half_width / max(sample.total, 1):.1%} at 95%)"
            )
        lines = [
            f"plan of {self.recipe}: {self.casts} casts x {self.candidates} candidates = {self.dialogues} dialogues "
            f"in {self.rounds} round(s)",
            f"prompt tokens {counted}; {basis}",
            "",
            f"{'step':<14}{'model':<26}{'calls (worst)':>14}{'calls':>10}{'prompt tok':>13}{'completion tok':>16}"
            f"{'cost':>12}",
        ]
        for step in self.steps:
            lines.append(
                f"{step.step:<14}{step.model[:25]:<26}{step.calls_worst:>14,}{_number(step.calls_expected):>10}"
                f"{_number(step.prompt_tokens):>13}{_number(step.completion_tokens):>16}{_cost(step.cost()):>12}"
            )
        lines.append(
            f"{'total':<40}{sum(s.calls_worst for s in self.steps):>14,}"
            f"{_number(self.total('calls_expected')):>10}{_number(self.total('prompt_tokens')):>13}"
            f"{_number(self.total('completion_tokens')):>16}{_cost(self.total_cost()):>12}"
        )
        worst_tokens = [self.total("worst_prompt_tokens"), self.total("worst_completion_tokens")]
        if None not in worst_tokens:
            lines.append(
                f"worst case: {_number(sum(t for t in worst_tokens if t is not None))} tokens"
                + (f", {usd(self.total_cost(worst=True))}" if self.total_cost(worst=True) is not None else "")
            )
        if self.top_up_casts:
            lines.append(
                f"casting.accepted_per_cell: top-up rounds may add up to {self.top_up_casts:,} casts for cells the "
                "critics leave short (not in the figures above)"
            )
        if all(step.pricing is None for step in self.steps):
            lines.append("no cost: set llm.pricing {input_per_mtok, output_per_mtok} (and a judge's own) to see one")
        return "\n".join(lines)


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{round(value):,}"


def _cost(value: float | None) -> str:
    return "n/a" if value is None else usd(value)
