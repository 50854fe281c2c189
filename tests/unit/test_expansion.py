"""Persona expansion: clustering, near-duplicate dropping, and profile composition that rejects
redundant and contradicting statements (the contradiction judge is the scripted endpoint)."""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import pytest

from factory.llm.keys import ApiKeys
from factory.llm.spec import EndpointSpec
from factory.llm.tasks import JsonTaskRunner
from factory.personas.expansion import Expansion, Statement, _keep_novel, spherical_kmeans
from factory.recipes.personas import SPCExpansionSource
from factory.records import Dropped
from tests.openai_server import ScriptedOpenAIServer, bag_of_words_embedding
from tests.persona_scripts import CONTRADICTION_WORD, PersonaScript


class BagOfWords:
    name = "bag of words"

    def embed(self, texts: list[str]) -> np.ndarray:
        return np.asarray([bag_of_words_embedding(text) for text in texts], dtype=np.float32)


@pytest.fixture
def runner() -> Iterator[JsonTaskRunner]:
    with ScriptedOpenAIServer(PersonaScript()) as server:
        spec = EndpointSpec(
            base_urls=(server.base_url,), model="scripted-model", kind="openai-compatible", max_retries=0
        )
        with JsonTaskRunner(spec, ApiKeys({})) as task_runner:
            yield task_runner


BANK = [
    Statement("I am a strict vegetarian who cooks lentils", "diet", "seed"),
    Statement("I am a strict vegetarian who cooks lentils daily", "food", "seed"),  # redundant with the first
    Statement(f"I have {CONTRADICTION_WORD} eaten a vegetable in my life", "meals", "bootstrapped"),
    Statement("My job is driving a night bus", "job", "seed"),
    Statement("I keep three cats in a tiny flat", "pets", "seed"),
    Statement("Jazz piano is what I practise after work", "music", "bootstrapped"),
    Statement("Sundays are for hiking up the local hills", "weekend", "seed"),
    Statement("Our family moved here from Ghana", "family", "seed"),
]


def test_profiles_never_hold_redundant_or_contradicting_statements(runner: JsonTaskRunner):
    source = SPCExpansionSource(source="spc_expansion", statements_per_profile=4, redundancy_threshold=0.8)
    embedder = BagOfWords()
    expansion = Expansion(runner, embedder, source, seed_path=None, rng=random.Random(0), show_progress=False)
    vectors = embedder.embed([s.text for s in BANK])
    assert float(vectors[0] @ vectors[1]) > 0.8  # the pair really is redundant under this embedding
    profiles = runner.gather(expansion.compose(n, BANK, vectors, seed) for n, seed in enumerate(range(40)))
    made = [p for p in profiles if not isinstance(p, Dropped)]
    assert len(made) == 40
    for profile in made:
        assert len(profile.statements) == 4 and len(set(profile.topics)) == 4
        assert not {BANK[0].text, BANK[1].text} <= set(profile.statements)
        # The judge says a statement with the contradiction word contradicts any profile it joins,
        # so such a statement can only ever be the first one chosen.
        assert all(CONTRADICTION_WORD not in s.split() for s in profile.statements[1:])
    assert expansion.stats.rejected_redundant > 0
    assert expansion.stats.rejected_contradicting > 0


def test_a_profile_that_cannot_be_filled_is_dropped_with_the_reason(runner: JsonTaskRunner):
    source = SPCExpansionSource(source="spc_expansion", statements_per_profile=4, check_contradictions=False)
    few = BANK[:3]  # three topics, of which two statements are redundant
    embedder = BagOfWords()
    expansion = Expansion(runner, embedder, source, seed_path=None, rng=random.Random(0), show_progress=False)
    result = runner.gather([expansion.compose(1, few, embedder.embed([s.text for s in few]), 7)])[0]
    assert isinstance(result, Dropped) and "of 4 compatible statements" in result.reason


def test_near_duplicates_are_dropped_against_the_kept_and_each_other():
    embedder = BagOfWords()
    kept = embedder.embed(["I love to bake sourdough bread"])
    novel, _, duplicates = _keep_novel(
        ["I love to bake sourdough bread!", "I restore vintage motorbikes", "I restore vintage motorbikes"],
        kept,
        embedder,
        0.9,
    )
    assert novel == ["I restore vintage motorbikes"] and duplicates == 2


def test_kmeans_separates_clearly_distinct_groups():
    embedder = BagOfWords()
    texts = [f"I have a dog named {n}" for n in ("Rex", "Max", "Bo")] + [
        f"I drive a red {c} truck" for c in ("Ford", "Volvo", "Fiat")
    ]
    labels = spherical_kmeans(embedder.embed(texts), 2, seed=3)
    assert len(set(labels[:3])) == 1 and len(set(labels[3:])) == 1 and labels[0] != labels[3]
