"""The scripted endpoint's behaviour in end-to-end tests.

Each distinct generator prompt is given one of four outcomes the first time it is seen, going
round the outcomes in arrival order, so any four dialogues cover every outcome; the same prompt
always gets the same reply. The judge's reply depends only on the conversation it is shown. Tests
check each dialogue's verdicts against what its generator reply was, whatever order Ray sends
the requests in.
"""

from __future__ import annotations

import threading
from typing import Any

from factory.testing import ScriptedReply

GOOD = "good"
SAME_SPEAKER_TWICE = "same-speaker-twice"
UNPARSABLE = "unparsable"
CONTRADICTS = "contradicts"
OUTCOMES = (GOOD, SAME_SPEAKER_TWICE, UNPARSABLE, CONTRADICTS)

CONTRADICTION_MARK = "I have never owned a pet in my life"
UNPARSABLE_REPLY = "Sorry, I would rather not write that conversation."


def _lines(outcome: str) -> list[str]:
    lines = [
        "User 1: Good morning! Did you catch the sunrise today?",
        "User 2: I did, I was up early baking bread for the market.",
        "User 1: That sounds lovely. What kind of bread do you make?",
        "User 2: Mostly sourdough, though rye sells best in winter.",
        "User 1: I should stop by on Saturday and try some.",
        "User 2: Please do, I will save you a loaf.",
    ]
    if outcome == SAME_SPEAKER_TWICE:
        lines.insert(3, "User 2: Sorry, I got distracted by the oven timer.")
    if outcome == CONTRADICTS:
        lines[4] = f"User 1: {CONTRADICTION_MARK}, so I cannot relate to your dog."
    return lines


class DialogueScript:
    def __init__(self) -> None:
        self._outcomes: dict[str, str] = {}
        self._lock = threading.Lock()

    def outcome_for(self, prompt: str) -> str:
        with self._lock:
            if prompt not in self._outcomes:
                self._outcomes[prompt] = OUTCOMES[len(self._outcomes) % len(OUTCOMES)]
            return self._outcomes[prompt]

    def __call__(self, request: dict[str, Any]) -> str | ScriptedReply:
        return dialogue_reply(request, self.outcome_for)


def dialogue_reply(request: dict[str, Any], outcome_for: Any) -> str | ScriptedReply:
    messages = request["messages"]
    system, user = messages[0]["content"], messages[-1]["content"]
    if system.startswith("You write natural"):
        outcome = outcome_for(user)
        if outcome == UNPARSABLE:
            return UNPARSABLE_REPLY
        return "\n".join(_lines(outcome))
    if system.startswith("You are a careful annotator"):
        if CONTRADICTION_MARK in user:
            return '{"contradiction": true, "speaker": "User 1", "reason": "says they never owned a pet but has a dog"}'
        return '{"contradiction": false, "speaker": "none", "reason": "nothing contradicts the profiles"}'
    return ScriptedReply(status=400, content=f"unexpected prompt: {system[:60]}")
