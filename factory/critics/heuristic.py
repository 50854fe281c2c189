"""The heuristic gate: cheap checks that need no model, run before any LLM critic.

Checks: the turn count is within the recipe's bounds; speakers alternate and every speaker
speaks; no degenerate repetition (turns that echo an earlier turn, the speaker's own or another's,
nearly word for word; a sentence said again within a turn; one 4-gram looping inside a turn); no
persona pasted into the dialogue (several statements in one turn, or most of a profile); and what
slips through a small model's cleaning: a turn that ends mid-sentence, assistant boilerplate or a
prompt read back in a speaker's mouth, narration, a speaker saying a sentence of their own again
a turn or two later, a turn that copies the partner's, a dialogue of mostly few-word turns, a
template placeholder left in a line. Each reason names the turn.

Saying one's own persona fact in so many words is natural (Synthetic-Persona-Chat's conversations
do it all the time: "I just got my nails done."), so a statement said once is not copying; a
profile recited wholesale is.
"""

from __future__ import annotations

import re
from collections import Counter
from difflib import SequenceMatcher

from factory.critics.base import JudgeContext
from factory.generation.cleaning import PLACEHOLDER
from factory.recipes.critics import HeuristicCriticConfig
from factory.recipes.extensions import CriticSpec
from factory.recipes.generation import GenerationConfig
from factory.records import DialogueRecord, PersonaProfile, Turn, Verdict

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


# A word no sentence ends on: the line was cut off ("...and the", "...because my"). Prepositions,
# verbs and pronouns end sentences in talk ("I'd love to", "Yeah, it does", "Who with?").
_DANGLING = frozenset(
    ["a", "an", "the", "and", "or", "but", "because", "than", "my", "your", "his", "their", "our", "its"]
)
# What an assistant says, or a role-play instruction read back, in a persona's mouth.
_BOILERPLATE = re.compile(
    r"\b(as an ai|an ai (language )?model|language model|ai assistant|(?:i'm|i am) an ai\b|designed to assist|here is your next|here's your next|next message|"
    r"i hope this helps|let me know if you (need|have)|as your assistant|i'm (just )?an assistant|"
    r"stay in character|reply with your next line|one (to three|or two short) sentences|no name label|no narration|"
    r"who you are:|your circumstances:|the situation:|user [12] personas?|you(?: are|'re) not (?:an|my) assistant|an ordinary person|in character|my character as)\b",
    re.I,
)
# Narration left in a line: stage directions, or a speaker described in the third person.
_NARRATION = re.compile(
    r"\*[^*\s][^*]*\*|^\s*\((?:[a-z]+ing|[a-z]+s)\b[^)]*\)|"
    r"\b(?:he|she|they)\s+(?:smiles|smiled|grins|grinned|nods|nodded|shrugs|shrugged|sighs|sighed|winks|chuckles|"
    r"chuckled|giggles|leans in|looks away)\b",
    re.I,
)
# "Nearly word for word": closer than a question asked again about another thing ("what's your
# favorite movie?" / "... book?"), which people do
NEAR_COPY = 0.9
NEAR_COPY_WORDS = 6
FEW_WORDS = 3  # a turn of this many words or fewer says little ("Yes!", "Me too.")


def unfinished_problem(turns: list[Turn]) -> str | None:
    """A turn that stops on a comma or a word no sentence ends on."""
    for number, turn in enumerate(turns, start=1):
        text = turn.text.rstrip()
        words = _words(text)
        if text.endswith((",", ":", ";", "-")) or (words and words[-1] in _DANGLING and text[-1].isalnum()):
            return f"turn {number} ends mid-sentence ('...{text[-30:]}')"
    return None


def boilerplate_problem(turns: list[Turn]) -> str | None:
    for number, turn in enumerate(turns, start=1):
        for pattern, what in ((_BOILERPLATE, "assistant boilerplate"), (_NARRATION, "narration")):
            found = pattern.search(turn.text)
            if found:
                return f"turn {number} has {what} ('{found.group(0).strip()}')"
    return None


def self_repetition_problem(turns: list[Turn]) -> str | None:
    """A speaker saying again, nearly word for word, what makes up most of their own previous turn.
    A stock phrase before something new ("That sounds like a lot of fun! I used to...") and a
    question asked again much later are patterns of talk, as Synthetic-Persona-Chat's people show."""
    own: dict[str, list[tuple[int, list[list[str]]]]] = {}
    for number, turn in enumerate(turns, start=1):
        said = [sentence.split() for sentence in _sentences(turn.text)]
        length = sum(map(len, said))
        for earlier_number, earlier in own.get(turn.speaker, [])[-1:]:
            again = sum(
                len(sentence)
                for sentence in said
                if len(sentence) >= NEAR_COPY_WORDS and any(_near_copy(sentence, before) for before in earlier)
            )
            if length and again / length > 0.5:
                return f"turn {number} says again most of the same speaker's turn {earlier_number}"
        own.setdefault(turn.speaker, []).append((number, said))
    return None


def partner_copy_problem(turns: list[Turn]) -> str | None:
    """A turn that says the partner's previous turn again, nearly word for word (a template line
    with a placeholder is the placeholder check's)."""
    for number in range(2, len(turns) + 1):
        turn, previous = turns[number - 1], turns[number - 2]
        words = _words(turn.text)
        if turn.speaker == previous.speaker or len(words) < NEAR_COPY_WORDS or PLACEHOLDER.search(turn.text):
            continue
        if _near_copy(words, _words(previous.text), in_kind=True):
            return f"turn {number} copies turn {number - 1} of the other speaker"
    return None


# Said back with one of these added, a line is a reply in kind ("Nice to meet you." / "Nice to
# meet you too."); with one of the others, it means something else ("your favorite thing" / "your
# least favorite thing").
IN_KIND = frozenset(["too", "also", "as", "well", "i", "agree", "yes", "me", "same"])
TURNS_MEANING = frozenset(["least", "most", "not", "never", "no", "don't", "isn't", "wasn't", "can't", "won't"])


def _near_copy(words: list[str], before: list[str], *, in_kind: bool = False) -> bool:
    matcher = SequenceMatcher(None, words, before, autojunk=False)
    if matcher.ratio() < NEAR_COPY:
        return False
    changed = {
        word
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
        for word in (*words[i1:i2], *before[j1:j2])
    }
    if changed & TURNS_MEANING:
        return False
    return not (in_kind and changed and changed <= IN_KIND)


def few_words_problem(turns: list[Turn]) -> str | None:
    short = sum(len(_words(turn.text)) <= FEW_WORDS for turn in turns)
    if turns and short > len(turns) / 2:
        return f"{short} of {len(turns)} turns are {FEW_WORDS} words or fewer"
    return None


def placeholder_problem(turns: list[Turn]) -> str | None:
    for number, turn in enumerate(turns, start=1):
        found = PLACEHOLDER.search(turn.text)
        if found:
            return f"turn {number} holds the template placeholder '{found.group(0)}'"
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
        "unfinished": unfinished_problem(turns),
        "boilerplate": boilerplate_problem(turns),
        "self-repetition": self_repetition_problem(turns),
        "partner copy": partner_copy_problem(turns),
        "few words": few_words_problem(turns),
        "placeholder": placeholder_problem(turns),
    }
    problems = [f"{name}: {problem}" for name, problem in checks.items() if problem]
    return Verdict(
        critic=CRITIC_NAME,
        passed=not problems,
        score=1 - len(problems) / len(checks),
        reason="; ".join(problems) if problems else f"all checks passed ({', '.join(checks)})",
    )


async def judge(record: DialogueRecord, config: HeuristicCriticConfig, context: JudgeContext) -> Verdict:
    return heuristic_verdict(record.turns, record.speakers, context.generation, config)


SPEC = CriticSpec(
    CRITIC_NAME,
    HeuristicCriticConfig,
    judge,
    "Turn bounds, alternation, repetition, a profile recited, boilerplate, cut-off turns (no model).",
    label=("well_formed", True),
)
