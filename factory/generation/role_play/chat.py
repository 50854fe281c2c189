"""Accepted role-play dialogues as chat fine-tuning rows: the ``messages`` config of a version."""

from __future__ import annotations

from factory.generation.role_play.prompts import agent_system_prompt, names_and_roles
from factory.recipes.generation import RolePlayConfig
from factory.records import ChatExample, ChatMessage, DialogueRecord


def chat_example(record: DialogueRecord, config: RolePlayConfig) -> ChatExample:
    """The dialogue as the messages a chat model is tuned on, the persona's prompt as the system
    message. With a user simulator, USP's layout: the simulator's prompt is the system message,
    its lines are ``user`` and the assistant's ``assistant``. Otherwise from the side of the
    assistant (or the first speaker): its lines are ``assistant``, everyone else's ``user``."""
    speakers = record.speakers
    names, roles = names_and_roles(record)
    simulated = config.user_simulator and "user" in roles
    focus = roles.index("user") if simulated else (roles.index("assistant") if "assistant" in roles else 0)
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
