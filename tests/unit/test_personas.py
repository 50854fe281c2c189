"""Seed personas: deterministic for a seed, well formed, and cast without self-pairing."""

from __future__ import annotations

import random

from factory.config import parse_recipe
from factory.personas import plan_casts
from factory.personas.big_five import first_person, sample_big_five
from factory.personas.mbti import MBTI_TYPES, sample_mbti
from tests.recipes import small_recipe


def test_mbti_covers_every_type_before_repeating():
    personas = sample_mbti(16, random.Random(3))
    assert sorted(p.mbti for p in personas) == sorted(MBTI_TYPES)
    assert all(len(MBTI_TYPES[p.mbti].axes) == 4 and p.statements for p in personas)


def test_big_five_levels_in_range_and_described_by_ipip_items():
    personas = sample_big_five(20, random.Random(5))
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
    first = [(c.dialogue_id, tuple(p.id for p in c.speakers), c.seed) for c in plan_casts(recipe)]
    second = [(c.dialogue_id, tuple(p.id for p in c.speakers), c.seed) for c in plan_casts(recipe)]
    assert first == second
    assert all(len(set(ids)) == 2 for _, ids, _ in first)
    other = parse_recipe(small_recipe(dialogues=30, seed=12))
    assert [c.seed for c in plan_casts(other)] != [seed for *_, seed in first]
