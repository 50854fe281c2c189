"""Synthetic-Persona-Chat's generator: one call writes the whole conversation.

After Jandaghi et al. (2023): the profiles of the users, then a natural conversation between them
that implicitly reflects their profiles, with conversations from the SPC data (or, from the second
round on, the best dialogues of the round before) as few-shot examples. Speakers are always
labelled ``User 1`` / ``User 2`` so that parsing does not depend on names. The prompt is built on
the driver (:meth:`SPCWriter.plan`); the call and the parse run where the dialogue is judged
(:meth:`SPCWriter.write`).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from factory.errors import LLMCallError
from factory.generation.cleaning import PLACEHOLDER, clean_line
from factory.generation.writer import FewShotExample, FewShotPicker, Voices
from factory.llm.spec import prompt_hash
from factory.personas.casting import Cast
from factory.personas.statements import SPCRow, load_spc_rows
from factory.recipes.generation import GenerationConfig
from factory.records import DialogueRecord, PersonaProfile, Turn, Verdict, format_verdict, speaker_label

GENERATOR_SYSTEM = (
    "You write natural, engaging conversations between people with given personas. "
    "Each speaker's lines implicitly reflect their own profile: show who they are through what they "
    "say, never by reciting or copying their profile sentences. Speakers take turns. Write one "
    "utterance per line, each starting with the speaker label ('User 1:', 'User 2:', ...), and nothing else."
)

INTRO = (
    "Here, we list the profiles of two users, user 1 and user 2, followed by an interesting and "
    "natural conversation between user 1 and user 2, which implicitly reflects their user profiles."
)


def _intro(count: int) -> str:
    return (
        f"Here, we list the profiles of {count} users, {_labels(count).lower()}, followed by an interesting "
        "and natural conversation between them, which implicitly reflects their user profiles."
    )


@lru_cache(maxsize=8)
def _examples_from(path: Path) -> tuple[SPCRow, ...]:
    """The conversations a generator may be shown: none with a template placeholder in a line
    (Synthetic-Persona-Chat's "Hi, I'm [user 1 name]"), which a model copies."""
    return tuple(
        row
        for row in load_spc_rows(path)
        if row.conversation and not any(PLACEHOLDER.search(text) for _, text in row.conversation)
    )


def pick_few_shot(path: Path, count: int, max_turns: int, rng: random.Random) -> list[FewShotExample]:
    """``count`` SPC conversations, cut to ``max_turns`` utterances so they model the length asked for."""
    if count == 0:
        return []
    rows = _examples_from(path)
    chosen = rng.sample(rows, min(count, len(rows)))
    return [FewShotExample(id=row.id, profiles=row.personas, lines=row.conversation[:max_turns]) for row in chosen]


def _profile_block(label: str, statements: list[str] | tuple[str, ...], extra: str = "") -> str:
    lines = [f"{label} Profile:"] + [f"- {statement}" for statement in statements]
    if extra:
        lines.append(f"- ({extra})")
    return "\n".join(lines)


def persona_hint(persona: PersonaProfile) -> str:
    """What a model should know beyond the statements: name, circumstances, personality frame."""
    parts = []
    if persona.name:
        parts.append(f"name: {persona.name}")
    demo = persona.demographics
    parts.extend(
        f"{field}: {value}"
        for field, value in (("age", demo.age), ("occupation", demo.occupation), ("lives in", demo.location))
        if value is not None
    )
    if persona.mbti:
        parts.append(f"MBTI type: {persona.mbti}")
    if persona.big_five:
        parts.append(persona.description)
    if persona.speaking_style:
        parts.append(f"speaking style: {persona.speaking_style}")
    return "; ".join(parts)


def _labels(count: int) -> str:
    labels = [speaker_label(n) for n in range(1, count + 1)]
    return ", ".join(labels[:-1]) + f" and {labels[-1]}"


ROLE_NOTES = {
    "user": "a person chatting with an AI assistant, asking for help in their own words",
    "assistant": "an AI assistant who helps the user, speaking in the persona's style",
}


def generator_messages(
    speakers: list[PersonaProfile],
    examples: list[FewShotExample],
    *,
    min_turns: int,
    max_turns: int,
    roles: tuple[str, ...] = (),
) -> list[dict[str, str]]:
    """The generator prompt for any number of speakers; with ``roles``, each speaker is told
    the part they play (a user simulator talking to an assistant)."""
    blocks = [INTRO if len(speakers) == 2 and not roles else _intro(len(speakers)), ""]
    for number, example in enumerate(examples, start=1):
        blocks.append(f"Example {number}:")
        blocks.extend(_profile_block(speaker_label(n), profile) for n, profile in enumerate(example.profiles, start=1))
        blocks.append("Conversation:")
        blocks.extend(f"{speaker_label(speaker + 1)}: {text}" for speaker, text in example.lines)
        blocks.append("")
    blocks.append(f"Now the {len(speakers)} users of this conversation:")
    for index, persona in enumerate(speakers, start=1):
        hint = persona_hint(persona)
        if roles:
            hint = f"plays {ROLE_NOTES.get(roles[index - 1], roles[index - 1])}" + (f"; {hint}" if hint else "")
        blocks.append(_profile_block(speaker_label(index), persona.statements, hint))
    if len(speakers) == 2:
        order = "alternating User 1 and User 2, starting with User 1"
    else:
        order = (
            f"taking turns among {_labels(len(speakers))} (never the same speaker twice in a row), starting with User 1"
        )
    blocks.append(f"Write their conversation: between {min_turns} and {max_turns} utterances, {order}.")
    blocks.append("Conversation:")
    return [
        {"role": "system", "content": GENERATOR_SYSTEM},
        {"role": "user", "content": "\n".join(blocks)},
    ]


# A speaker label as models write it, decorations and all: "User 1:", "**User 1:**", "* * User 1: * *",
# "- Speaker 2 :", "> __User 2__: ...".
_DECORATION = r"[*_#>\-\s]*"
# "User 1: text", "**User 1:** text", "- User 1: text": the marks around the label close right after
# its colon ("**User 1:**"); marks after a space are the line's own ("User 1: *waves* hi")
_LABEL = re.compile(rf"^{_DECORATION}(?:User|Speaker)\s*(\d+)\s*[*_]*\s*:[*_]*\s*(.*?)\s*$", re.I)


def _cleaned(turn: Turn, names: list[str], *, cut: bool) -> Turn:
    line = clean_line(turn.text, names, cut=cut)
    changes = list(dict.fromkeys([*turn.cleaned, *line.changes, *([] if line.complete else ["incomplete"])]))
    return turn.model_copy(update={"text": line.text, "cleaned": changes})


def _complete(turn: Turn) -> bool:
    return "incomplete" not in turn.cleaned


@dataclass
class ParsedDialogue:
    turns: list[Turn]
    verdict: Verdict


def parse_dialogue(text: str, speakers: list[PersonaProfile], finish_reason: str | None) -> ParsedDialogue:
    """Lines ``User N: text`` become turns of speaker N; unlabelled lines continue the turn above
    (text before the first label is preamble and dropped). Each turn is cleaned as every mode's
    lines are (:mod:`factory.generation.cleaning`); in a reply cut at ``max_tokens``, the last turn
    is trimmed to its last whole sentence, or dropped when it has none."""
    turns: list[Turn] = []
    unknown_labels: set[int] = set()
    for line in text.splitlines():
        match = _LABEL.match(line)
        if match:
            number, utterance = int(match.group(1)), match.group(2).strip()
            if not 1 <= number <= len(speakers):
                unknown_labels.add(number)
                continue
            if utterance:
                turns.append(Turn(speaker=speakers[number - 1].id, text=utterance))
        elif line.strip() and turns:
            turns[-1] = Turn(speaker=turns[-1].speaker, text=f"{turns[-1].text} {line.strip()}")

    names = [f"User {n}" for n in range(1, len(speakers) + 1)]
    turns = [_cleaned(turn, names, cut=False) for turn in turns]
    notes = []
    if finish_reason == "length" and turns:
        last = _cleaned(turns.pop(), names, cut=True)
        if last.text and _complete(last):
            turns.append(last)
            notes.append("the reply hit max_tokens; its last turn was trimmed to its last whole sentence")
        else:
            notes.append("the reply hit max_tokens, so its last, unfinished turn was dropped")
    turns = [turn for turn in turns if turn.text]
    if unknown_labels:
        notes.append(f"ignored lines for unknown speakers {sorted(unknown_labels)}")

    if not turns:
        preview = text.strip().replace("\n", " ")[:120]
        reason = f"unparsable reply: no 'User 1:' / 'User 2:' lines found (reply began: {preview!r})"
        return ParsedDialogue(turns=[], verdict=format_verdict(False, reason))
    reason = f"parsed {len(turns)} turns" + (f"; {'; '.join(notes)}" if notes else "")
    return ParsedDialogue(turns=turns, verdict=format_verdict(True, reason))


class SPCWriter:
    """The Writer of mode ``spc``."""

    def plan(
        self, cast: Cast, rng: random.Random, generation: GenerationConfig, examples: FewShotPicker
    ) -> tuple[dict[str, Any], list[dict[str, str]]]:
        chosen = examples(rng)
        messages = generator_messages(
            list(cast.speakers),
            chosen,
            min_turns=generation.min_turns,
            max_turns=generation.max_turns,
            roles=cast.roles,
        )
        return {"prompt_hash": prompt_hash(messages), "few_shot_ids": [example.id for example in chosen]}, messages

    async def write(
        self, record: DialogueRecord, prompt: list[dict[str, str]], voices: Voices, generation: GenerationConfig
    ) -> None:
        """The generator's call and the parse; a failed call is a failed ``format`` verdict."""
        try:
            result = await voices.default.chat(
                prompt,
                temperature=generation.temperature,
                max_tokens=generation.max_tokens,
                seed=record.generation.seed,
            )
        except LLMCallError as exc:
            record.verdicts.append(format_verdict(False, f"generation failed: {exc}"))
            return
        record.raw_generation = result.text
        record.generation.usage = result.usage
        parsed = parse_dialogue(result.text, record.speakers, result.finish_reason)
        record.turns = parsed.turns
        record.verdicts.append(parsed.verdict)
