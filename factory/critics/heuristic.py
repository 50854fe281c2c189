"""The heuristic gate: cheap checks that need no model, run before any LLM critic.

Checks: the turn count is within the recipe's bounds; speakers alternate and every speaker
speaks; no degenerate repetition (repeated turns, or one 4-gram looping inside a turn); no persona
statement copied verbatim into the dialogue.
"""

from __future__ import annotations

import re
from collections import Counter

from factory.config import GenerationConfig, HeuristicCriticConfig
from factory.records import PersonaProfile, Turn, Verdict

CRITIC_NAME = "heuristic"
_WORD = re.compile(r"[a-z0-9']+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _normalised(text: str) -> str:
    return " ".join(_words(text))


def turn_count_problem(turns: list[Turn], generation: GenerationConfig) -> str | None:
    if not generation.min_turns <= len(turns) <= generation.max_turns:
        return f"{len(turns)} turns, outside the bounds {generation.min_turns}-{generation.max_turns}"
    return None


def alternation_problem(turns: list[Turn], speakers: list[PersonaProfile]) -> str | None:
    for index in range(1, len(turns)):
        if turns[index].speaker == turns[index - 1].speaker:
            return f"turns {index} and {index + 1} are both by the same speaker"
    silent = [p.id for p in speakers if all(turn.speaker != p.id for turn in turns)]
    if silent:
        return f"speaker(s) {', '.join(silent)} never speak"
    return None


def repetition_problem(turns: list[Turn], config: HeuristicCriticConfig) -> str | None:
    normalised = [_normalised(turn.text) for turn in turns]
    counts = Counter(text for text in normalised if text)
    duplicates = sum(count - 1 for count in counts.values())
    if turns and duplicates / len(turns) > config.max_duplicate_turn_ratio:
        return f"{duplicates} of {len(turns)} turns repeat an earlier turn"
    for number, text in enumerate(normalised, start=1):
        words = text.split()
        grams = Counter(tuple(words[i : i + 4]) for i in range(len(words) - 3))
        if grams and max(grams.values()) > config.max_ngram_repeats:
            gram, times = grams.most_common(1)[0]
            return f"turn {number} repeats '{' '.join(gram)}' {times} times"
    return None


def copying_problem(turns: list[Turn], speakers: list[PersonaProfile], config: HeuristicCriticConfig) -> str | None:
    spoken = [_normalised(turn.text) for turn in turns]
    for persona in speakers:
        for statement in persona.statements:
            needle = _normalised(statement)
            if len(needle.split()) < config.copy_min_words:
                continue
            for number, text in enumerate(spoken, start=1):
                if needle in text:
                    return f"turn {number} copies the persona statement {statement!r} verbatim"
    return None


def heuristic_verdict(
    turns: list[Turn],
    speakers: list[PersonaProfile],
    generation: GenerationConfig,
    config: HeuristicCriticConfig,
) -> Verdict:
    checks = {
        "turn count": turn_count_problem(turns, generation),
        "alternation": alternation_problem(turns, speakers),
        "repetition": repetition_problem(turns, config),
        "copying": copying_problem(turns, speakers, config),
    }
    problems = [f"{name}: {problem}" for name, problem in checks.items() if problem]
    return Verdict(
        critic=CRITIC_NAME,
        passed=not problems,
        score=1 - len(problems) / len(checks),
        reason="; ".join(problems) if problems else "all checks passed (turn count, alternation, repetition, copying)",
    )
