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

import hashlib
import json
import re
from dataclasses import dataclass, field

from factory.errors import LLMCallError
from factory.llm.client import ChatClient
from factory.llm.tasks import parse_json_object
from factory.recipes.generation import RolePlayConfig
from factory.records import (
    ChatExample,
    ChatMessage,
    DialogueRecord,
    PersonaProfile,
    TokenUsage,
    Turn,
    format_verdict,
)

USP_SIMULATOR = (
    "You are engaging in a conversation with an AI assistant. your profile is: \n{profile}\n"
    " You can say anything you want, either based on the profile or something brand new.\n\n"
)
PLAIN_ASSISTANT = "You are a helpful AI assistant."
_WORD = re.compile(r"[a-z']+")
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "of",
        "to",
        "in",
        "on",
        "at",
        "for",
        "with",
        "from",
        "by",
        "about",
        "as",
        "is",
        "am",
        "are",
        "was",
        "were",
        "be",
        "been",
        "being",
        "i",
        "me",
        "my",
        "mine",
        "we",
        "our",
        "you",
        "your",
        "he",
        "she",
        "it",
        "its",
        "they",
        "them",
        "their",
        "this",
        "that",
        "these",
        "those",
        "do",
        "does",
        "did",
        "have",
        "has",
        "had",
        "not",
        "no",
        "so",
        "very",
        "just",
        "really",
        "can",
        "will",
        "would",
        "should",
        "could",
        "what",
        "which",
        "who",
        "how",
        "when",
        "where",
        "why",
        "there",
        "here",
        "all",
        "any",
        "some",
        "more",
        "most",
        "much",
        "many",
        "too",
        "also",
        "than",
        "then",
        "out",
        "up",
        "down",
        "over",
        "into",
        "like",
        "get",
        "got",
        "one",
        "im",
        "i'm",
        "you're",
        "it's",
    ]
)


def _stem(word: str) -> str:
    """A crude suffix strip, the same on both sides of a comparison: marathons ~ marathon, baking ~ bake."""
    for suffix in ("ing", "ed", "es", "s", "e"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> set[str]:
    return {_stem(word) for word in _WORD.findall(text.lower()) if word not in STOPWORDS and len(word) > 2}


def display_name(persona: PersonaProfile, index: int) -> str:
    return persona.name or f"User {index + 1}"


def names_and_roles(record: DialogueRecord) -> tuple[list[str], list[str | None]]:
    """Each speaker's name in the conversation, and role (None for peers)."""
    names = [display_name(persona, index) for index, persona in enumerate(record.speakers)]
    return names, list(record.roles) or [None] * len(record.speakers)


# -- persona memory ------------------------------------------------------------------------------


def aspects_of(persona: PersonaProfile) -> list[str]:
    """What the memory can recall: the statements and the named facts of the profile."""
    return [*persona.statements, *(f"{a.name}: {a.value}" for a in persona.attributes)]


@dataclass
class PersonaMemory:
    """Picks the aspect of a profile that shares the most content words with the last utterance
    (at least ``min_overlap`` of the aspect's words), leaving out aspects this agent recalled in
    its last ``recent`` turns, so that one statement does not take over the conversation."""

    aspects: list[str]
    recent: int = 2
    min_overlap: float = 0.15
    picks: list[str | None] = field(default_factory=list)

    def pick(self, utterance: str | None) -> str | None:
        chosen = None
        if utterance:
            said = content_words(utterance)
            blocked = {aspect for aspect in self.picks[-self.recent :] if aspect} if self.recent else set()
            best = 0.0
            for aspect in self.aspects:
                words = content_words(aspect)
                if aspect in blocked or not words:
                    continue
                overlap = len(words & said) / len(words)
                if overlap >= self.min_overlap and overlap > best:
                    chosen, best = aspect, overlap
        self.picks.append(chosen)
        return chosen


# -- turn order ----------------------------------------------------------------------------------


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
) -> tuple[list[dict[str, str]], dict]:
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


# -- prompts -------------------------------------------------------------------------------------


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
    lines = [f"You are {names[index]}, in a conversation with {', '.join(others)}."]
    if role in ROLE_GUIDANCE:
        lines.append(ROLE_GUIDANCE[role])
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
    lines.append(
        "Stay in character. Reply with your next line only: one to three sentences, no name label, no narration."
    )
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


def turn_note(turn: int, aspect: str | None, closing: bool) -> str:
    if closing:
        return "Bring the conversation to a natural close in one short line."
    parts = ["Start the conversation." if turn == 0 else "Say your next line."]
    if aspect:
        parts.append(f"Something about you that fits here: {aspect}")
    return " ".join(parts)


_LABEL = re.compile(r"^\s*(?:\*\*)?([A-Z][\w .'-]{0,40}?)(?:\*\*)?\s*:\s*")


def clean_line(text: str, names: list[str]) -> str:
    """The agent's line alone: no name label of its own, nothing it wrote for anyone else."""
    kept = []
    for position, line in enumerate(text.strip().splitlines()):
        match = _LABEL.match(line)
        if match and (match.group(1) in names or match.group(1).lower().startswith("user")):
            if position > 0:
                break  # the model went on to write another speaker's line
            line = line[match.end() :]
        if line.strip():
            kept.append(line.strip())
        elif kept:
            break
    return " ".join(kept).strip().strip('"').strip()


# -- stop rules ----------------------------------------------------------------------------------

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


# -- the dialogue --------------------------------------------------------------------------------


@dataclass
class Agents:
    """The client each speaker talks through (a strong assistant and a cheap user simulator may
    use different endpoints), and the client of the judges and the moderator."""

    for_speaker: list[ChatClient]
    temperatures: list[float]
    judge: ChatClient


async def _ask_json(
    agents: Agents, messages: list[dict[str, str]], name: str, schema: dict, seed: int
) -> tuple[dict | None, TokenUsage]:
    """The judge's JSON answer (None when it cannot be read) and what it cost."""
    form = agents.judge.spec.response_format(name, schema)
    result = await agents.judge.chat(messages, temperature=0.0, max_tokens=200, seed=seed, response_format=form)
    try:
        return parse_json_object(result.text), result.usage
    except ValueError:
        return None, result.usage


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


async def role_play(
    record: DialogueRecord, config: RolePlayConfig, agents: Agents, *, min_turns: int, max_turns: int
) -> None:
    """Play the dialogue of ``record``'s cast into its turns; a failed call fails ``format``."""
    speakers = record.speakers
    names, roles = names_and_roles(record)
    simulator = [config.user_simulator and role == "user" for role in roles]
    usage = TokenUsage()
    scenario = record.generation.scenario
    if not scenario and config.generate_scenario:
        try:
            result = await agents.judge.chat(
                scenario_messages(speakers, names), temperature=0.9, max_tokens=80, seed=record.generation.seed
            )
        except LLMCallError as exc:
            record.verdicts.append(format_verdict(False, f"no scenario: {exc}"))
            return
        usage = usage + result.usage
        scenario = record.generation.scenario = " ".join(result.text.split())[:400]
    systems = [
        agent_system_prompt(
            persona,
            index,
            names,
            roles[index],
            scenario,
            simulator=simulator[index],
            plain_assistant=not config.assistant_persona,
        )
        for index, persona in enumerate(speakers)
    ]
    record.generation.prompt_hash = plan_hash(systems)
    memories = [PersonaMemory(aspects_of(p), config.memory.recent, config.memory.min_overlap) for p in speakers]
    history: list[tuple[int, str]] = []
    turns: list[Turn] = []
    seeker = roles.index("user") if "user" in roles else 0
    high_streak = 0
    ended_by = "max_turns"
    previous: int | None = None
    seed = record.generation.seed

    async def speak(speaker: int, turn: int, closing: bool) -> None:
        nonlocal usage
        aspect = None
        if config.memory.enabled and not simulator[speaker]:
            aspect = memories[speaker].pick(history[-1][1] if history else None)
        messages = agent_messages(systems[speaker], history, speaker, names, turn_note(turn, aspect, closing))
        result = await agents.for_speaker[speaker].chat(
            messages, temperature=agents.temperatures[speaker], max_tokens=config.max_tokens_per_turn, seed=seed + turn
        )
        usage = usage + result.usage
        line = clean_line(result.text, names) or result.text.strip()
        history.append((speaker, line))
        turns.append(Turn(speaker=speakers[speaker].id, text=line, memory=aspect, closing=closing))

    try:
        for turn in range(max_turns):
            if config.turn_order == "moderator" and previous is not None:
                messages, schema = moderator_messages(names, history, previous)
                answer, spent = await _ask_json(agents, messages, "next_speaker", schema, seed + turn)
                usage = usage + spent
                chosen = names.index(answer["next"]) if answer and answer.get("next") in names else None
                speaker = chosen if chosen is not None and chosen != previous else (previous + 1) % len(speakers)
            else:
                speaker = next_speaker(config.turn_order, turn, len(speakers), previous)
            await speak(speaker, turn, closing=False)
            previous = speaker
            # A stop rule may end the dialogue only where its closing turns still fit within
            # max_turns, and the whole stays within the recipe's bounds (which the heuristic checks).
            room_to_close = turn + 1 + config.closing_turns <= max_turns
            if turn + 1 < min_turns or config.stop.rule == "none" or not room_to_close:
                continue
            if config.stop.rule == "sentiment" and speaker == seeker:
                answer, spent = await _ask_json(
                    agents,
                    sentiment_messages(names[speaker], history[-1][1]),
                    "sentiment",
                    SENTIMENT_SCHEMA,
                    seed + turn,
                )
                usage = usage + spent
                level = int(answer["sentiment"]) if answer and str(answer.get("sentiment")) in "12345" else 0
                high_streak = high_streak + 1 if level >= config.stop.threshold else 0
                if high_streak >= config.stop.patience:
                    ended_by = "sentiment"
                    break
            elif config.stop.rule == "goal" and (turn + 1) % len(speakers) == 0:
                answer, spent = await _ask_json(
                    agents, goal_messages(config.stop.goal, names, history), "goal_met", GOAL_SCHEMA, seed + turn
                )
                usage = usage + spent
                if answer and answer.get("met") == "yes":
                    ended_by = "goal"
                    break
        if ended_by != "max_turns":
            for _closing in range(config.closing_turns):
                speaker = (previous + 1) % len(speakers) if previous is not None else 0
                await speak(speaker, len(turns), closing=True)
                previous = speaker
    except LLMCallError as exc:
        record.turns, record.generation.usage = turns, usage
        record.verdicts.append(format_verdict(False, f"generation failed at turn {len(turns) + 1}: {exc}"))
        return
    record.turns = turns
    record.generation.usage = usage
    record.generation.ended_by = ended_by
    record.raw_generation = "\n".join(f"{names[speaker]}: {text}" for speaker, text in history)
    empty = [index + 1 for index, turn in enumerate(turns) if not turn.text]
    if empty:
        reason = f"turns {empty} came back empty"
        record.verdicts.append(format_verdict(False, reason))
    else:
        reason = f"played {len(turns)} turns; ended by {ended_by}"
        record.verdicts.append(format_verdict(True, reason))


# -- chat fine-tuning rows -----------------------------------------------------------------------


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
