"""One cleaning of a speaker's line for every mode: what the model wrote besides the line itself is
taken off, and each change is named, so that the record says what was rewritten.

- ``label``: a speaker label the model wrote before its line ("Alex:", "User 2:").
- ``other_speaker``: the reply went on into another speaker's turn; that part is cut.
- ``narration``: narration or a stage direction in asterisks or brackets ("*smiles*", "(laughing)").
- ``trimmed``: the line was cut by the token limit and is trimmed back to its last whole sentence.

A cut line with no whole sentence is not complete: the writer asks again once (role-play) or drops
it (a one-call dialogue's last turn).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# "Alex:", "**User 2:**", "ALEX - ", "Speaker 1 \u2014" at the start of a line
_LABEL = re.compile(r"^\s*(?:\*\*)?([A-Z][\w .'-]{0,40}?)(?:\*\*)?\s*(?::|\s[-\u2013\u2014])\s*")
# narration in asterisks: several words, or one word standing alone between sentences
_STARRED = re.compile(r"\*{1,2}([^*\n]+?)\*{1,2}")
# a stage direction in brackets: a few words, or whole sentences of narration ("(The image ends on
# the window.)"), no digits, at the start or the end of the line or standing between two sentences
_BRACKETED = r"[(\[][a-z][a-z ,'-]{0,100}(?:[a-z ,'.!?;\u2019-]{0,200}[.!?])?[)\]]"
_OPENS_SENTENCE = "[A-Z\"'\u201c]"  # a capital, or an opening quote
_DIRECTION = re.compile(
    rf"^\s*{_BRACKETED}\s*|\s*{_BRACKETED}\s*$|(?<=[.!?\u2026])\s+{_BRACKETED}(?=\s+{_OPENS_SENTENCE})", re.I
)
# the end of a sentence: its mark, and a closing quote or bracket after it
_SENTENCE_END = re.compile(r"[.!?…](?:[\"')\]]+)?(?=\s|$)")


# A template placeholder left in a line ("Hi, I'm [user 1 name]", "{name}", "(name)"): not cleaned
# away (it is a defect of the dialogue, not of the line's form), but never shown to a generator as
# an example and rejected by the heuristic gate.
PLACEHOLDER = re.compile(
    r"\[[^\]\n]{1,40}\]|\{[^}\n]{1,40}\}|<[^>\n]{1,40}>|\((?:your |my )?name\)|\(user ?\d[^)\n]{0,20}\)", re.I
)


@dataclass
class CleanLine:
    text: str
    changes: list[str] = field(default_factory=list)
    complete: bool = True  # False: cut by the token limit before any sentence ended


def is_speaker_label(name: str, names: list[str]) -> bool:
    """A speaker's name as the model writes it before a line: any case, or "User 2", "Speaker 1"."""
    return name.casefold() in {known.casefold() for known in names} or name.lower().startswith(("user", "speaker"))


def clean_line(text: str, names: list[str], *, cut: bool = False) -> CleanLine:
    """The speaker's own line from what the model wrote; ``cut``: the reply ended at the token limit."""
    changes: list[str] = []
    kept: list[str] = []
    for position, line in enumerate(text.strip().splitlines()):
        match = _LABEL.match(line)
        if match and is_speaker_label(match.group(1), names):
            if position > 0 or kept:
                changes.append("other_speaker")  # the model went on to write another speaker's line
                cut = False  # the cut fell in the part taken off
                break
            line = line[match.end() :]
            changes.append("label")
        if line.strip():
            kept.append(line.strip())
        elif kept:
            break
    line = " ".join(kept).strip()
    line, narrated = _without_narration(line)
    if narrated:
        changes.append("narration")
    line = line.strip()
    if len(line) > 1 and line[0] == line[-1] == '"' and line.count('"') == 2:  # the whole line in quotes
        line = line[1:-1].strip()
    if not cut:
        return CleanLine(line, changes)
    ends = list(_SENTENCE_END.finditer(line))
    if not ends:
        return CleanLine(line, [*changes, "trimmed"], complete=False)
    if ends[-1].end() < len(line):
        line = line[: ends[-1].end()].strip()
    return CleanLine(line, [*changes, "trimmed"])


def _without_narration(line: str) -> tuple[str, bool]:
    """The line without narration in asterisks and stage directions in brackets; single words in
    asterisks inside a sentence are emphasis, and keep their word."""
    found = False

    def starred(match: re.Match[str]) -> str:
        nonlocal found
        inner = match.group(1).strip()
        before, after = line[: match.start()].rstrip(), line[match.end() :].lstrip()
        alone = (not before or before[-1] in ".!?…") and (not after or after[0].isupper() or after[0] in ".!?")
        if len(inner.split()) > 1 or alone:
            found = True
            return " "
        return match.group(0)  # emphasis, left as written

    text = _STARRED.sub(starred, line)
    while True:
        stripped = _DIRECTION.sub(" ", text, count=1)
        if stripped == text:
            break
        found, text = True, stripped
    return " ".join(text.split()), found
