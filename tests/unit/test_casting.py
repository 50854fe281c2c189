"""Casting strategies: quota covers every named cell, compatible pairs share topics, contrasting
pairs differ, user-assistant casts an implicit user with an assistant, groups have no repeats."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from factory.dataset.dialogues import persona_split
from factory.errors import RecipeError
from factory.personas.big_five import sample_big_five
from factory.personas.casting import cast_dialogues, cast_within_splits, contrast, shared_topics
from factory.personas.mbti import sample_mbti
from factory.recipes import parse_recipe
from factory.recipes.personas import BigFiveSource, CastingConfig
from factory.records import PersonaProfile
from factory.traits import MBTI_TYPES, coarse_band


def _casting(**settings) -> CastingConfig:
    return CastingConfig.model_validate(settings)


def _topical(index: int, topics: list[str]) -> PersonaProfile:
    return PersonaProfile(
        id=f"p{index}", kind="statements", statements=[f"statement {t}" for t in topics], topics=topics
    )


def test_quota_over_all_sixteen_types_gives_every_type_a_speaker():
    # Twice as many personas as types, and skewed: most of the pool is one type.
    pool = sample_mbti(16, random.Random(1)) + sample_mbti(40, random.Random(2), types=["INTJ"])
    casts = cast_dialogues(
        pool, _casting(strategy="quota", quota=[{"by": "mbti"}], dialogues=8), random.Random(3), id_prefix="q"
    )
    speakers = [p for cast in casts for p in cast.speakers]
    assert sorted(p.mbti for p in speakers) == sorted(MBTI_TYPES)  # 16 slots, 16 cells: each exactly once
    assert all(len({p.id for p in cast.speakers}) == 2 for cast in casts)


def test_quota_over_big_five_bands_shares_slots_evenly():
    pool = sample_big_five(BigFiveSource(source="big_five", count=60), random.Random(4))
    casting = _casting(
        strategy="quota", quota=[{"by": "big_five.extraversion", "values": ["low", "high"]}], dialogues=20
    )
    casts = cast_dialogues(pool, casting, random.Random(5), id_prefix="q")
    bands = Counter(coarse_band(p.big_five.extraversion) for cast in casts for p in cast.speakers)
    assert bands == {"low": 20, "high": 20}


def test_quota_names_a_cell_nobody_fills():
    pool = sample_mbti(4, random.Random(1), types=["INTJ", "ENFP"])
    with pytest.raises(RecipeError, match=r"ESTP") as error:
        cast_dialogues(
            pool,
            _casting(strategy="quota", quota=[{"by": "mbti", "values": ["INTJ", "ESTP"]}], dialogues=4),
            random.Random(0),
            id_prefix="q",
        )
    assert error.value.field == "casting.quota"


def test_quota_with_fewer_slots_than_cells_is_refused():
    pool = sample_mbti(16, random.Random(1))
    with pytest.raises(RecipeError, match="16 cells") as error:
        cast_dialogues(
            pool, _casting(strategy="quota", quota=[{"by": "mbti"}], dialogues=3), random.Random(0), id_prefix="q"
        )
    assert error.value.field == "casting.dialogues"


def test_compatible_pairs_share_at_least_the_minimum_topics():
    topics = ["job", "pets", "food", "music", "sport", "travel", "family"]
    rng = random.Random(9)
    pool = [_topical(i, rng.sample(topics, 4)) for i in range(30)]
    pool.append(_topical(99, ["astronomy", "chess", "opera", "knitting"]))  # shares nothing with anyone
    casts = cast_dialogues(
        pool, _casting(strategy="compatible", min_shared_topics=3, dialogues=40), random.Random(1), id_prefix="c"
    )
    assert len(casts) == 40
    for cast in casts:
        lead, partner = cast.speakers
        assert shared_topics(lead, partner) >= 3
    assert all("p99" not in {p.id for p in cast.speakers} for cast in casts)


def test_compatible_without_topics_says_how_to_get_them():
    with pytest.raises(RecipeError, match="spc_expansion"):
        cast_dialogues(
            sample_mbti(4, random.Random(1)),
            _casting(strategy="compatible", dialogues=2),
            random.Random(0),
            id_prefix="c",
        )


def test_contrasting_pairs_differ_on_enough_axes():
    pool = sample_mbti(32, random.Random(2))
    casts = cast_dialogues(
        pool, _casting(strategy="contrasting", min_contrast=3, dialogues=30), random.Random(4), id_prefix="x"
    )
    assert all(contrast(*cast.speakers) >= 3 for cast in casts)


def test_user_assistant_casts_an_implicit_user_with_an_assistant_persona():
    users = [PersonaProfile(id=f"u{i}", kind="implicit", statements=["I ask things."]) for i in range(3)]
    pool = users + sample_mbti(4, random.Random(1))
    casts = cast_dialogues(pool, _casting(strategy="user_assistant", dialogues=6), random.Random(2), id_prefix="ua")
    for cast in casts:
        assert cast.roles == ("user", "assistant")
        assert cast.speakers[0].kind == "implicit" and cast.speakers[1].kind == "mbti"
    assert {cast.speakers[0].id for cast in casts} == {"u0", "u1", "u2"}


def test_groups_of_four_never_repeat_a_speaker():
    casts = cast_dialogues(
        sample_mbti(9, random.Random(3)), _casting(group_size=4, dialogues=20), random.Random(5), id_prefix="g"
    )
    assert all(len({p.id for p in cast.speakers}) == 4 for cast in casts)


def test_recipe_settings_for_strategies_are_checked():
    base = {"name": "r", "personas": [{"source": "mbti", "count": 4}]}
    with pytest.raises(RecipeError, match="needs `quota`"):
        parse_recipe({**base, "casting": {"strategy": "quota", "dialogues": 2}})
    with pytest.raises(RecipeError, match="group_size 2"):
        parse_recipe({**base, "casting": {"strategy": "user_assistant", "group_size": 3, "dialogues": 2}})
    with pytest.raises(RecipeError, match="unknown cell dimension") as error:
        parse_recipe({**base, "casting": {"strategy": "quota", "quota": [{"by": "zodiac"}], "dialogues": 2}})
    assert error.value.field == "casting.quota[0]"


@pytest.mark.parametrize("strategy", ["random", "contrasting"])
def test_with_splits_every_cast_keeps_to_one_split_and_no_dialogue_is_lost(strategy):
    pool = sample_mbti(40, random.Random(5))
    split_of = {p.id: persona_split(p.id, 0.3, 9) for p in pool}

    casts = cast_within_splits(
        pool, _casting(strategy=strategy, dialogues=50), random.Random(2), id_prefix="s",
        split_of=lambda persona: split_of[persona.id],
    )  # fmt: skip

    assert len(casts) == 50 and len({cast.dialogue_id for cast in casts}) == 50
    assert all(len({split_of[p.id] for p in cast.speakers}) == 1 for cast in casts)
    per_split = Counter(split_of[cast.speakers[0].id] for cast in casts)
    personas = Counter(split_of.values())
    # dialogues in proportion to the split's personas, and the two splits interleaved
    assert abs(per_split["test"] - round(50 * personas["test"] / 40)) <= 1
    assert {split_of[c.speakers[0].id] for c in casts[:10]} == {"train", "test"}


def test_a_split_too_small_for_a_dialogue_is_refused_naming_the_splits_field():
    pool = sample_mbti(6, random.Random(5))

    with pytest.raises(RecipeError, match=r"the test split holds 1 of the 6 personas") as caught:
        cast_within_splits(
            pool, _casting(dialogues=4), random.Random(2), id_prefix="s",
            split_of=lambda persona: "test" if persona.id == pool[0].id else "train",
        )  # fmt: skip
    assert caught.value.field == "output.splits"


def test_quota_top_ups_pair_personas_of_one_split_only():
    from factory.personas import plan

    recipe = parse_recipe(
        {
            "name": "cells", "seed": 5, "personas": [{"source": "mbti", "count": 160}],
            "casting": {"strategy": "quota", "quota": [{"by": "mbti"}], "dialogues": 48, "accepted_per_cell": 2,
                        "cell_attempts": 6},
            "output": {"splits": {"train": 0.6, "test": 0.4}},
        }
    )  # fmt: skip
    planned = plan(recipe)
    split_of = {p.id: persona_split(p.id, 0.4, 5) for cast in planned.casts for p in cast.speakers}
    assert all(len({split_of[p.id] for p in cast.speakers}) == 1 for cast in planned.casts)
    assert planned.top_up is not None
    demand = planned.top_up.demand({}, {})  # every cell short: as many top-ups as the attempts allow
    top_ups = [cast for iteration in (1, 2) for cast in planned.top_up.casts(demand, iteration)]
    assert len(top_ups) == 2 * 16 * 2  # two rounds of two per cell
    for cast in top_ups:
        splits = {persona_split(p.id, 0.4, 5) for p in cast.speakers}
        assert len(splits) == 1, [(p.id, persona_split(p.id, 0.4, 5)) for p in cast.speakers]
    assert {persona_split(c.speakers[0].id, 0.4, 5) for c in top_ups} == {"train", "test"}
