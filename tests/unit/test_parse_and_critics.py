"""Parsing generator replies and the critics' verdicts, on hand-made dialogues."""

from __future__ import annotations

from collections import Counter

import pytest

from factory.critics.faithfulness import faithfulness_verdict
from factory.critics.heuristic import heuristic_verdict
from factory.generation.spc import parse_dialogue
from factory.llm.ask import parse_json_object
from factory.recipes.critics import HeuristicCriticConfig
from factory.recipes.generation import GenerationConfig
from factory.records import PersonaProfile, Turn

ALICE = PersonaProfile(id="a", kind="statements", statements=["I have two dogs named after famous painters."])
BOB = PersonaProfile(id="b", kind="statements", statements=["I am a night shift nurse."])
ALICE_TWO = PersonaProfile(
    id="a",
    kind="statements",
    statements=["I have two dogs named after famous painters.", "I work from home as a translator."],
)


def test_parse_labels_continuations_and_preamble():
    text = "Sure! Here it is:\nUser 1: Hi there.\nUser 2: Hello!\nHow are you?\n**User 1:** Fine."
    parsed = parse_dialogue(text, [ALICE, BOB], "stop")
    assert [(t.speaker, t.text) for t in parsed.turns] == [
        ("a", "Hi there."),
        ("b", "Hello! How are you?"),
        ("a", "Fine."),
    ]
    assert parsed.verdict.passed


def test_parse_drops_the_cut_turn_and_reports_unparsable_replies():
    parsed = parse_dialogue("User 1: Hi.\nUser 2: Hel", [ALICE, BOB], "length")
    assert [t.text for t in parsed.turns] == ["Hi."] and "max_tokens" in parsed.verdict.reason
    failed = parse_dialogue("I cannot help with that.", [ALICE, BOB], "stop")
    assert failed.turns == [] and not failed.verdict.passed and "unparsable reply" in failed.verdict.reason


def test_a_one_call_dialogue_is_cleaned_as_role_play_lines_are():
    text = "User 1: *waves* Hi there. (smiling) Nice day.\nUser 2: Hello! I was out early. Then I"
    parsed = parse_dialogue(text, [ALICE, BOB], "length")
    assert [(t.text, t.cleaned) for t in parsed.turns] == [
        ("Hi there. Nice day.", ["narration"]),
        ("Hello! I was out early.", ["trimmed"]),  # cut by the token limit: back to its last sentence
    ]
    assert "trimmed to its last whole sentence" in parsed.verdict.reason
    mid_line = parse_dialogue(
        'User 1: I loved it... (smiling) "that was Venice."\nUser 2: Lovely.', [ALICE, BOB], "stop"
    )
    assert mid_line.turns[0].text == 'I loved it... "that was Venice."' and mid_line.turns[0].cleaned == ["narration"]


def turns(*pairs):
    return [Turn(speaker=s, text=t) for s, t in pairs]


GEN = GenerationConfig(min_turns=2, max_turns=6)
HEUR = HeuristicCriticConfig()


def test_heuristic_passes_a_clean_dialogue():
    verdict = heuristic_verdict(
        turns(("a", "Hi, long night?"), ("b", "Yes, twelve hours on the ward.")), [ALICE, BOB], GEN, HEUR
    )
    assert verdict.passed and verdict.score == 1.0


def test_heuristic_names_each_problem():
    dialogue = turns(
        ("a", "I have two dogs named after famous painters. I work from home as a translator."),
        ("a", "Hello."),
        ("b", "Hello."),
    )
    verdict = heuristic_verdict(dialogue, [ALICE_TWO, BOB], GEN, HEUR)
    assert not verdict.passed
    assert "alternation: turns 1 and 2" in verdict.reason
    assert "repetition: 1 of 3 turns echo an earlier turn" in verdict.reason
    assert "copying: 2 of 2 statements of one persona are pasted verbatim" in verdict.reason
    assert "few words: 2 of 3 turns are 3 words or fewer" in verdict.reason
    assert verdict.score == 1 - 4 / 10  # four of the ten checks failed
    too_long = heuristic_verdict(
        turns(*[("a" if i % 2 == 0 else "b", f"line {i}") for i in range(8)]), [ALICE, BOB], GEN, HEUR
    )
    assert "8 turns, outside the bounds 2-6" in too_long.reason


def test_heuristic_catches_a_looping_turn():
    loop = "we go round and " * 6
    verdict = heuristic_verdict(turns(("a", loop), ("b", "ok")), [ALICE, BOB], GEN, HEUR)
    assert "repetition: turn 1 repeats" in verdict.reason


def test_faithfulness_verdicts_from_judge_replies():
    ok = faithfulness_verdict(
        parse_json_object('{"contradiction": false, "speaker": "none", "reason": "consistent"}'), 10
    )
    assert ok.passed and ok.score == 1.0 and ok.tokens == 10
    bad = faithfulness_verdict(
        parse_json_object('```json\n{"contradiction": true, "speaker": "User 2", "reason": "says no pets"}\n```'), 5
    )
    assert not bad.passed and bad.reason == "User 2 contradicts the profile: says no pets"
    garbage = faithfulness_verdict({"verdict": "yes it does"}, 3)
    assert not garbage.passed and garbage.score is None and "unparsable judge reply" in garbage.reason


def test_parse_accepts_decorated_speaker_labels():
    text = "* * User 1: * * Hi there. * *\n**User 2**: Hello!\n- Speaker 1 : Fine.\n> __User 2__: Good."
    parsed = parse_dialogue(text, [ALICE, BOB], "stop")
    assert [(t.speaker, t.text) for t in parsed.turns] == [
        ("a", "Hi there."),
        ("b", "Hello!"),
        ("a", "Fine."),
        ("b", "Good."),
    ]


def test_heuristic_catches_speakers_echoing_each_other():
    echo = turns(
        ("a", "I spent the whole weekend repainting the garden fence."),
        ("b", "I spent the whole weekend repainting the garden fence too."),
        ("a", "The fence looks great now that it is painted blue."),
        ("b", "The fence looks great now that it is painted blue!"),
    )
    verdict = heuristic_verdict(echo, [ALICE, BOB], GEN, HEUR)
    assert not verdict.passed and "repetition: 2 of 4 turns echo an earlier turn" in verdict.reason
    talk = turns(
        ("a", "I painted the garden fence blue this weekend."),
        ("b", "You painted the fence? I would have picked green."),
        ("a", "Green was my second choice, honestly."),
        ("b", "Blue suits a garden though."),
    )
    assert heuristic_verdict(talk, [ALICE, BOB], GEN, HEUR).passed


def test_heuristic_catches_a_sentence_said_again_within_a_turn():
    said_thrice = "I love my job at the hospital. I love my job at the hospital. I love my job at the hospital."
    verdict = heuristic_verdict(turns(("a", said_thrice), ("b", "That is good to hear.")), [ALICE, BOB], GEN, HEUR)
    assert "repetition: turn 1 says 'i love my job at the hospital' 3 times" in verdict.reason


def test_saying_a_persona_fact_is_talk_and_reciting_the_profile_is_copying():
    natural = turns(("a", "I have two dogs named after famous painters."), ("b", "What are their names?"))
    assert heuristic_verdict(natural, [ALICE_TWO, BOB], GEN, HEUR).passed
    recited = turns(
        ("a", "I have two dogs named after famous painters."),
        ("b", "Nice."),
        ("a", "Also, I work from home as a translator."),
        ("b", "Cool."),
    )
    verdict = heuristic_verdict(recited, [ALICE_TWO, BOB], GEN, HEUR)
    assert "copying: 2 of 2 statements of one persona are pasted verbatim" in verdict.reason


FIRST_CHECKS = ("turn count", "alternation", "repetition", "copying")


def test_the_heuristic_passes_the_spc_conversations_the_generator_is_shown():
    from factory.personas.statements import load_spc_rows
    from factory.settings import resolve_data_path

    rows = [
        row
        for row in load_spc_rows(resolve_data_path("builtin:synthetic_persona_chat", None))
        if len(row.conversation) >= 2
    ]
    any_length = GenerationConfig(min_turns=2, max_turns=1000)  # turn bounds are the recipe's business, not the data's
    passed, pasted = 0, 0
    rejected_by: Counter[str] = Counter()
    for row in rows:
        speakers = [
            PersonaProfile(id=f"u{n}", kind="statements", statements=list(p)) for n, p in enumerate(row.personas)
        ]
        conversation = [Turn(speaker=speakers[s].id, text=t) for s, t in row.conversation]
        verdict = heuristic_verdict(conversation, speakers, any_length, HEUR)
        failed = set() if verdict.passed else {problem.split(":")[0] for problem in verdict.reason.split("; ")}
        rejected_by.update(failed)
        passed += not failed & set(FIRST_CHECKS)
        # the same conversation with User 1's whole profile pasted into their first turn
        first = next(i for i, (s, _) in enumerate(row.conversation) if s == 0)
        recited = list(conversation)
        recited[first] = Turn(speaker=speakers[0].id, text=" ".join([*row.personas[0], conversation[first].text]))
        pasted += "copying" in heuristic_verdict(recited, speakers, any_length, HEUR).reason
    assert len(rows) > 900
    assert passed / len(rows) >= 0.95
    # each check for what a small model's cleaning lets through rejects at most 2% of real talk; the
    # placeholder check is apart: Synthetic-Persona-Chat's own lines hold template placeholders
    # ("Hi, I'm [user 1 name]"), which a generated dialogue must not (bench/heuristic_false_rejects.py)
    for check in ("unfinished", "boilerplate", "self-repetition", "partner copy", "few words"):
        assert rejected_by[check] / len(rows) <= 0.02, (check, rejected_by[check])
    long_profiles = sum(
        sum(len(s.split()) >= HEUR.copy_min_words for s in row.personas[0]) >= HEUR.copy_max_per_turn for row in rows
    )
    assert pasted >= long_profiles > 0.5 * len(rows)


def _problems(*lines: str) -> str:
    speakers = [ALICE, BOB]
    dialogue = [Turn(speaker=speakers[n % 2].id, text=line) for n, line in enumerate(lines)]
    verdict = heuristic_verdict(dialogue, speakers, GenerationConfig(min_turns=2, max_turns=60), HEUR)
    return "" if verdict.passed else verdict.reason


FINE = [
    "Hi! I just got back from walking my two dogs.",
    "Nice, what are their names?",
    "Monet and Dali, after the painters.",
    "Ha, that is great. I work nights at the hospital, so I walk mine at dawn.",
]


@pytest.mark.parametrize(
    ("check", "bad_turn"),
    [
        ("unfinished", "I was going to take them to the park and"),
        ("boilerplate", "I'm glad you enjoyed your ride! Here is your next message."),
        ("boilerplate", "As an AI language model, I do not have dogs."),
        ("boilerplate", "I'm an AI assistant designed to assist users in making their lives easier."),
        ("boilerplate", "You're not my assistant, but I can still help you plan a fun weekend."),  # read back
        ("boilerplate", "I'm Alex, an ordinary person who has just moved here."),  # the role-play prompt's words
        ("boilerplate", "I've just finished a new book, and I want to talk about it in character."),
        ("boilerplate", "I'll just keep going with my character as a dog rescue specialist for a moment."),
        ("boilerplate", "I'd love to chat more. You're not limited to my AI assistant, just ask me anything."),
        ("boilerplate", "*smiles warmly* That sounds lovely."),
        ("boilerplate", "She nods and looks out of the window."),
        ("placeholder", "Hi, I'm [user 1 name], nice to meet you."),
    ],
)
def test_each_new_check_names_the_turn_it_rejects(check, bad_turn):
    assert _problems(*FINE) == ""
    reason = _problems(*FINE[:3], bad_turn)
    assert reason.startswith(f"{check}: turn 4 "), reason


def test_a_speaker_saying_their_last_turn_again_and_a_partner_copied_are_rejected():
    again = "Ha, that is great. I work nights at the hospital, so I walk mine at dawn, you know."
    assert _problems(*FINE, "Do you walk them every day?", again).startswith("self-repetition: turn 6 says again")
    copied = "Ha, that is great. I work nights at the hospital, so I walk mine at dawn."
    assert "partner copy: turn 5 copies turn 4" in _problems(*FINE, copied)
    assert "few words: 4 of 6 turns" in _problems("Hi.", "Hello!", "Dogs?", "Yes, two.", *FINE[:2])


def test_what_real_conversations_do_passes_the_new_checks():
    one_word = [*FINE, "Nice!", "Thanks. They keep me sane on the long shifts, honestly."]
    assert _problems(*one_word) == ""
    question = "What do you like to do on your days off?"
    topics = ["dogs", "night shifts", "painters", "the park", "coffee", "rain", "trains", "bread", "music"]
    filler = [f"We talked about {topic} for a while, {n} times over." for n, topic in enumerate(topics * 2)]
    asked_twice = [question, "I paint, mostly.", *filler, question, "Still painting!"]
    assert "self-repetition" not in _problems(*asked_twice)
    stock = ["That sounds like a lot of fun! I used to ride as a kid.", "Where did you ride?",
             "That sounds like a lot of fun! Anywhere with hills, really, and the coast in summer."]  # fmt: skip
    assert _problems(*FINE[:2], *stock) == ""
    # Synthetic-Persona-Chat's own line: one's character is one's nature, not a role read back
    assert _problems(*FINE[:2], "Me neither. So, what do you think of my character?", "Kind, I'd say.") == ""


def test_narration_of_whole_sentences_in_brackets_is_taken_off_and_an_aside_is_kept():
    from factory.generation.cleaning import clean_line

    narrated = clean_line(
        "She brought a lovely cake. (The image is on the window again. She smiles.) She bakes every Sunday.", ["A"]
    )
    assert (narrated.text, narrated.changes) == ("She brought a lovely cake. She bakes every Sunday.", ["narration"])
    aside = clean_line("I teach (third grade, mostly) at the school down the road.", ["A"])
    assert (aside.text, aside.changes) == ("I teach (third grade, mostly) at the school down the road.", [])
