"""`plan` counts the generator's prompts on a seeded sample of the casts, and says how far off that may be."""

from __future__ import annotations

import random

from factory.llm.tokens import sampled_total
from factory.plan import plan_run
from factory.recipes import parse_recipe


def test_a_sample_as_large_as_the_population_is_the_exact_total():
    values = [3, 5, 8, 13]
    total = sampled_total(4, 10, seed=1, count=lambda chosen: [values[i] for i in chosen])
    assert (total.total, total.half_width, total.sampled) == (29.0, 0.0, 4)


def test_a_sampled_total_is_seeded_and_its_interval_covers_the_truth_most_of_the_time():
    rng = random.Random(0)
    values = [rng.randint(200, 900) for _ in range(20_000)]
    truth = sum(values)

    def count(chosen):
        return [values[i] for i in chosen]

    assert sampled_total(len(values), 300, 5, count) == sampled_total(len(values), 300, 5, count)
    estimates = [sampled_total(len(values), 300, seed, count) for seed in range(60)]
    covered = sum(abs(e.total - truth) <= e.half_width for e in estimates)
    assert covered >= 50  # about 95% of 60
    assert all(0 < e.half_width < 0.05 * truth for e in estimates)


def test_the_plan_of_a_large_spc_run_says_its_prompts_were_sampled():
    recipe = parse_recipe(
        {"name": "big", "description": "d", "seed": 3, "personas": [{"source": "statements", "count": 40}],
         "casting": {"dialogues": 2_000}, "generation": {"mode": "spc"}}
    )  # fmt: skip
    small = parse_recipe({**recipe.model_dump(mode="json", exclude_unset=True), "casting": {"dialogues": 20}})
    rendered = plan_run(recipe).render()
    assert "seeded sample of 500 of 2,000 casts" in rendered and "at 95%" in rendered
    assert "seeded sample" not in plan_run(small).render()
