"""The heuristic gate: cheap checks that need no model, run before any LLM critic.

Checks: the turn count is within the recipe's bounds; speakers alternate and every speaker
speaks; no degenerate repetition (turns that echo an earlier turn, the speaker's own or another's,
nearly word for word; a sentence said again within a turn; one 4-gram looping inside a turn); no
persona pasted into the dialogue (several statements in one turn, or most of a profile).

Saying one's own persona fact in so many words is natural (Synthetic-Persona-Chat's conversations
do it all the time: "I just got my nails done."), so a statement said once is not copying; a
profile recited wholesale is.
"""

from __future__ import annotations

import re
from collections import Counter
from difflib import SequenceMatcher

from factory.recipes.critics import HeuristicCriticConfig
from factory.recipes.generation import GenerationConfig
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


def _sentences(text: str) -> list[str]:
    return [sentence for sentence in (_normalised(part) for part in _SENTENCE_END.split(text)) if sentence]


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


def echoes(text: str, earlier: str, similarity: float) -> bool:
    """``text`` says ``earlier`` again, nearly word for word (short turns only when identical:
    "Me too!" twice is talk, not an echo)."""
    words, before = text.split(), earlier.split()
    if words == before:
        return True
    if min(len(words), len(before)) < 4:
        return False
    return SequenceMatcher(None, words, before, autojunk=False).ratio() >= similarity


def repetition_problem(turns: list[Turn], config: HeuristicCriticConfig) -> str | None:
    normalised = [_normalised(turn.text) for turn in turns]
    # A turn may say an earlier turn again word for word anywhere, or nearly so right after it (a
    # parrot); a question asked again with another word at the end 20 turns on is a pattern of talk.
    echoed = [
        number
        for number, text in enumerate(normalised, start=1)
        if text
        and (
            text in normalised[: number - 1]
            or any(
                echoes(text, earlier, config.echo_similarity)
                for earlier in normalised[max(0, number - 3) : number - 1]
                if earlier
            )
        )
    ]
    if turns and len(echoed) / len(turns) > config.max_duplicate_turn_ratio:
        shown = ", ".join(map(str, echoed[:5]))
        return f"{len(echoed)} of {len(turns)} turns echo an earlier turn nearly word for word (turns {shown})"
    for number, turn in enumerate(turns, start=1):
        said = Counter(_sentences(turn.text))
        again = [
            (sentence, times) for sentence, times in said.items() if times > (1 if len(sentence.split()) >= 4 else 2)
        ]
        if again:
            sentence, times = again[0]
            return f"turn {number} says '{sentence}' {times} times"
        words = normalised[number - 1].split()
        grams = Counter(tuple(words[i : i + 4]) for i in range(len(words) - 3))
        if grams and max(grams.values()) > config.max_ngram_repeats:
            gram, times = grams.most_common(1)[0]
            return f"turn {number} repeats '{' '.join(gram)}' {times} times"
    return None


def copying_problem(turns: list[Turn], speakers: list[PersonaProfile], config: HeuristicCriticConfig) -> str | None:
    spoken = [_normalised(turn.text) for turn in turns]
    for persona in speakers:
        needles = [(statement, _normalised(statement)) for statement in persona.statements]
        needles = [(statement, needle) for statement, needle in needles if len(needle.split()) >= config.copy_min_words]
        said: dict[str, int] = {}
        for statement, needle in needles:
            for number, text in enumerate(spoken, start=1):
                if needle in text:
                    said.setdefault(statement, number)
                    break
        per_turn = Counter(said.values())
        if per_turn and max(per_turn.values()) >= config.copy_max_per_turn:
            number, count = per_turn.most_common(1)[0]
            return f"turn {number} pastes {count} persona statements verbatim"
        statements = len(persona.statements)
        if statements >= 2 and len(said) > config.copy_max_share * statements:
            return f"{len(said)} of {statements} statements of one persona are pasted verbatim"
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
