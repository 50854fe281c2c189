"""Seed personas: deterministic for a seed, well formed, and cast without self-pairing."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from factory.errors import RecipeError
from factory.personas import build_persona_pool, plan
from factory.personas.big_five import first_person, sample_big_five
from factory.personas.mbti import sample_mbti
from factory.recipes import parse_recipe
from factory.recipes.personas import BigFiveSource
from factory.traits import MBTI_TYPES, coarse_band
from tests.recipes import small_recipe


def test_mbti_covers_every_type_before_repeating():
    personas = sample_mbti(16, random.Random(3))
    assert sorted(p.mbti for p in personas) == sorted(MBTI_TYPES)
    assert all(len(MBTI_TYPES[p.mbti].axes) == 4 and p.statements for p in personas)


def test_big_five_levels_in_range_and_described_by_ipip_items():
    personas = sample_big_five(BigFiveSource(source="big_five", count=20), random.Random(5))
    for persona in personas:
        scores = persona.big_five.model_dump()
        assert all(1 <= level <= 7 for level in scores.values())
        described = sum(1 for level in scores.values() if level != 4)
        assert len(persona.statements) == described
        assert all(s.startswith("I ") for s in persona.statements)


def test_ipip_items_become_first_person_statements():
    assert first_person("Worry about things") == "I worry about things."
    assert first_person("Are always busy") == "I am always busy."
    assert first_person("Believe that you are better than others") == "I believe that I am better than others."


def test_casting_is_deterministic_and_never_pairs_a_persona_with_itself():
    recipe = parse_recipe(small_recipe(dialogues=30))
    first = [(c.dialogue_id, tuple(p.id for p in c.speakers), c.seed) for c in plan(recipe).casts]
    second = [(c.dialogue_id, tuple(p.id for p in c.speakers), c.seed) for c in plan(recipe).casts]
    assert first == second
    assert all(len(set(ids)) == 2 for _, ids, _ in first)
    other = parse_recipe(small_recipe(dialogues=30, seed=12))
    assert [c.seed for c in plan(other).casts] != [seed for *_, seed in first]


def _big_five(**settings) -> list:
    return sample_big_five(BigFiveSource.model_validate({"source": "big_five", **settings}), random.Random(8))


def test_big_five_quota_gives_each_named_band_an_equal_share():
    personas = _big_five(
        count=60, sampling="quota", quota={"extraversion": ["low", "mid", "high"], "neuroticism": ["high"]}
    )
    extraversion = Counter(coarse_band(p.big_five.extraversion) for p in personas)
    assert extraversion == {"low": 20, "mid": 20, "high": 20}
    assert all(p.big_five.neuroticism >= 6 for p in personas)


def test_big_five_distribution_draws_levels_by_weight():
    personas = _big_five(count=200, sampling="distribution", distribution={"openness": [0, 0, 0, 0, 0, 1, 3]})
    levels = Counter(p.big_five.openness for p in personas)
    assert set(levels) == {6, 7}
    assert levels[7] > levels[6]  # weight 3 to 1: the chance of the opposite is far below 1e-9


def test_big_five_speaking_style_follows_the_extreme_traits():
    quiet = _big_five(count=5, sampling="quota", quota={"extraversion": ["low"]}, demographics=False)
    assert all("speaks briefly" in p.speaking_style for p in quiet)
    assert all(p.name is None and p.demographics.age is None for p in quiet)
    talkative = _big_five(count=5, sampling="quota", quota={"extraversion": ["high"]})
    assert all("talks readily" in p.speaking_style and p.name for p in talkative)


def test_big_five_settings_are_checked():
    with pytest.raises(RecipeError, match="seven non-negative weights"):
        parse_recipe(
            {
                "name": "r",
                "personas": [
                    {"source": "big_five", "count": 2, "sampling": "distribution", "distribution": {"openness": [1, 2]}}
                ],
                "casting": {"dialogues": 1},
            }
        )
    with pytest.raises(RecipeError, match="unknown trait 'charm'"):
        parse_recipe(
            {
                "name": "r",
                "personas": [{"source": "big_five", "count": 2, "sampling": "quota", "quota": {"charm": ["low"]}}],
                "casting": {"dialogues": 1},
            }
        )


def test_two_sources_of_one_kind_give_distinct_personas():
    recipe = parse_recipe(
        {
            "name": "r",
            "personas": [
                {"source": "big_five", "count": 5},
                {"source": "big_five", "count": 5},
                {"source": "mbti", "count": 3},
                {"source": "mbti", "count": 3},
            ],
            "casting": {"dialogues": 1},
        }
    )
    pool = build_persona_pool(recipe, random.Random(0)).personas
    assert len(pool) == 16 and len({p.id for p in pool}) == 16


def test_names_fit_the_gender_and_do_not_repeat_in_a_pool():
    from factory.personas.demographics import NAMES_BY_GENDER
    from factory.recipes import load_recipe
    from factory.recipes.paths import resolve_recipe_path

    quickstart = load_recipe(resolve_recipe_path("quickstart"))
    big = parse_recipe(small_recipe(personas=[{"source": "mbti", "count": 40}, {"source": "big_five", "count": 40}]))
    for recipe in (quickstart, big):
        named = [p for p in build_persona_pool(recipe, random.Random(recipe.seed)).personas if p.name]
        assert named and len({p.name for p in named}) == len(named)  # unique within the run's pool
        for persona in named:
            first = persona.name.split()[0]
            assert first in NAMES_BY_GENDER[persona.demographics.gender], (persona.name, persona.demographics.gender)
