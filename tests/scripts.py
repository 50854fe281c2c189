"""The scripted endpoint's behaviour in end-to-end tests.

Each distinct generator prompt is given one of four outcomes the first time it is seen, going
round the outcomes in arrival order, so any four dialogues cover every outcome; the same prompt
always gets the same reply. The judge's reply depends only on the conversation it is shown. Tests
check each dialogue's verdicts against what its generator reply was, whatever order Ray sends
the requests in.
"""

from __future__ import annotations

import json
import re
import threading
from typing import Any

from tests.openai_server import ScriptedReply

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
    """Candidates of one cast share a prompt but not a seed, so (prompt, seed) picks the outcome."""

    def __init__(self) -> None:
        self._outcomes: dict[tuple[str, Any], str] = {}
        self._lock = threading.Lock()

    def outcome_for(self, prompt: str, seed: Any = None) -> str:
        with self._lock:
            if (prompt, seed) not in self._outcomes:
                self._outcomes[(prompt, seed)] = OUTCOMES[len(self._outcomes) % len(OUTCOMES)]
            return self._outcomes[(prompt, seed)]

    def __call__(self, request: dict[str, Any]) -> str | ScriptedReply:
        return dialogue_reply(request, self.outcome_for)


def dialogue_reply(request: dict[str, Any], outcome_for: Any) -> str | ScriptedReply:
    messages = request["messages"]
    system, user = messages[0]["content"], messages[-1]["content"]
    if system.startswith("You write natural"):
        outcome = outcome_for(user, request.get("seed"))
        if outcome == UNPARSABLE:
            return UNPARSABLE_REPLY
        return "\n".join(_lines(outcome))
    if system.startswith("You are a careful annotator"):
        if UNPARSABLE_MARK in user.lower():
            return "I would rather not say."
        if CONTRADICTION_MARK in user:
            return '{"contradiction": true, "speaker": "User 1", "reason": "says they never owned a pet but has a dog"}'
        return '{"contradiction": false, "speaker": "none", "reason": "nothing contradicts the profiles"}'
    expert = EXPERT_REPLIES.get(system.split(".")[0])
    if expert is not None:
        return expert(user)
    return ScriptedReply(status=400, content=f"unexpected prompt: {system[:60]}")


# -- the other experts: answers follow from the prompt alone ------------------------------------

TOXIC_MARK = "you are an idiot"
UNPARSABLE_MARK = "the judge cannot read this"  # any expert answers this dialogue with non-JSON
_CONTENT_WORD = re.compile(r"[a-z]{4,}")


def _apc(prompt: str) -> str:
    statements = re.findall(r"^\d+\. (.*)$", prompt.split("What the person says", 1)[0], re.M)
    said = prompt.split("What the person says in the conversation:", 1)[1].lower()
    judgements = []
    for statement in statements:
        shared = set(_CONTENT_WORD.findall(statement.lower())) & set(_CONTENT_WORD.findall(said))
        relation = (
            "contradiction" if CONTRADICTION_MARK.lower() in said else ("entailment" if len(shared) >= 1 else "neutral")
        )
        judgements.append({"relevant": bool(shared), "relation": relation})
    return json.dumps({"judgements": judgements})


def _toxicity(prompt: str) -> str:
    toxic = TOXIC_MARK in prompt.lower()
    return json.dumps({"reason": "an insult" if toxic else "friendly", "toxic": toxic})


def _portrayal(prompt: str) -> str:
    if "MBTI type" in prompt:
        return json.dumps({"reason": "plans ahead, quiet", "estimate": "INTJ"})
    return json.dumps(
        {
            "reason": "average",
            "estimate": {
                t: 4 for t in ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")
            },
        }
    )


def _attribution(prompt: str) -> str:
    turns = len(re.findall(r"^Turn \d+: ", prompt, re.M))
    return json.dumps({"speakers": [f"User {1 + n % 2}" for n in range(turns)]})


def _ordered_numbers(block: str) -> bool:
    numbers = [int(n) for n in re.findall(r"^User \d: (\d+)\b", block, re.M)]
    return numbers == sorted(numbers)


def _quality(prompt: str) -> str:
    """Prefers the conversation whose numbered lines are in order, else the longer one, else A."""
    first, second = prompt.split("Conversation B:", 1)
    second = second.split("For each question", 1)[0]
    a_ordered, b_ordered = _ordered_numbers(first), _ordered_numbers(second)
    if a_ordered != b_ordered:
        winner = "A" if a_ordered else "B"
    else:
        winner = "A" if first.count("\n") >= second.count("\n") else "B"
    return json.dumps({policy: winner for policy in ("depth", "coherency", "consistency", "diversity", "likeability")})


def _guarded(answer: Any) -> Any:
    def reply(prompt: str) -> str:
        return "I would rather not say." if UNPARSABLE_MARK in prompt.lower() else answer(prompt)

    return reply


EXPERT_REPLIES = {
    "You check whether what a person says in a conversation fits statements about them": _guarded(_apc),
    "You are a content moderator": _guarded(_toxicity),
    "You are a personality psychologist": _guarded(_portrayal),
    "You read a conversation whose speaker names are hidden, and the profiles of the people in it": _guarded(
        _attribution
    ),
    "You compare two conversations between the same people": _guarded(_quality),
}
