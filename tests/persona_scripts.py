"""The scripted endpoint's behaviour when persona sources call it.

Replies are functions of the prompt (and, for retries, of how often the same prompt was seen), so
a build's outcome is known in advance whatever order the requests arrive in.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections import Counter
from typing import Any

from tests.openai_server import ScriptedReply
from tests.scripts import DialogueScript

# Characters of these types are invalid on the first attempt only (regenerated), or always (dropped).
FLAKY_TYPES = {"INTP"}
BROKEN_TYPES = {"ESTP"}

NEW_QUERIES = ["What is your favourite season of the year?", "What do you do on a quiet weekend?"]
CONTRADICTION_WORD = "never"
STOPWORDS = {
    "i",
    "a",
    "an",
    "the",
    "and",
    "to",
    "of",
    "my",
    "in",
    "is",
    "am",
    "have",
    "for",
    "on",
    "with",
    "it",
    "me",
    "at",
    "like",
    "love",
    "that",
    "are",
    "be",
    "was",
    "but",
    "do",
    "so",
    "as",
    "from",
    "this",
    "all",
    "who",
    "when",
    "i'm",
    "not",
    "very",
    "just",
    "also",
    "our",
    "or",
    "one",
    "two",
    "get",
}
VERBS = ["collect", "repair", "paint", "grow", "study", "photograph", "sketch", "restore", "cook", "sell"]
NOUNS = [
    "lighthouses",
    "violins",
    "orchids",
    "meteorites",
    "kayaks",
    "teapots",
    "glaciers",
    "tapestries",
    "fossils",
    "lanterns",
    "accordions",
    "bonsai",
    "typewriters",
    "compasses",
    "marionettes",
    "quilts",
]


def _digest(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16)


def _character(prompt: str, attempt: int) -> str:
    code = re.search(r"MBTI type is (\w{4})", prompt).group(1)
    hint = re.search(r"is a (\S+), about (\d+) years old, from (.+?)\.\n", prompt)
    gender, age, region = hint.group(1), int(hint.group(2)), hint.group(3)
    examples = int(re.search(r"exactly (\d+) behaviour_examples", prompt).group(1))
    broken = code in BROKEN_TYPES or (code in FLAKY_TYPES and attempt == 0)
    character = {
        "name": f"Alex {code.title()}",
        "gender": gender,
        "age": age,
        "region": region,
        "tone": "dry, precise and a little teasing",
        "job": f"I work as a cartographer in {region}.",
        "personality": f"I am a typical {code}: I think before I speak.",
        "advantages_and_disadvantages": "My patience is a strength, but I can be stubborn.",
        "hobby": "I restore old bicycles on weekends.",
        "growth_experience": "I grew up on a farm and moved to the city at eighteen.",
        "family_relationship": "I call my sister every Sunday.",
        "working_conditions": "My office is quiet and I mostly work alone.",
        "social_relationship": "I have a few close friends from university.",
        "emotional_state": "I feel calm most days, if a little tired.",
        "living_conditions": "I live in a small flat with a balcony full of herbs.",
        "recent_worry": "I worry that my landlord will sell the building.",
        "behaviour_examples": [
            f'When the other party praises you, you say "Thanks, though it was mostly luck ({n})."'
            for n in range(examples)
        ],
    }
    if broken:
        character["behaviour_examples"] = ["I just smile." for _ in range(examples)]
    return json.dumps(character)


def _content_word(lines: list[str]) -> str:
    words = Counter(
        word
        for line in lines
        for word in re.findall(r"[a-z']+", line.lower())
        if word not in STOPWORDS and len(word) > 3
    )
    return words.most_common(1)[0][0] if words else "life"


def _expansion(prompt: str) -> str:
    if prompt.startswith("Each of these persona statements"):
        listed = [line[2:] for line in prompt.splitlines() if line.startswith("- ")]
        return json.dumps({"query": f"What about {_content_word(listed)}?"})
    if prompt.startswith("Here are questions"):
        existing = [line[2:] for line in prompt.splitlines() if line.startswith("- ")]
        return json.dumps({"queries": [*NEW_QUERIES, existing[0]]})
    if prompt.startswith("Question:"):
        query = prompt.splitlines()[0][len("Question: ") :]
        examples = [line[2:] for line in prompt.splitlines() if line.startswith("- ") and line != "- (none yet)"]
        seed = _digest(query)
        statements = [
            f"I {VERBS[(seed + n) % len(VERBS)]} {NOUNS[(seed // 7 + 3 * n) % len(NOUNS)]} "
            f"and {NOUNS[(seed // 11 + 5 * n + 1) % len(NOUNS)]} as a hobby"
            for n in range(3)
        ]
        statements.append(f"I have {CONTRADICTION_WORD} left my home town")
        if examples:
            statements.append(examples[0])  # a near-duplicate the factory must drop
        return json.dumps({"statements": statements})
    if prompt.startswith("One person says all of these"):
        candidate = prompt.split("The same person now also says: ", 1)[1].split("\n", 1)[0]
        contradicts = CONTRADICTION_WORD in candidate.split()
        return json.dumps({"reason": "scripted", "contradicts": contradicts})
    return ScriptedReply(status=400, content=f"unexpected expansion prompt: {prompt[:60]}")


class PersonaScript:
    """Persona building and dialogue generation. ``references`` maps a conversation's first user
    turn to the profile the implicit extractor should write for it (tests decide whether that is
    the conversation's own reference or another's)."""

    def __init__(self, references: dict[str, str] | None = None) -> None:
        self.references = references or {}
        self.extractor_prompts: list[str] = []
        self._seen: Counter[str] = Counter()
        self._dialogues = DialogueScript()
        self._lock = threading.Lock()

    def _attempt(self, prompt: str) -> int:
        with self._lock:
            attempt = self._seen[prompt]
            self._seen[prompt] += 1
            return attempt

    def _implicit(self, prompt: str) -> str:
        with self._lock:
            self.extractor_prompts.append(prompt)
        first_user = next(line[len("User: ") :] for line in prompt.splitlines() if line.startswith("User: "))
        reference = next((text for key, text in self.references.items() if first_user.startswith(key[:40])), "")
        objective, _, subjective = reference.partition("\n\n")
        return json.dumps(
            {
                "age": "about 30",
                "gender": "unknown",
                "occupation": "analyst",
                "education": "university",
                "location": "unknown",
                "goals": ["get information"],
                "big_five": {
                    "openness": 6,
                    "conscientiousness": 6,
                    "extraversion": 2,
                    "agreeableness": 4,
                    "neuroticism": 3,
                },
                "speaking_style": subjective[:300] or "plain",
                "tone": "neutral",
                "statements": [sentence[:300] for sentence in re.split(r"(?<=\.)\s+", objective) if sentence][:6]
                or ["I ask questions."],
            }
        )

    def __call__(self, request: dict[str, Any]) -> str | ScriptedReply:
        system, prompt = request["messages"][0]["content"], request["messages"][-1]["content"]
        if system.startswith("You create realistic"):
            return _character(prompt, self._attempt(prompt))
        if system.startswith("You are an analyst"):
            return self._implicit(prompt)
        if system.startswith("You help build a bank"):
            return _expansion(prompt)
        return self._dialogues(request)
