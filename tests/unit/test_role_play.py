"""The parts of turn-by-turn role-play that need no endpoint: turn order, persona memory, the
agents' view of the conversation, and cleaning a reply down to the agent's own line."""

from __future__ import annotations

import pytest

from factory.generation.cleaning import clean_line
from factory.generation.role_play.memory import PersonaMemory
from factory.generation.role_play.prompts import agent_messages, agent_system_prompt, names_and_roles, next_speaker
from factory.records import Attribute, DialogueRecord, GenerationMeta, PersonaProfile


def test_alternate_and_round_robin_turn_orders():
    assert [next_speaker("alternate", turn, 2, None if turn == 0 else 0) for turn in range(5)] == [0, 1, 0, 1, 0]
    assert [next_speaker("round_robin", turn, 3, None if turn == 0 else 0) for turn in range(7)] == [
        0,
        1,
        2,
        0,
        1,
        2,
        0,
    ]
    with pytest.raises(ValueError, match="exactly two speakers"):
        next_speaker("alternate", 0, 3, None)


def test_memory_picks_the_aspect_that_fits_the_last_utterance():
    memory = PersonaMemory(
        ["I bake sourdough bread every morning.", "I train for marathons on weekends.", "hobby: restoring old radios"],
        recent=1,
    )
    assert memory.pick("Do you bake your own bread, or buy it?") == "I bake sourdough bread every morning."
    assert memory.pick("How far was your last marathon training run?") == "I train for marathons on weekends."
    assert memory.pick("Nice weather today.") is None  # nothing fits: nothing is forced in
    assert memory.pick("I found some old radios at the market.") == "hobby: restoring old radios"
    assert memory.picks == [
        "I bake sourdough bread every morning.",
        "I train for marathons on weekends.",
        None,
        "hobby: restoring old radios",
    ]


def test_memory_leaves_out_an_aspect_used_lately():
    memory = PersonaMemory(["I bake sourdough bread every morning.", "I sell bread at the market."], recent=2)
    first = memory.pick("Tell me about your bread.")
    second = memory.pick("More about the bread, please.")
    third = memory.pick("And the bread again?")
    assert first != second and {first, second} == set(memory.aspects)
    assert third is None  # both were recalled in the last two turns
    memory.pick("The weather.")
    memory.pick("The traffic.")
    assert memory.pick("Bread once more?") is not None  # out of the window: allowed again


def persona(index: int, **fields) -> PersonaProfile:
    return PersonaProfile(
        id=f"p{index}", kind="mbti", name=f"Name{index}", statements=[f"I am person {index}."], **fields
    )


def test_each_agent_sees_the_conversation_from_its_own_side():
    names = ["Ana", "Ben", "Cy"]
    history = [(0, "Hello all."), (1, "Hi Ana."), (2, "Hey."), (0, "How are you?")]
    as_ben = agent_messages("system", history, 1, names, "Say your next line.")
    assert [m["role"] for m in as_ben] == ["system", "user", "assistant", "user"]
    assert as_ben[1]["content"] == "Ana: Hello all."
    assert as_ben[2]["content"] == "Hi Ana."  # its own line, unlabelled
    assert as_ben[3]["content"] == "Cy: Hey.\nAna: How are you?\n\n(Say your next line.)"
    as_ana = agent_messages("system", history, 0, names, "Say your next line.")
    assert [m["role"] for m in as_ana] == ["system", "assistant", "user", "assistant", "user"]
    # the prompt of the next turn starts with this one's: an endpoint's prefix cache can reuse it
    later = agent_messages("system", [*history, (1, "Fine.")], 0, names, "Say your next line.")
    assert later[:4] == as_ana[:4]


def test_system_prompts_carry_the_persona_and_follow_usp_for_a_simulator():
    character = persona(
        0,
        mbti="INTJ",
        speaking_style="dry, precise",
        behaviour_examples=["When the other party jokes, you say: 'Noted.'"],
        attributes=[Attribute(name="recent worry", value="a deadline")],
    )
    prompt = agent_system_prompt(
        character, 0, ["Name0", "Name1"], None, "Two strangers share a bench.", simulator=False, plain_assistant=False
    )
    for expected in (
        "You are Name0",
        "I am person 0.",
        "INTJ",
        "dry, precise",
        "When the other party jokes",
        "recent worry: a deadline",
        "Two strangers share a bench.",
    ):
        assert expected in prompt
    user = persona(1, description="You are a retired teacher who loves gardening.")
    simulated = agent_system_prompt(user, 1, ["Name0", "Name1"], "user", "", simulator=True, plain_assistant=False)
    assert simulated.startswith("You are engaging in a conversation with an AI assistant. your profile is: \n")
    assert "retired teacher" in simulated and "You can say anything you want" in simulated
    plain = agent_system_prompt(
        character, 0, ["Name0", "Name1"], "assistant", "", simulator=False, plain_assistant=True
    )
    assert plain == "You are a helpful AI assistant."


def test_clean_line_keeps_only_the_agents_own_line():
    names = ["Ana", "Ben"]
    assert clean_line("Ana: I love mornings.", names).text == "I love mornings."
    assert clean_line("I love mornings.\nBen: Me too!\nAna: Great.", names).text == "I love mornings."
    assert clean_line('"Sure, see you then."', names).text == "Sure, see you then."
    assert clean_line("User 1: Hi there.", names).text == "Hi there."


def test_a_label_with_a_dash_or_in_capitals_is_taken_off_and_a_dash_inside_a_line_is_kept():
    names = ["Dalia", "Eddie"]
    assert clean_line("DALIA - I grow tomatoes.", names).text == "I grow tomatoes."
    assert clean_line("Eddie \u2014 Me too!", names).changes == ["label"]
    assert clean_line("I love it.\nEDDIE: Same here.", names).changes == ["other_speaker"]
    assert clean_line("Well - I think so.", names).text == "Well - I think so."


def test_a_talking_point_is_a_statement_not_yet_given_nor_said():
    memory = PersonaMemory(["I keep bees on my roof.", "I sing in a choir.", "I restore old bicycles."])
    assert memory.pick("What a lovely morning for a walk.") is None  # nothing fits the partner's line
    assert memory.talking_point([]) == "I keep bees on my roof."
    assert memory.picks == ["I keep bees on my roof."]  # recorded as this turn's pick
    memory.pick("Nice weather again.")
    # the bees were given, and the agent already spoke of its choir: the bicycles come next
    assert memory.talking_point(["My choir sings on Sundays."]) == "I restore old bicycles."
    memory.pick("Right.")
    assert memory.talking_point(["My choir sings on Sundays.", "I fix bicycles."]) is None


def test_a_persona_without_a_name_goes_by_the_one_it_states_or_one_of_its_own():
    def record(*speakers: PersonaProfile) -> DialogueRecord:
        meta = GenerationMeta(model="m", prompt_hash="h", seed=1)
        return DialogueRecord(id="d", recipe="r", speakers=list(speakers), turns=[], generation=meta)

    larry = PersonaProfile(id="spc-1", kind="statements", statements=["Hey my name is larry and i am a chef."])
    nameless = PersonaProfile(id="spc-2", kind="statements", statements=["I love dogs."])
    kai = PersonaProfile(id="mbti-1", kind="mbti", name="Kai", statements=["I make friends everywhere."])
    names = names_and_roles(record(larry, nameless))[0]
    assert names[0] == "Larry" and names[1] not in ("Larry", "User 2")
    assert names_and_roles(record(kai, nameless))[0][1] == names[1]  # the same name in every dialogue
    other = PersonaProfile(id="spc-3", kind="statements", statements=["I like tacos."])
    assert len(set(names_and_roles(record(nameless, other, kai))[0])) == 3
