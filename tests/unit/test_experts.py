"""Each expert against the scripted endpoint (a pass, a fail, an unparsable reply), the APC
arithmetic by hand, the cascade's hard gates, best-of-N by majority vote, and deduplication."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator

import pytest

from factory.critics import apc, attribution, faithfulness, portrayal, quality, toxicity
from factory.critics.acceptance import settle_run
from factory.critics.apc import StatementJudgement, apc_score
from factory.critics.base import JudgeContext, blocked_by, hard_gates
from factory.critics.dedup import near_duplicates
from factory.errors import InputError
from factory.llm.keys import ApiKeys
from factory.llm.spec import EndpointSpec
from factory.llm.tasks import JsonTaskRunner
from factory.recipes.critics import CriticsConfig
from factory.recipes.generation import GenerationConfig
from factory.records import BigFiveScores, DialogueRecord, GenerationMeta, PersonaProfile, Turn, Verdict
from tests.openai_server import ScriptedOpenAIServer
from tests.scripts import CONTRADICTION_MARK, TOXIC_MARK, UNPARSABLE_MARK, DialogueScript

NURSE = PersonaProfile(
    id="a", kind="mbti", mbti="INTJ", statements=["I work night shifts as a nurse.", "I grow tomatoes."]
)
BAKER = PersonaProfile(
    id="b",
    kind="big_five",
    big_five=BigFiveScores(openness=4, conscientiousness=5, extraversion=3, agreeableness=4, neuroticism=6),
    statements=["I bake bread for the market."],
)
CRITICS = CriticsConfig()


def dialogue(*lines: str, speakers=(NURSE, BAKER), id_: str = "d1") -> DialogueRecord:
    return DialogueRecord(
        id=id_,
        recipe="t",
        speakers=list(speakers),
        turns=[Turn(speaker=speakers[n % len(speakers)].id, text=text) for n, text in enumerate(lines)],
        generation=GenerationMeta(model="m", prompt_hash="h", seed=3),
    )


GOOD = dialogue(
    "Another night shift at the hospital ward.",
    "I was up early to bake bread for the market.",
    "My tomatoes need water.",
    "Bring some to the market!",
)


@pytest.fixture(scope="module")
def context() -> Iterator[JudgeContext]:
    with ScriptedOpenAIServer(DialogueScript()) as server:
        spec = EndpointSpec(
            base_urls=(server.base_url,), model="scripted-model", kind="openai-compatible", max_retries=0
        )
        with JsonTaskRunner(spec, ApiKeys({})) as runner:
            yield JudgeContext(runner.client, GenerationConfig(min_turns=2, max_turns=20)), runner


def run(context, judge, record, config) -> Verdict:
    judge_context, runner = context
    return runner.gather([judge(record, config, judge_context)])[0]


@pytest.mark.parametrize(
    "module, config, failing_line",
    [
        (faithfulness, CRITICS.faithfulness, f"{CONTRADICTION_MARK}, so no dogs for me."),
        (apc, CRITICS.apc, f"{CONTRADICTION_MARK}, so no dogs for me."),
        (toxicity, CRITICS.toxicity, f"Honestly, {TOXIC_MARK}."),
    ],
    ids=["faithfulness", "apc", "toxicity"],
)
def test_expert_passes_fails_and_reports_an_unparsable_reply(context, module, config, failing_line):
    ok = run(context, module.judge, GOOD, config)
    assert ok.passed and ok.critic == module.CRITIC_NAME and ok.tokens > 0
    bad = run(context, module.judge, dialogue(failing_line, "Oh no.", "Anyway.", "Bye."), config)
    assert not bad.passed and bad.reason
    garbage = run(context, module.judge, dialogue(f"{UNPARSABLE_MARK}.", "Hm.", "Ok.", "Bye."), config)
    assert not garbage.passed and garbage.score is None and "unparsable judge reply" in garbage.reason


def test_apc_score_by_hand():
    # relevant+entailed: 1; irrelevant+uncontradicted: 1; relevant+neutral: 0; irrelevant+contradicted: 0
    judgements = [
        StatementJudgement(1, 1, 0),
        StatementJudgement(0, 0, 0),
        StatementJudgement(1, 0, 0),
        StatementJudgement(0, 0, 1),
    ]
    assert apc_score(judgements) == 2
    assert StatementJudgement(0.8, 0.5, 0.1).credit == pytest.approx(0.8 * 0.5 + 0.2 * 0.9)


def test_apc_verdict_is_the_normalised_score(context):
    # The scripted NLI: a statement sharing a content word with the speaker's turns is relevant and
    # entailed; otherwise irrelevant and neutral. Nurse: "night shifts" yes, "tomatoes" no -> 1 + 1;
    # baker: "bread" yes -> 1. All three earn credit: 3 / 3.
    verdict = run(context, apc.judge, GOOD, CRITICS.apc)
    assert verdict.score == 1.0 and "over 3 statements" in verdict.reason


def test_portrayal_compares_inferred_and_assigned_personality(context):
    config = CRITICS.portrayal
    # The scripted psychologist reads everyone as INTJ / all traits 4. The nurse is INTJ; the
    # baker's neuroticism is 6, two levels off: within the default tolerance of 2.
    assert run(context, portrayal.judge, GOOD, config).passed
    strict = config.model_copy(update={"big_five_tolerance": 1})
    verdict = run(context, portrayal.judge, GOOD, strict)
    assert not verdict.passed and verdict.score == round(8 / 9, 4) and "neuroticism" in verdict.reason
    enfp = NURSE.model_copy(update={"mbti": "ESFP"})
    far = run(context, portrayal.judge, dialogue(*(t.text for t in GOOD.turns), speakers=(enfp, BAKER)), config)
    assert not far.passed and "ESFP read as INTJ" in far.reason


def test_attribution_scores_the_share_of_turns_attributed(context):
    assert run(context, attribution.judge, GOOD, CRITICS.attribution).score == 1.0
    # The same lines spoken by the baker first: the scripted judge still answers User 1, 2, 1, 2.
    swapped = dialogue(*(t.text for t in GOOD.turns), speakers=(BAKER, NURSE))
    swapped.speakers = [NURSE, BAKER]
    verdict = run(context, attribution.judge, swapped, CRITICS.attribution)
    assert verdict.score == 0.0 and not verdict.passed


def test_cascade_hard_gates():
    critics = CriticsConfig.model_validate({"apc": {"enabled": True, "hard": False}, "toxicity": {"enabled": True}})
    gates = hard_gates(critics)
    assert gates == {"format", "heuristic", "faithfulness", "toxicity"}
    record = dialogue("Hi.", "Hello.")
    record.verdicts = [
        Verdict(critic="format", passed=True, reason="ok"),
        Verdict(critic="apc", passed=False, reason="low"),
    ]
    assert blocked_by(record, gates) is None  # a soft expert's failure does not stop the cascade
    record.verdicts.append(Verdict(critic="faithfulness", passed=False, reason="contradiction"))
    assert blocked_by(record, gates) == "faithfulness"


def test_majority_vote_counts_policy_wins():
    # three candidates: 0 beats 1 on 3 policies, 2 beats 0 on 4, 1 beats 2 on all 5
    outcomes = {
        (0, 1): {"depth": 0, "coherency": 0, "consistency": 0, "diversity": 1, "likeability": 1},
        (0, 2): {"depth": 2, "coherency": 2, "consistency": 2, "diversity": 2, "likeability": 0},
        (1, 2): {p: 1 for p in quality.POLICIES},
    }
    best, votes = quality.majority_vote(3, outcomes)
    assert votes == [4, 7, 4] and best == 1
    assert quality.majority_vote(2, {(0, 1): {"depth": 0, "coherency": 1}})[0] == 0  # a tie goes to the earlier


def test_best_of_n_keeps_the_candidate_the_judge_prefers(context):
    judge_context, runner = context
    # the scripted comparison prefers the conversation whose numbered lines are in order
    ordered = dialogue("1 Hello there.", "2 Hi!", "3 How are you?", "4 Fine.", id_="c-c0")
    jumbled = [dialogue("3 How are you?", "1 Hello there.", "4 Fine.", "2 Hi!", id_=f"c-c{n}") for n in (1, 2)]
    candidates = [jumbled[0], ordered, jumbled[1]]
    runner.gather([quality.select_best(candidates, CRITICS.quality, judge_context)])
    verdicts = [c.verdicts[-1] for c in candidates]
    assert [v.passed for v in verdicts] == [False, True, False]
    assert verdicts[1].score == 1.0 and "best of 3" in verdicts[1].reason and "c-c0 had 10" in verdicts[0].reason


def test_dedup_rejects_the_later_of_two_near_duplicates():
    lines = [
        "I bake sourdough every single morning before dawn.",
        "That sounds exhausting but delicious.",
        "It is, and the market crowd loves the rye loaves.",
        "I should come by on Saturday.",
    ]
    first, copy = dialogue(*lines, id_="r-1"), dialogue(*lines[:3], "I should come by this Saturday.", id_="r-2")
    other = dialogue(
        "The train was late again today.",
        "Mine too, signal failure.",
        "I will cycle tomorrow.",
        "Good plan.",
        id_="r-3",
    )
    failed_earlier = dialogue(*lines, id_="r-0")
    for record in (first, copy, other):
        record.verdicts = [Verdict(critic="format", passed=True, reason="ok")]
    failed_earlier.verdicts = [Verdict(critic="format", passed=False, reason="bad")]
    records = [copy, other, first, failed_earlier]
    settle = settle_run(CriticsConfig(dedup={"enabled": True}), lambda: [records])
    for record in records:
        settle(record)
    assert (
        copy.verdicts[-1].critic == "dedup"
        and not copy.verdicts[-1].passed
        and "near-duplicate of r-1" in copy.verdicts[-1].reason
    )
    assert first.verdicts[-1].passed and other.verdicts[-1].passed
    assert [v.critic for v in failed_earlier.verdicts] == ["format"]  # only contenders are compared


def test_approval_needs_every_box_and_an_approving_sign_off():
    from factory.dataset.review_section import ReviewState, read_state, write_state
    from factory.errors import ReviewError
    from factory.review import approvable, sign

    card = write_state("---\nlicense: mit\n---\n# Card\n", ReviewState(samples={"accepted": ["a", "b"]}, seed=3))
    state = read_state(card)
    assert (
        state.status == "in_review"
        and state.samples == {"accepted": ["a", "b"]}
        and state.missing == list(state.checklist)
    )
    with pytest.raises(ReviewError, match="incomplete"):
        approvable(state)
    sign(state, "ana", "reject", "found a real name", ["coverage", "samples_read", "no_harm", "critics"])
    with pytest.raises(ReviewError, match="ana signed off with decision reject"):
        approvable(read_state(write_state(card, state)))
    sign(state, "ben", "approve", "fine by me", [])
    with pytest.raises(ReviewError, match="ana signed off with decision reject"):  # ben's approval does not outvote ana
        approvable(read_state(write_state(card, state)))
    sign(state, "ana", "approve", "the name was removed", [])
    approvable(read_state(write_state(card, state)))
    ticked = read_state(write_state(card, state).replace("- [x]", "- [ ]", 1))
    with pytest.raises(ReviewError, match="incomplete: coverage"):
        approvable(ticked)
    with pytest.raises(InputError, match="unknown checklist item"):  # a value the user gave: exit 2
        sign(state, "ben", "approve", "", ["vibes"])


@pytest.mark.parametrize(
    "module, config",
    [(portrayal, CRITICS.portrayal), (attribution, CRITICS.attribution)],
    ids=["portrayal", "attribution"],
)
def test_portrayal_and_attribution_report_an_unparsable_reply(context, module, config):
    garbage = run(context, module.judge, dialogue(f"{UNPARSABLE_MARK}.", "Hm.", "Ok.", "Bye."), config)
    assert not garbage.passed and garbage.score is None and "unparsable judge reply" in garbage.reason


def test_quality_says_when_a_comparison_gave_no_answer(context):
    judge_context, runner = context
    first = dialogue("1 Hi.", "2 Hello.", id_="q-c0")
    second = dialogue(f"{UNPARSABLE_MARK}.", "Hm.", id_="q-c1")
    runner.gather([quality.select_best([first, second], CRITICS.quality, judge_context)])
    assert first.verdicts[-1].passed  # no votes either way: the tie goes to the earlier candidate
    assert "1 comparison(s) gave no usable answer" in first.verdicts[-1].reason


def judged_by_reply(answer: dict) -> Verdict:
    """The faithfulness verdict on GOOD when the judge answers ``answer``."""
    with ScriptedOpenAIServer(lambda request: json.dumps(answer)) as server:
        spec = EndpointSpec(
            base_urls=(server.base_url,), model="scripted-model", kind="openai-compatible", max_retries=0
        )
        with JsonTaskRunner(spec, ApiKeys({})) as runner:
            judge_context = JudgeContext(runner.client, GenerationConfig(min_turns=2, max_turns=20))
            return run((judge_context, runner), faithfulness.judge, GOOD, CRITICS.faithfulness)


def test_a_faithfulness_reply_that_copies_the_worked_example_is_unusable():
    copied = judged_by_reply(
        {
            "reason": "User 1 says 'I grilled a huge steak for dinner' but is vegetarian.",
            "speaker": "User 1",
            "contradiction": False,
        }
    )
    assert not copied.passed and not copied.answered and "quotes the prompt's worked example" in copied.reason
    own = judged_by_reply(
        {
            "reason": "User 2 says 'I was up early to bake bread', in line with the profile.",
            "speaker": "none",
            "contradiction": False,
        }
    )
    assert own.passed and own.answered


def test_the_example_fact_words_are_the_worked_examples_own():
    example_text = " ".join(" ".join([*a, *b, *lines]) for a, b, lines, _ in faithfulness.FEW_SHOT).lower()
    assert all(word in example_text for word in faithfulness.EXAMPLE_FACT_WORDS)
    borrowed = judged_by_reply(
        {
            "reason": "User 1 says 'I prefer variety to routine' but is vegetarian.",
            "speaker": "none",
            "contradiction": False,
        }
    )
    assert not borrowed.answered and "'vegetarian'" in borrowed.reason


def test_the_run_and_the_persona_pool_find_the_same_near_duplicates():
    from factory.personas.pool import near_duplicates as pool_repeats

    rng = random.Random(4)
    words = [f"word{n}" for n in range(60)]
    base = [rng.choice(words) for _ in range(40)]
    texts = [" ".join(base)]
    for changed in range(0, 40, 2):  # from a copy to a different text, through the threshold
        variant = list(base)
        for position in rng.sample(range(40), changed):
            variant[position] = rng.choice(words)
        texts.append(" ".join(variant))
    records = [dialogue(*text.split(" ", 1), id_=f"r-{n:02d}") for n, text in enumerate(texts)]
    for record in records:
        record.verdicts = [Verdict(critic="format", passed=True, reason="ok")]
    in_run = near_duplicates([records], 0.7)
    in_pool = pool_repeats([" ".join(turn.text for turn in r.turns) for r in records], 0.7)
    assert {int(key.removeprefix("r-")) for key in in_run} == in_pool
    assert 0 < len(in_pool) < len(texts) - 1  # some texts repeat the first, some do not
    assert all(
        key > original and original not in in_run for key, (original, _) in in_run.items()
    )  # an earlier, kept one
