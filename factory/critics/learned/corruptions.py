"""Bad conversations made from good ones, so a critic can learn what makes a conversation bad.

Each corruption breaks one thing a persona conversation must have and leaves the rest as it was:
its speakers' personas, its order, its sentences, its speakers' not repeating themselves, its lines
being the speakers' own. A critic that tells an original from every corruption of it has learned
those things, not the topics of the corpus it was shown.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Lines = list[tuple[int, str]]  # (speaker index, text)
Profiles = list[list[str]]


@dataclass(frozen=True)
class Conversation:
    profiles: Profiles
    lines: Lines


@dataclass(frozen=True)
class Materials:
    """What a corruption may draw on: another conversation (for its personas) and assistant lines."""

    donor: Conversation
    frames: Sequence[str]


# Lines no speaker says: an assistant's frame, read back into a conversation (as small models do)
BOILERPLATE = (
    "As an AI language model, I don't have personal experiences, but I can help you with that.",
    "Here is your next message:",
    "I hope this helps! Let me know if you have any other questions.",
    "Sure! Here's a response as User 2:",
    "Certainly! Below is a continuation of the conversation.",
    "Note: this conversation is fictional and for illustration only.",
    "(smiles warmly and leans back in the chair)",
    "*laughs and nods*",
    "User 1 is a friendly person who enjoys talking about their hobbies.",
    "Is there anything else I can assist you with today?",
    "I'm sorry, but I can't continue this role-play.",
    "Of course! Here is the dialogue you asked for, in the style of the persona.",
    "Thank you for your question. As an assistant, my goal is to provide helpful information.",
    "Remember to stay in character and keep your replies short.",
    "[The conversation continues with both users sharing their interests.]",
    "Great question! There are several factors to consider here:",
    "In conclusion, both speakers have a lot in common.",
    "Please provide the next line of the dialogue.",
    "I am an AI and do not have a name, hobbies or a family.",
    "(Note: User 2 has not mentioned their job yet.)",
    "Let's continue our conversation! What would you like to talk about next?",
    "Response: That sounds lovely.",
    "I'm glad you enjoyed it! Here is your next message.",
    "Feel free to ask me anything, I'm here to help.",
)


def persona_swapped(talk: Conversation, materials: Materials, rng: random.Random) -> Conversation | None:
    """One speaker's persona is another conversation's: their lines no longer fit who they are."""
    speaker = rng.randrange(len(talk.profiles))
    profiles = [list(p) for p in talk.profiles]
    profiles[speaker] = list(materials.donor.profiles[rng.randrange(len(materials.donor.profiles))])
    return Conversation(profiles, talk.lines) if profiles != talk.profiles else None


def turns_shuffled(talk: Conversation, materials: Materials, rng: random.Random) -> Conversation | None:
    """The same lines out of order: half the time each speaker's lines are shuffled among their own
    turns (the speakers still alternate), half the time the lines are shuffled with their speakers."""
    lines = list(talk.lines)
    if rng.random() < 0.5:
        for speaker in {who for who, _ in lines}:
            slots = [i for i, (who, _) in enumerate(lines) if who == speaker]
            texts = [lines[i][1] for i in slots]
            rng.shuffle(texts)
            for slot, text in zip(slots, texts):
                lines[slot] = (speaker, text)
    else:
        rng.shuffle(lines)
    return Conversation(talk.profiles, lines) if lines != talk.lines else None


def turns_truncated(talk: Conversation, materials: Materials, rng: random.Random) -> Conversation | None:
    """Turns cut off mid-sentence, as a token limit cuts them: a third to two thirds of the long ones."""
    long_turns = [i for i, (_, text) in enumerate(talk.lines) if len(text.split()) >= 6]
    if not long_turns:
        return None
    cut = rng.sample(long_turns, max(1, round(len(long_turns) * rng.uniform(0.34, 0.67))))
    lines = list(talk.lines)
    for index in cut:
        speaker, text = lines[index]
        words = text.split()
        kept = words[: max(2, int(len(words) * rng.uniform(0.3, 0.8)))]
        lines[index] = (speaker, " ".join(kept).rstrip(".,!?;:"))
    return Conversation(talk.profiles, lines)


def own_lines_repeated(talk: Conversation, materials: Materials, rng: random.Random) -> Conversation | None:
    """A speaker says one of their own earlier lines again, word for word or nearly."""
    lines = list(talk.lines)
    candidates = [
        (earlier, later)
        for later in range(2, len(lines))
        for earlier in range(later - 1)
        if lines[earlier][0] == lines[later][0]
    ]
    if not candidates:
        return None
    for earlier, later in rng.sample(candidates, min(len(candidates), rng.choice((1, 2)))):
        text = lines[earlier][1]
        lead = rng.choice(("", "", "Well, ", "Yes, ", "Like I said, "))
        lines[later] = (lines[later][0], lead + (text[0].lower() + text[1:] if lead and text else text))
    return Conversation(talk.profiles, lines)


def boilerplate_inserted(talk: Conversation, materials: Materials, rng: random.Random) -> Conversation | None:
    """An assistant's line in a speaker's mouth: in place of a turn, or before or after its text."""
    lines = list(talk.lines)
    for index in rng.sample(range(len(lines)), min(len(lines), rng.choice((1, 2)))):
        speaker, text = lines[index]
        frame = rng.choice(materials.frames)
        lines[index] = (speaker, rng.choice((frame, f"{frame} {text}", f"{text} {frame}")))
    return Conversation(talk.profiles, lines)


def speakers_exchanged(talk: Conversation, materials: Materials, rng: random.Random) -> Conversation | None:
    """Each speaker is given the partner's lines: the personas are the two speakers', the wrong way round."""
    if len(talk.profiles) != 2 or talk.profiles[0] == talk.profiles[1]:
        return None
    return Conversation([list(talk.profiles[1]), list(talk.profiles[0])], talk.lines)


Corruption = Callable[[Conversation, Materials, random.Random], Conversation | None]
CORRUPTIONS: dict[str, Corruption] = {
    "persona_swapped": persona_swapped,
    "turns_shuffled": turns_shuffled,
    "turns_truncated": turns_truncated,
    "own_lines_repeated": own_lines_repeated,
    "boilerplate_inserted": boilerplate_inserted,
    "speakers_exchanged": speakers_exchanged,
}


def corrupted(
    talk: Conversation,
    others: Sequence[Conversation],
    names: Sequence[str],
    rng: random.Random,
    frames: Sequence[str] = BOILERPLATE,
) -> list[tuple[str, Conversation]]:
    """One corruption of ``talk`` per name that applies to it (a donor persona drawn from ``others``)."""
    made = []
    for name in names:
        bad = CORRUPTIONS[name](talk, Materials(rng.choice(others), frames), rng)
        if bad is not None:
            made.append((name, bad))
    return made
