"""What the role-play agents, the moderator and the stop-rule judges are told, and how an agent's
reply is cleaned into its line."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from typing import Any

from factory.personas.demographics import NAMES_BY_GENDER
from factory.records import DialogueRecord, PersonaProfile, speaker_label

USP_SIMULATOR = (
    "You are engaging in a conversation with an AI assistant. your profile is: \n{profile}\n"
    " You can say anything you want, either based on the profile or something brand new.\n\n"
)
PLAIN_ASSISTANT = "You are a helpful AI assistant."
REPLY_RULE = (
    "Stay in character. Reply with your next line only: one or two short sentences, no name label, no narration."
)


_STATED_NAME = re.compile(r"\bmy name is ([a-z]{2,20})\b", re.I)


def names_and_roles(record: DialogueRecord) -> tuple[list[str], list[str | None]]:
    """Each speaker's name in the conversation, and role (None for peers). A persona without a
    name (Synthetic-Persona-Chat's, a pool's) goes by the one its statements give ("my name is
    larry"), or else by a name given to people of any gender, the same for the persona in every
    dialogue: called "User 2", a small model talks as a user to an assistant, and makes up a new
    name for itself every turn ("I'm Emily", then "I'm Sarah Jenkins")."""
    given = [persona.name or _stated_name(persona) for persona in record.speakers]
    names: list[str] = []
    for index, (persona, name) in enumerate(zip(record.speakers, given)):
        names.append(name or _name_of_its_own(persona.id, [*given, *names]) or speaker_label(index + 1))
    return names, list(record.roles) or [None] * len(record.speakers)


def _name_of_its_own(persona_id: str, taken: list[str | None]) -> str | None:
    """A name given to people of any gender, drawn by the persona's id (so the same in every
    dialogue), the next free one when another speaker has it."""
    bank = NAMES_BY_GENDER["non-binary"]
    start = int(hashlib.sha256(persona_id.encode()).hexdigest()[:8], 16)
    ordered = (bank[(start + step) % len(bank)] for step in range(len(bank)))
    return next((name for name in ordered if name not in taken), None)


def _stated_name(persona: PersonaProfile) -> str | None:
    found = next((match for statement in persona.statements if (match := _STATED_NAME.search(statement))), None)
    return found.group(1).capitalize() if found else None


def next_speaker(rule: str, turn: int, speakers: int, previous: int | None) -> int:
    """``alternate`` (two speakers, taking turns) and ``round_robin`` (each in cast order) are fixed
    rules; ``moderator`` is asked each turn (see :func:`moderator_pick`), and starts with speaker 0."""
    if rule == "alternate" and speakers != 2:
        raise ValueError("the alternate turn order needs exactly two speakers; use round_robin or moderator")
    if rule in ("alternate", "round_robin") or previous is None:
        return turn % speakers
    raise ValueError(f"turn order {rule!r} is not a fixed rule")


MODERATOR_SYSTEM = "You moderate a group conversation. Answer only with the JSON object asked for."


def moderator_messages(
    names: list[str], history: list[tuple[int, str]], previous: int
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    lines = [f"{names[speaker]}: {text}" for speaker, text in history[-8:]]
    choices = [name for index, name in enumerate(names) if index != previous]
    prompt = "\n".join(
        [
            f"People in the conversation: {', '.join(names)}.",
            "The conversation so far:",
            *lines,
            "",
            f"Who should speak next, so that the conversation flows naturally? Choose one of: {', '.join(choices)}.",
        ]
    )
    schema = {
        "type": "object",
        "properties": {"next": {"type": "string", "enum": choices}},
        "required": ["next"],
        "additionalProperties": False,
    }
    return [{"role": "system", "content": MODERATOR_SYSTEM}, {"role": "user", "content": prompt}], schema


ROLE_GUIDANCE = {
    "user": "You are the user, talking to an AI assistant in your own words.",
    "assistant": "You are the AI assistant the user is talking to, speaking in your persona's style.",
}


def portrayal_guidance(persona: PersonaProfile) -> list[str]:
    """MBTI or Big Five guidance, after PsyPlay: the type or levels, and what they mean in talk."""
    lines = []
    if persona.mbti:
        lines.append(f"Your MBTI type is {persona.mbti}; let it show in what you notice and how you respond.")
    if persona.big_five:
        levels = ", ".join(f"{trait} {level}/7" for trait, level in persona.big_five.model_dump().items())
        lines.append(f"Your Big Five levels (1 very low, 7 very high): {levels}.")
    if persona.description:
        lines.append(persona.description)
    if persona.speaking_style:
        lines.append(f"How you talk: {persona.speaking_style}")
    return lines


def agent_system_prompt(
    persona: PersonaProfile,
    index: int,
    names: list[str],
    role: str | None,
    scenario: str,
    *,
    simulator: bool,
    plain_assistant: bool,
) -> str:
    """The agent's standing instructions: the same for every turn of the dialogue."""
    if simulator:
        profile = "\n".join([persona.description or "", *persona.statements]).strip()
        return USP_SIMULATOR.format(profile=profile)
    if role == "assistant" and plain_assistant:
        return PLAIN_ASSISTANT
    others = [name for i, name in enumerate(names) if i != index]
    if role in ROLE_GUIDANCE:
        lines = [f"You are {names[index]}, in a conversation with {', '.join(others)}.", ROLE_GUIDANCE[role]]
    else:
        # A small instruct model asked to reply in the assistant's seat writes an assistant's lines
        # ("How can I help you today?") unless told it is a person talking about their own life.
        lines = [
            f"You are {names[index]}, an ordinary person, in a conversation with {', '.join(others)}. "
            "You are not an assistant: you talk about yourself and your life."
        ]
    lines += ["Who you are:", *(f"- {statement}" for statement in persona.statements)]
    demo = persona.demographics
    facts = [
        f"{name}: {value}"
        for name, value in (
            ("age", demo.age),
            ("gender", demo.gender),
            ("occupation", demo.occupation),
            ("location", demo.location),
        )
        if value
    ]
    facts += [f"{attribute.name}: {attribute.value}" for attribute in persona.attributes]
    if facts:
        lines += ["Your circumstances:", *(f"- {fact}" for fact in facts)]
    lines += portrayal_guidance(persona)
    if persona.behaviour_examples:
        lines += ["Examples of your tone:", *(f"- {example}" for example in persona.behaviour_examples[:4])]
    if scenario:
        lines.append(f"The situation: {scenario}")
    lines.append(REPLY_RULE)
    return "\n".join(lines)


def agent_messages(
    system: str, history: list[tuple[int, str]], speaker: int, names: list[str], note: str
) -> list[dict[str, str]]:
    """The conversation from ``speaker``'s side. Others' lines are labelled with their name when
    there are more than two speakers; lines in a row from others are one ``user`` message."""
    messages = [{"role": "system", "content": system}]
    for index, text in history:
        role = "assistant" if index == speaker else "user"
        content = f"{names[index]}: {text}" if role == "user" and len(names) > 2 else text
        if messages[-1]["role"] == role == "user":
            messages[-1] = {"role": "user", "content": f"{messages[-1]['content']}\n{content}"}
        else:
            messages.append({"role": role, "content": content})
    if messages[-1]["role"] == "user":
        messages[-1] = {"role": "user", "content": f"{messages[-1]['content']}\n\n({note})"}
    else:
        messages.append({"role": "user", "content": f"({note})"})
    return messages


def standing_prompt_tokens(record: DialogueRecord, count: Callable[[list[dict[str, str]]], int]) -> list[int]:
    """Per speaker, the tokens every call of theirs sends besides the conversation: the standing
    prompt as a persona plays it, and the note under the last line recalling their longest statement."""
    names, roles = names_and_roles(record)
    counted = []
    for index, persona in enumerate(record.speakers):
        system = agent_system_prompt(
            persona,
            index,
            names,
            roles[index],
            record.generation.scenario or "",
            simulator=False,
            plain_assistant=False,
        )
        note = turn_note(1, max(persona.statements, key=len, default=""), False)
        counted.append(count([{"role": "system", "content": system}, {"role": "user", "content": note}]))
    return counted


def turn_note(turn: int, aspect: str | None, closing: bool) -> str:
    if closing:
        return "Bring the conversation to a natural close in one short line."
    parts = ["Start the conversation." if turn == 0 else "Say your next line."]
    if aspect:
        parts.append(f"Something about you that fits here: {aspect}")
    return " ".join(parts)


SENTIMENT_SCHEMA = {
    "type": "object",
    "properties": {"reason": {"type": "string"}, "sentiment": {"type": "string", "enum": ["1", "2", "3", "4", "5"]}},
    "required": ["reason", "sentiment"],
    "additionalProperties": False,
}
GOAL_SCHEMA = {
    "type": "object",
    "properties": {"reason": {"type": "string"}, "met": {"type": "string", "enum": ["yes", "no"]}},
    "required": ["reason", "met"],
    "additionalProperties": False,
}


def sentiment_messages(name: str, line: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You rate the mood of a message. Answer only with the JSON object asked for."},
        {
            "role": "user",
            "content": f"{name} said: {line!r}\nHow does {name} feel, from 1 (very negative) to 5 (very "
            "positive)? Give a short reason, then the number.",
        },
    ]


def goal_messages(goal: str, names: list[str], history: list[tuple[int, str]]) -> list[dict[str, str]]:
    lines = [f"{names[speaker]}: {text}" for speaker, text in history]
    return [
        {
            "role": "system",
            "content": "You judge whether a conversation has reached its goal. Answer only with the JSON object asked for.",
        },
        {
            "role": "user",
            "content": "\n".join(
                [
                    "Goal of the conversation: " + goal,
                    "Conversation:",
                    *lines,
                    "",
                    "Has the goal been met? Give a short reason, then yes or no.",
                ]
            ),
        },
    ]


def scenario_messages(speakers: list[PersonaProfile], names: list[str]) -> list[dict[str, str]]:
    people = [f"{name}: {' '.join(persona.statements[:2])}" for name, persona in zip(names, speakers)]
    return [
        {"role": "system", "content": "You set scenes for conversations. Reply with one sentence only."},
        {
            "role": "user",
            "content": "\n".join(
                [
                    "These people are about to talk:",
                    *people,
                    "",
                    "In one sentence: where do they meet, and what do they start talking about?",
                ]
            ),
        },
    ]


def plan_hash(systems: list[str]) -> str:
    return hashlib.sha256(json.dumps(systems).encode()).hexdigest()
