"""Costs: each token at the price of the endpoint that spent it, unknown where none is set."""

from __future__ import annotations

import pytest

from factory.dataset.stats import StatsAccumulator
from factory.llm.pricing import Prices
from factory.recipes.llm import PricingConfig
from factory.records import DialogueRecord, GenerationMeta, JurorVerdict, TokenUsage, Verdict

CHEAP = PricingConfig(input_per_mtok=1.0, output_per_mtok=2.0)
DEAR = PricingConfig(input_per_mtok=10.0, output_per_mtok=30.0)


def _record(verdicts: list[Verdict]) -> DialogueRecord:
    return DialogueRecord(
        id="d1", recipe="r", speakers=[], turns=[], verdicts=verdicts, accepted=True,
        generation=GenerationMeta(
            model="m", endpoint_kind="openai-compatible", prompt_hash="h", seed=1,
            usage=TokenUsage(prompt_tokens=1_000, completion_tokens=500),
        ),
    )  # fmt: skip


def test_a_jury_is_priced_juror_by_juror():
    jury = Verdict(
        critic="faithfulness", passed=True, reason="", tokens=3_000, prompt_tokens=2_000,
        jurors=[
            JurorVerdict(judge="a", passed=True, reason="", tokens=1_000, prompt_tokens=800),
            JurorVerdict(judge="b", passed=True, reason="", tokens=2_000, prompt_tokens=1_200),
        ],
    )  # fmt: skip
    prices = Prices(CHEAP, {"faithfulness": (CHEAP, DEAR)})
    assert prices.verdict(jury) == pytest.approx((800 * 1 + 200 * 2 + 1_200 * 10 + 800 * 30) / 1e6)
    assert prices.generation(_record([jury])) == pytest.approx((1_000 * 1 + 500 * 2) / 1e6)


def test_a_cost_is_unknown_where_tokens_were_spent_without_a_price():
    verdict = Verdict(critic="apc", passed=True, reason="", tokens=100, prompt_tokens=90)
    record = _record([verdict])
    assert Prices(CHEAP, {}).record(record) is None
    free = Verdict(critic="heuristic", passed=True, reason="")  # rules spend no tokens
    assert Prices(CHEAP, {}).record(_record([free])) == pytest.approx(2_000 / 1e6)


def test_the_stats_total_what_each_part_cost():
    verdict = Verdict(critic="apc", passed=True, reason="", tokens=1_000, prompt_tokens=1_000)
    accumulator = StatsAccumulator(Prices(CHEAP, {"apc": (DEAR,)}))
    accumulator.add([_record([verdict])])
    stats = accumulator.result()
    assert stats.generation_prompt_tokens == 1_000
    assert stats.critics[0].prompt_tokens == 1_000
    assert stats.total_cost == pytest.approx((2_000 + 10_000) / 1e6)
    assert stats.cost_per_accepted == stats.total_cost
    unpriced = StatsAccumulator()
    unpriced.add([_record([verdict])])
    assert unpriced.result().total_cost is None and unpriced.result().as_dict()["cost_per_accepted"] is None
