"""Parsing generator replies and the critics' verdicts, on hand-made dialogues."""

from __future__ import annotations

from factory.config import GenerationConfig, HeuristicCriticConfig
from factory.critics.faithfulness import faithfulness_verdict
from factory.critics.heuristic import heuristic_verdict
from factory.generation.parse import parse_dialogue
from factory.records import PersonaProfile, Turn

ALICE = PersonaProfile(id="a", kind="statements", statements=["I have two dogs named after famous painters."])
BOB = PersonaProfile(id="b", kind="statements", statements=["I am a night shift nurse."])


def test_parse_labels_continuations_and_preamble():
    text = "Sure! Here it is:\nUser 1: Hi there.\nUser 2: Hello!\nHow are you?\n**User 1:** Fine."
    parsed = parse_dialogue(text, [ALICE, BOB], "stop")
    assert [(t.speaker, t.text) for t in parsed.turns] == [("a", "Hi there."), ("b", "Hello! How are you?"), ("a", "Fine.")]
    assert parsed.verdict.passed


def test_parse_drops_the_cut_turn_and_reports_unparsable_replies():
    parsed = parse_dialogue("User 1: Hi.\nUser 2: Hel", [ALICE, BOB], "length")
    assert [t.text for t in parsed.turns] == ["Hi."] and "max_tokens" in parsed.verdict.reason
    failed = parse_dialogue("I cannot help with that.", [ALICE, BOB], "stop")
    assert failed.turns == [] and not failed.verdict.passed and "unparsable reply" in failed.verdict.reason


def turns(*pairs):
    return [Turn(speaker=s, text=t) for s, t in pairs]


GEN = GenerationConfig(min_turns=2, max_turns=6)
HEUR = HeuristicCriticConfig()


def test_heuristic_passes_a_clean_dialogue():
    verdict = heuristic_verdict(turns(("a", "Hi, long night?"), ("b", "Yes, twelve hours on the ward.")), [ALICE, BOB], GEN, HEUR)
    assert verdict.passed and verdict.score == 1.0


def test_heuristic_names_each_problem():
    dialogue = turns(
        ("a", "I have two dogs named after famous painters."),
        ("a", "Hello."),
        ("b", "Hello."),
    )
    verdict = heuristic_verdict(dialogue, [ALICE, BOB], GEN, HEUR)
    assert not verdict.passed
    assert "alternation: turns 1 and 2" in verdict.reason
    assert "repetition: 1 of 3 turns repeat" in verdict.reason
    assert "copying: turn 1 copies" in verdict.reason
    assert verdict.score == 0.25
    too_long = heuristic_verdict(turns(*[("a" if i % 2 == 0 else "b", f"line {i}") for i in range(8)]), [ALICE, BOB], GEN, HEUR)
    assert "8 turns, outside the bounds 2-6" in too_long.reason


def test_heuristic_catches_a_looping_turn():
    loop = "we go round and " * 6
    verdict = heuristic_verdict(turns(("a", loop), ("b", "ok")), [ALICE, BOB], GEN, HEUR)
    assert "repetition: turn 1 repeats" in verdict.reason


def test_faithfulness_verdicts_from_judge_replies():
    ok = faithfulness_verdict('{"contradiction": false, "speaker": "none", "reason": "consistent"}', 10)
    assert ok.passed and ok.score == 1.0 and ok.tokens == 10
    bad = faithfulness_verdict('```json\n{"contradiction": true, "speaker": "User 2", "reason": "says no pets"}\n```', 5)
    assert not bad.passed and bad.reason == "User 2 contradicts the profile: says no pets"
    garbage = faithfulness_verdict("yes it does", 3)
    assert not garbage.passed and garbage.score is None and "unparsable judge reply" in garbage.reason
