"""Turn-by-turn role-play: one agent per speaker (after CharacterChat, PsyPlay and USP).

Each speaker is an agent with its own system prompt, built from its persona, that sees the
conversation from its own side: its own lines as ``assistant`` messages, everyone else's as
``user`` messages. Before each turn the agent is reminded of the profile aspect that fits the last
utterance (CharacterChat's persona memory), unless that aspect was used lately. The dialogue opens
on a scenario and ends at the turn bound, or earlier when a stop rule fires (the seeker's
sentiment stays high; or a judge finds the chat's goal met), followed by closing turns.

Prompts grow only at the end: the system prompt and the history are the same prefix from one turn
to the next, and the turn's note (memory, instruction) goes last, so an endpoint's prefix cache
reuses everything before it.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

from factory.errors import LLMCallError
from factory.generation.cleaning import CleanLine, clean_line
from factory.generation.role_play.memory import PersonaMemory, aspects_of
from factory.generation.role_play.prompts import (
    GOAL_SCHEMA,
    SENTIMENT_SCHEMA,
    agent_messages,
    agent_system_prompt,
    goal_messages,
    moderator_messages,
    names_and_roles,
    next_speaker,
    plan_hash,
    scenario_messages,
    sentiment_messages,
    turn_note,
)
from factory.generation.writer import FewShotPicker, LineChooser, Voices
from factory.llm.ask import ask_json
from factory.llm.port import ChatPort
from factory.personas.casting import Cast
from factory.recipes.generation import GenerationConfig, RolePlayConfig
from factory.records import DialogueRecord, TokenUsage, Turn, format_verdict

# Added to a turn's seed when a line cut before its first sentence ended is asked for again; the
# n-th of a turn's candidate lines is asked with n times the other.
ASK_AGAIN_SEED = 7919
CANDIDATE_SEED = 104729


@dataclass
class Agents:
    """The client each speaker talks through (a strong assistant and a cheap user simulator may
    use different endpoints), and the client of the judges and the moderator."""

    for_speaker: list[ChatPort]
    temperatures: list[float]
    judge: ChatPort
    choose_line: LineChooser | None = None


async def role_play(
    record: DialogueRecord, config: RolePlayConfig, agents: Agents, *, min_turns: int, max_turns: int
) -> None:
    """Play the dialogue of ``record``'s cast into its turns; a failed call fails ``format``."""
    await _Play(record, config, agents, min_turns, max_turns).run()


class _Play:
    """One dialogue being played: the agents' standing prompts, the history, and what ends it."""

    def __init__(
        self, record: DialogueRecord, config: RolePlayConfig, agents: Agents, min_turns: int, max_turns: int
    ) -> None:
        self.record, self.config, self.agents = record, config, agents
        self.min_turns, self.max_turns = min_turns, max_turns
        self.speakers = record.speakers
        self.names, self.roles = names_and_roles(record)
        record.names = list(self.names)  # what critics' reasons and the card call them, as the speakers did
        self.simulator = [config.user_simulator and role == "user" for role in self.roles]
        self.seeker = self.roles.index("user") if "user" in self.roles else 0
        self.seed = record.generation.seed
        self.usage = TokenUsage()
        self.history: list[tuple[int, str]] = []
        self.turns: list[Turn] = []
        self.systems: list[str] = []
        self.memories: list[PersonaMemory] = []
        self.previous: int | None = None
        self.high_streak = 0

    async def run(self) -> None:
        record = self.record
        try:
            scenario = await self._scenario()
        except LLMCallError as exc:
            record.verdicts.append(format_verdict(False, f"no scenario: {exc}"))
            return
        self._prepare(scenario)
        try:
            ended_by = await self._turns()
            if ended_by != "max_turns":
                for _ in range(self.config.closing_turns):
                    await self._speak(self._after(self.previous), len(self.turns), closing=True)
        except LLMCallError as exc:
            record.turns, record.generation.usage = self.turns, self.usage
            record.verdicts.append(format_verdict(False, f"generation failed at turn {len(self.turns) + 1}: {exc}"))
            return
        record.turns, record.generation.usage, record.generation.ended_by = self.turns, self.usage, ended_by
        record.raw_generation = "\n".join(f"{self.names[speaker]}: {text}" for speaker, text in self.history)
        empty = [index + 1 for index, turn in enumerate(self.turns) if not turn.text]
        if empty:
            record.verdicts.append(format_verdict(False, f"turns {empty} came back empty"))
        else:
            record.verdicts.append(format_verdict(True, f"played {len(self.turns)} turns; ended by {ended_by}"))

    async def _scenario(self) -> str:
        """The recipe's scenario drawn for this cast, or one the model writes when asked to."""
        generation = self.record.generation
        if generation.scenario or not self.config.generate_scenario:
            return generation.scenario
        messages = scenario_messages(self.speakers, self.names)
        result = await self.agents.judge.chat(messages, temperature=0.9, max_tokens=80, seed=self.seed)
        self.usage = self.usage + result.usage
        generation.scenario = " ".join(result.text.split())[:400]
        return generation.scenario

    def _prepare(self, scenario: str) -> None:
        config = self.config
        self.systems = [
            agent_system_prompt(
                persona,
                index,
                self.names,
                self.roles[index],
                scenario,
                simulator=self.simulator[index],
                plain_assistant=not config.assistant_persona,
            )
            for index, persona in enumerate(self.speakers)
        ]
        self.record.generation.prompt_hash = plan_hash(self.systems)
        memory = config.memory
        self.memories = [PersonaMemory(aspects_of(p), memory.recent, memory.min_overlap) for p in self.speakers]

    async def _turns(self) -> str:
        """Turns until ``max_turns``, or until a stop rule fires (what ended them is returned)."""
        config = self.config
        for turn in range(self.max_turns):
            speaker = await self._next_speaker(turn)
            await self._speak(speaker, turn, closing=False)
            # A stop rule may end the dialogue only where its closing turns still fit within
            # max_turns, and the whole stays within the recipe's bounds (which the heuristic checks).
            room_to_close = turn + 1 + config.closing_turns <= self.max_turns
            if turn + 1 < self.min_turns or config.stop.rule == "none" or not room_to_close:
                continue
            if await self._stop_rule_fired(turn, speaker):
                return config.stop.rule
        return "max_turns"

    def _after(self, speaker: int | None) -> int:
        return (speaker + 1) % len(self.speakers) if speaker is not None else 0

    async def _next_speaker(self, turn: int) -> int:
        if self.config.turn_order != "moderator" or self.previous is None:
            return next_speaker(self.config.turn_order, turn, len(self.speakers), self.previous)
        messages, schema = moderator_messages(self.names, self.history, self.previous)
        answer = await self._ask(messages, "next_speaker", schema, turn)
        chosen = self.names.index(answer["next"]) if answer and answer.get("next") in self.names else None
        return chosen if chosen is not None and chosen != self.previous else self._after(self.previous)

    async def _stop_rule_fired(self, turn: int, speaker: int) -> bool:
        stop = self.config.stop
        if stop.rule == "sentiment" and speaker == self.seeker:
            messages = sentiment_messages(self.names[speaker], self.history[-1][1])
            answer = await self._ask(messages, "sentiment", SENTIMENT_SCHEMA, turn)
            level = int(answer["sentiment"]) if answer and str(answer.get("sentiment")) in "12345" else 0
            self.high_streak = self.high_streak + 1 if level >= stop.threshold else 0
            return self.high_streak >= stop.patience
        if stop.rule == "goal" and (turn + 1) % len(self.speakers) == 0:
            answer = await self._ask(goal_messages(stop.goal, self.names, self.history), "goal_met", GOAL_SCHEMA, turn)
            return bool(answer and answer.get("met") == "yes")
        return False

    async def _ask(
        self, messages: list[dict[str, str]], name: str, schema: dict[str, Any], turn: int
    ) -> dict[str, Any] | None:
        """A judge's (or the moderator's) JSON answer, None when it cannot be read; a failed call
        fails the turn, as a failed utterance does."""
        answer = await ask_json(
            self.agents.judge,
            messages,
            name=name,
            schema=schema,
            temperature=0.0,
            max_tokens=200,
            seed=self.seed + turn,
        )
        if answer.call_error is not None:
            raise answer.call_error
        self.usage = self.usage + answer.usage
        return answer.data

    async def _line(self, speaker: int, messages: list[dict[str, str]], seed: int) -> CleanLine:
        result = await self.agents.for_speaker[speaker].chat(
            messages, temperature=self.agents.temperatures[speaker], max_tokens=self.config.max_tokens_per_turn,
            seed=seed,
        )  # fmt: skip
        self.usage = self.usage + result.usage
        cleaned = clean_line(result.text, self.names, cut=result.finish_reason == "length")
        return cleaned if cleaned.text else CleanLine(result.text.strip(), cleaned.changes, cleaned.complete)

    async def _whole_lines(self, speaker: int, messages: list[dict[str, str]], seed: int) -> list[CleanLine]:
        """The turn's candidate lines that are whole; when every one was cut before a sentence
        ended, one asked again with another seed (whole or not)."""
        asked = await asyncio.gather(
            *(self._line(speaker, messages, seed + n * CANDIDATE_SEED) for n in range(self.config.line_candidates)),
            return_exceptions=True,
        )
        failed = next((line for line in asked if isinstance(line, BaseException)), None)
        if failed is not None:
            raise failed
        lines = [line for line in asked if isinstance(line, CleanLine)]
        whole = [line for line in lines if line.complete]
        if whole:
            return whole
        again = await self._line(speaker, messages, seed + ASK_AGAIN_SEED)
        return [CleanLine(again.text, [*lines[0].changes, "asked_again", *again.changes], again.complete)]

    async def _speak(self, speaker: int, turn: int, closing: bool) -> None:
        aspect = None
        if self.config.memory.enabled and not self.simulator[speaker]:
            aspect = self.memories[speaker].pick(self.history[-1][1] if self.history else None)
            if aspect is None and self.config.memory.talking_points:
                aspect = self.memories[speaker].talking_point([text for who, text in self.history if who == speaker])
        note = turn_note(turn, aspect, closing)
        messages = agent_messages(self.systems[speaker], self.history, speaker, self.names, note)
        lines = await self._whole_lines(speaker, messages, self.seed + turn)
        candidates = [
            Turn(
                speaker=self.speakers[speaker].id, text=line.text, memory=aspect, closing=closing,
                cleaned=list(dict.fromkeys(line.changes)),
            )
            for line in lines
        ]  # fmt: skip
        chosen = 0
        if len(candidates) > 1 and self.agents.choose_line is not None:
            chosen = await self.agents.choose_line(self.record, list(self.turns), candidates)
        self.history.append((speaker, candidates[chosen].text))
        self.turns.append(candidates[chosen])
        self.previous = speaker


class RolePlayWriter:
    """The Writer of mode ``role_play``: nothing to prompt on the driver but the scenario."""

    def plan(
        self, cast: Cast, rng: random.Random, generation: GenerationConfig, examples: FewShotPicker
    ) -> tuple[dict[str, Any], list[dict[str, str]]]:
        scenarios = generation.role_play.scenarios
        return {"mode": "role_play", "scenario": rng.choice(scenarios) if scenarios else "", "prompt_hash": ""}, []

    async def write(
        self, record: DialogueRecord, prompt: list[dict[str, str]], voices: Voices, generation: GenerationConfig
    ) -> None:
        agents = agents_for(record, voices, generation)
        await role_play(
            record, generation.role_play, agents, min_turns=generation.min_turns, max_turns=generation.max_turns
        )


def agents_for(record: DialogueRecord, voices: Voices, generation: GenerationConfig) -> Agents:
    """Each speaker's voice and temperature: its own when the recipe gives one for its role (user,
    assistant) or position (speaker1, ...), the recipe's otherwise."""
    configured = generation.role_play.agents

    def key_for(index: int) -> str:
        role = record.roles[index] if index < len(record.roles) else None
        return role if role in configured else f"speaker{index + 1}"

    keys = [key_for(index) for index in range(len(record.speakers))]
    return Agents(
        for_speaker=[voices.agents.get(key, voices.default) for key in keys],
        temperatures=[
            (configured[key].temperature if key in configured else None) or generation.temperature for key in keys
        ],
        judge=voices.default,
        choose_line=voices.choose_line,
    )
