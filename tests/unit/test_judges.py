"""Who judges a critic (its own settings over critics.llm over the generator's), how a jury's
verdicts become one, and the grounding critic on real sentence embeddings."""

from __future__ import annotations

import asyncio

import pytest

from factory.critics import grounding
from factory.critics.base import JudgeContext
from factory.critics.jury import aggregate_verdicts
from factory.llm.embeddings import EndpointEmbedder, MiniLMEmbedder
from factory.recipes.critics import CriticsConfig, GroundingCriticConfig, judges_of
from factory.recipes.generation import GenerationConfig
from factory.records import DialogueRecord, GenerationMeta, PersonaProfile, Turn, Verdict
from tests.openai_server import ScriptedOpenAIServer


def test_a_critic_is_judged_by_its_own_judge_over_critics_llm_over_the_generator():
    unset = CriticsConfig()
    judges, aggregate = judges_of(unset, "faithfulness")
    assert [j.base_url for j in judges] == [None] and judges[0].model is None  # the generator's endpoint
    assert aggregate == "majority" and judges[0].temperature == 0.0

    critics = CriticsConfig.model_validate(
        {
            "llm": {"base_url": "http://judge/v1", "model": "big", "temperature": 0.3, "max_concurrency": 3},
            "apc": {"llm": {"model": "other"}},
            "toxicity": {"temperature": 0.9},
            "portrayal": {"llm": {"base_url": "http://elsewhere/v1"}},
        }
    )
    (faith,), _ = judges_of(critics, "faithfulness")
    assert (faith.base_url, faith.model, faith.temperature, faith.max_concurrency) == ("http://judge/v1", "big", 0.3, 3)
    (apc,), _ = judges_of(critics, "apc")
    assert (apc.base_url, apc.model, apc.max_concurrency) == ("http://judge/v1", "other", 3)  # the rest inherited
    (tox,), _ = judges_of(critics, "toxicity")
    assert tox.temperature == 0.9  # the critic's own temperature beats critics.llm's
    (portrayal,), _ = judges_of(critics, "portrayal")
    # another server: critics.llm's model was that server's, so it is not carried over
    assert (portrayal.base_url, portrayal.model) == ("http://elsewhere/v1", None)
    assert judges_of(critics, "heuristic") == ([], "majority")


def test_a_jury_is_every_juror_over_critics_llm_and_a_critics_own_judge_beats_the_run_wide_jury():
    critics = CriticsConfig.model_validate(
        {
            "llm": {"base_url": "http://judge/v1"},
            "jury": {"judges": [{"model": "a"}, {"model": "b", "base_url": "http://b/v1"}], "aggregate": "mean"},
            "apc": {"llm": {"model": "solo"}},
        }
    )
    jurors, aggregate = judges_of(critics, "faithfulness")
    assert [(j.base_url, j.model) for j in jurors] == [("http://judge/v1", "a"), ("http://b/v1", "b")]
    assert aggregate == "mean"
    (solo,), aggregate = judges_of(critics, "apc")
    assert (solo.model, aggregate) == ("solo", "majority")
    with pytest.raises(ValueError, match="at least 2"):
        CriticsConfig.model_validate({"jury": {"judges": [{"model": "a"}]}})


def _juror(judge: str, passed: bool, score: float | None, answered: bool = True) -> Verdict:
    return Verdict(
        critic="faithfulness", passed=passed, score=score, reason=f"{judge} says", tokens=5, answered=answered,
        judge=judge,
    )  # fmt: skip


def test_a_jury_decides_by_majority_or_mean_and_keeps_every_jurors_verdict():
    split = [_juror("a", True, 1.0), _juror("b", False, 0.0)]
    tie = aggregate_verdicts("faithfulness", split, "majority", 0.5)
    assert not tie.passed  # a tie is not a majority
    assert [(j.judge, j.passed) for j in tie.jurors] == [("a", True), ("b", False)]
    assert tie.judge == "a + b" and tie.tokens == 10 and tie.score == 0.5
    mean = aggregate_verdicts("faithfulness", split, "mean", 0.5)
    assert mean.passed and mean.score == 0.5  # the mean reaches the threshold
    assert not aggregate_verdicts("apc", split, "mean", 0.6).passed

    three = [_juror("a", True, 1.0), _juror("b", True, 1.0), _juror("c", False, 0.0)]
    assert aggregate_verdicts("faithfulness", three, "majority", 0.5).passed

    # a juror without a usable answer is left out; none answering is no answer
    partly = [_juror("a", True, 1.0), _juror("b", False, None, answered=False)]
    decided = aggregate_verdicts("faithfulness", partly, "majority", 0.5)
    assert decided.passed and decided.answered and "1 gave no usable answer" in decided.reason
    silent = aggregate_verdicts("faithfulness", [partly[1], partly[1]], "majority", 0.5)
    assert not silent.passed and not silent.answered and len(silent.jurors) == 2


HIKER = PersonaProfile(
    id="h",
    kind="statements",
    statements=["I climb mountains every summer.", "I have a golden retriever named Max.", "I work as a dentist."],
)
PIANIST = PersonaProfile(
    id="p",
    kind="statements",
    statements=["I play the piano in a jazz band.", "I live in a small flat in Paris.", "I am allergic to cats."],
)


def _talk(*pairs: tuple[str, str]) -> DialogueRecord:
    turns = [Turn(speaker=who, text=text) for first, second in pairs for who, text in (("h", first), ("p", second))]
    return DialogueRecord(
        id="g",
        recipe="t",
        speakers=[HIKER, PIANIST],
        turns=turns,
        generation=GenerationMeta(model="m", prompt_hash="h", seed=1),
    )


OWN = _talk(
    ("I just got back from climbing a mountain this summer.", "Nice! I played piano with my jazz band last night."),
    ("My golden retriever Max came along on the climb.", "My little flat in Paris has no room for a dog."),
    ("At work I fix teeth all day as a dentist.", "I keep away from cats, I am allergic."),
)
SWAPPED = _talk(
    ("I played piano with my jazz band last night.", "I just got back from climbing a mountain this summer."),
    ("My little flat in Paris has no room for a dog.", "My golden retriever Max came along on the climb."),
    ("I keep away from cats, I am allergic.", "At work I fix teeth all day as a dentist."),
)
NONE = _talk(
    ("Hello, how are you today?", "Fine, thanks. And you?"),
    ("Not bad at all.", "Good to hear."),
    ("Well, see you around.", "Goodbye!"),
)


def _grounding(record: DialogueRecord, embedder: object) -> Verdict:
    context = JudgeContext(None, GenerationConfig(min_turns=2, max_turns=20), embedder=embedder)  # type: ignore[arg-type]
    return asyncio.run(grounding.judge(record, GroundingCriticConfig(enabled=True), context))


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder()


def test_grounding_scores_speakers_who_use_their_own_persona_above_swapped_or_absent_personas(minilm):
    own, swapped, none = (_grounding(record, minilm) for record in (OWN, SWAPPED, NONE))
    assert own.score is not None and swapped.score is not None and none.score is not None
    assert own.score > none.score > swapped.score
    assert own.passed and not swapped.passed and not none.passed
    assert own.judge == minilm.name and own.tokens == 0
    assert "does not draw on their own persona" in swapped.reason


def test_grounding_with_the_endpoints_embeddings():
    with ScriptedOpenAIServer() as server:
        embedder = EndpointEmbedder(server.base_url, "bag-of-words", None)
        own, swapped, none = (_grounding(record, embedder) for record in (OWN, SWAPPED, NONE))
        embedder.close()
        assert len(server.embedding_requests) == 3
    assert own.score is not None and swapped.score is not None and none.score is not None
    assert own.score > none.score and own.score > swapped.score
    assert own.passed and not swapped.passed


def test_grounding_does_not_judge_a_dialogue_without_turns(minilm):
    empty = OWN.model_copy(update={"turns": []})
    verdict = _grounding(empty, minilm)
    assert not verdict.passed and "no turns" in verdict.reason


def test_loading_the_embedding_model_prints_no_progress_bar():
    """Every Ray worker loads it: a "Loading weights" bar each would land in the run's output."""
    import subprocess
    import sys

    probe = "from factory.llm.embeddings import MiniLMEmbedder; MiniLMEmbedder().embed(['hello'])"
    finished = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "Loading weights" not in finished.stderr + finished.stdout


def test_every_critic_that_embeds_shares_one_loaded_model():
    from factory.critics.learned.critic import embedder_for_critics
    from factory.llm.embeddings import open_embedder
    from factory.recipes.llm import EmbeddingsConfig

    # two loads at once (the grounding critic's and the learned one's, on a worker's threads) raced
    # over transformers' progress-bar switch and printed "Loading weights" into the run's output
    assert open_embedder(EmbeddingsConfig(), None, None) is embedder_for_critics()
