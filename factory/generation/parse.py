"""Turn a generator reply into turns, or say exactly why it cannot be done."""

from __future__ import annotations

import re
from dataclasses import dataclass

from factory.records import PersonaProfile, Turn, Verdict, format_verdict

# A speaker label as models write it, decorations and all: "User 1:", "**User 1:**", "* * User 1: * *",
# "- Speaker 2 :", "> __User 2__: ...".
_DECORATION = r"[*_#>\-\s]*"
_LABEL = re.compile(rf"^{_DECORATION}(?:User|Speaker)\s*(\d+){_DECORATION}:{_DECORATION}(.*?)[*_\s]*$", re.I)


@dataclass
class ParsedDialogue:
    turns: list[Turn]
    verdict: Verdict


def parse_dialogue(text: str, speakers: list[PersonaProfile], finish_reason: str | None) -> ParsedDialogue:
    """Lines ``User N: text`` become turns of speaker N; unlabelled lines continue the turn above
    (text before the first label is preamble and dropped). A reply cut at ``max_tokens`` loses its
    last, unfinished turn."""
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

    notes = []
    if finish_reason == "length" and turns:
        turns.pop()
        notes.append("the reply hit max_tokens, so its last turn was dropped")
    if unknown_labels:
        notes.append(f"ignored lines for unknown speakers {sorted(unknown_labels)}")

    if not turns:
        preview = text.strip().replace("\n", " ")[:120]
        reason = f"unparsable reply: no 'User 1:' / 'User 2:' lines found (reply began: {preview!r})"
        return ParsedDialogue(turns=[], verdict=format_verdict(False, reason))
    reason = f"parsed {len(turns)} turns" + (f"; {'; '.join(notes)}" if notes else "")
    return ParsedDialogue(turns=turns, verdict=format_verdict(True, reason))
