"""Accepted dialogues, of either mode, as chat fine-tuning rows: the ``messages`` config of a version."""

from __future__ import annotations

from factory.generation.role_play.prompts import agent_system_prompt, names_and_roles
from factory.recipes.generation import RolePlayConfig
from factory.records import ChatExample, ChatMessage, DialogueRecord


def chat_examples(record: DialogueRecord, config: RolePlayConfig, speakers: str) -> list[ChatExample]:
    """``first``: the dialogue once, from its usual side (:func:`chat_example`); ``all``: once
    from each speaker's side, that speaker's persona prompt as the system message."""
    if speakers == "first":
        return [chat_example(record, config)]
    return [
        chat_example(record, config, focus).model_copy(update={"id": f"{record.id}/{focus}"})
        for focus in range(len(record.speakers))
    ]


def chat_example(record: DialogueRecord, config: RolePlayConfig, focus: int | None = None) -> ChatExample:
    """The dialogue as the messages a chat model is tuned on, the ``focus`` speaker's persona
    prompt as the system message: its lines are ``assistant``, everyone else's ``user``. Unset,
    the focus is the assistant (or the first speaker); with a user simulator it is the user, in
    USP's layout: the simulator's prompt is the system message, its lines are ``user`` and the
    assistant's ``assistant``."""
    speakers = record.speakers
    names, roles = names_and_roles(record)
    if focus is None:
        simulated = config.user_simulator and "user" in roles
        focus = roles.index("user") if simulated else (roles.index("assistant") if "assistant" in roles else 0)
    simulated = config.user_simulator and roles[focus] == "user"
    system = agent_system_prompt(
        speakers[focus],
        focus,
        names,
        roles[focus],
        record.generation.scenario,
        simulator=simulated,
        plain_assistant=not config.assistant_persona,
    )
    index_of = {persona.id: index for index, persona in enumerate(speakers)}
    messages = [ChatMessage(role="system", content=system)]
    for turn in record.turns:
        speaker = index_of[turn.speaker]
        if simulated:
            role = "user" if speaker == focus else "assistant"
        else:
            role = "assistant" if speaker == focus else "user"
        content = (
            f"{names[speaker]}: {turn.text}" if role == "user" and len(speakers) > 2 and not simulated else turn.text
        )
        if messages[-1].role == role:
            messages[-1] = ChatMessage(role=role, content=f"{messages[-1].content}\n{content}")
        else:
            messages.append(ChatMessage(role=role, content=content))
    return ChatExample(id=record.id, persona=speakers[focus].id, messages=messages)
