"""One evaluation conversation: the factory's user simulator (USP's prompt, playing a partner
persona) talks to the model under test, which plays the persona to evaluate; or, instead of the
simulator, a fixed set of questions is put to it, the same for every persona and model.

The model under test sees each turn exactly as a row of the version's ``messages`` config shows a
conversation, so a model tuned on those rows is asked what it was tuned for: the persona's prompt
as the system message, the partner's lines as ``user`` and its own as ``assistant``, and no
scaffolding (no memory note, no instruction) that its training rows did not have. The simulator
is the factory's own and may be scaffolded as the generator's agents are.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from factory.errors import LLMCallError
from factory.generation.cleaning import clean_line
from factory.generation.role_play.chat import chat_example
from factory.generation.role_play.prompts import (
    agent_messages,
    agent_system_prompt,
    names_and_roles,
    turn_note,
)
from factory.llm.port import ChatPort
from factory.model_eval.personas import EvalPersona
from factory.recipes.generation import RolePlayConfig
from factory.records import DialogueRecord, GenerationMeta, TokenUsage, Turn, format_verdict

PARTNER, PLAYED = 0, 1  # the simulator speaks first, as a user opens a chat
MAX_TOKENS_PER_TURN = 120
# A fixed set, after PersonaGym's tasks (what the persona would do, how it justifies it, how it
# talks, whether it keeps to its facts, how it meets provocation), asked in this order.
BUILTIN_QUESTIONS = (
    "Tell me a little about yourself.",
    "What does an ordinary day look like for you?",
    "What would you do with a free Saturday and no plans?",
    "Why do you spend your time that way, and not some other way?",
    "What is something people often get wrong about you?",
    "How would you describe the way you talk to strangers?",
    "Tell me about a decision you would make differently now.",
    "Honestly, your life sounds pretty dull. Why should anyone care?",
)


@dataclass(frozen=True)
class Voices:
    """Who speaks: the model under test and the simulator, each through its own client."""

    model: ChatPort
    model_name: str
    simulator: ChatPort
    temperature: float
    simulator_temperature: float = 0.8
    questions: tuple[str, ...] = ()  # asked in turn instead of the simulator's lines, when given


def conversation_seed(persona_id: str, seed: int) -> int:
    """One seed per persona, the same for every model compared, so each meets the same simulator."""
    return int(hashlib.sha256(f"{seed}:{persona_id}".encode()).hexdigest()[:8], 16)


async def converse(cast: EvalPersona, voices: Voices, turns: int, seed: int, model_key: str) -> DialogueRecord:
    """``turns`` exchanges (the simulator's line, then the model's) as a dialogue record; a call
    that fails for good ends it, and its format verdict says where."""
    record = DialogueRecord(
        id=f"{model_key}/{cast.persona.id}",
        recipe="eval-model",
        speakers=[cast.partner, cast.persona],
        turns=[],
        generation=GenerationMeta(
            model=voices.model_name, prompt_hash="", seed=conversation_seed(cast.persona.id, seed), mode="role_play"
        ),
    )
    names = names_and_roles(record)[0]
    simulator_system = agent_system_prompt(
        cast.partner, PARTNER, names, "user", "", simulator=True, plain_assistant=False
    )  # fmt: skip
    usage = TokenUsage()
    for turn in range(turns):
        try:
            usage += await _simulator_line(record, voices, simulator_system, names, turn)
            usage += await _model_line(record, voices, turn)
        except LLMCallError as exc:
            who = "the simulator" if len(record.turns) % 2 == 0 else "the model under test"
            record.generation.usage = usage
            record.verdicts.append(format_verdict(False, f"{who} failed at turn {len(record.turns) + 1}: {exc}"))
            return record
    record.generation.usage, record.generation.ended_by = usage, "max_turns"
    record.verdicts.append(format_verdict(True, f"{turns} exchanges"))
    return record


async def _simulator_line(
    record: DialogueRecord, voices: Voices, system: str, names: list[str], turn: int
) -> TokenUsage:
    if voices.questions:
        record.turns.append(
            Turn(speaker=record.speakers[PARTNER].id, text=voices.questions[turn % len(voices.questions)])
        )
        return TokenUsage()
    history = [(0 if t.speaker == record.speakers[PARTNER].id else 1, t.text) for t in record.turns]
    messages = agent_messages(system, history, PARTNER, names, turn_note(turn * 2, None, False))
    result = await voices.simulator.chat(
        messages, temperature=voices.simulator_temperature, max_tokens=MAX_TOKENS_PER_TURN,
        seed=record.generation.seed + turn,
    )  # fmt: skip
    line = clean_line(result.text, names).text or result.text.strip()
    record.turns.append(Turn(speaker=record.speakers[PARTNER].id, text=line))
    return result.usage


async def _model_line(record: DialogueRecord, voices: Voices, turn: int) -> TokenUsage:
    shown = chat_example(record, RolePlayConfig(), focus=PLAYED)
    messages = [{"role": message.role, "content": message.content} for message in shown.messages]
    result = await voices.model.chat(
        messages, temperature=voices.temperature, max_tokens=MAX_TOKENS_PER_TURN, seed=record.generation.seed + turn
    )
    line = clean_line(result.text, names_and_roles(record)[0]).text or result.text.strip()
    record.turns.append(Turn(speaker=record.speakers[PLAYED].id, text=line))
    return result.usage
