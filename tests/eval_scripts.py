"""Scripted parties of a model evaluation: two "models" under test (one that stays in character,
one that drifts into its partner's facts), and a judge endpoint that is also the user simulator.

The personas of these tests have four statements with the same openings ("I work as a ...", "I
live in ...", "My pet is a ...", "On weekends I ..."), so a judge can tell, from the prompt
alone, a statement borne out (said word for word) from one contradicted (the same opening, told
otherwise). An MBTI persona that stays in character says one phrase per letter of its type; the
portrayal judge reads the type from those phrases, and guesses ``GUESS`` where there are none.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tests.openai_server import ScriptedReply

OPENINGS = ("I work as a", "I live in", "My pet is a", "On weekends I")
JOBS = ["nurse", "welder", "baker", "pilot", "chemist", "tailor", "farmer", "jeweller", "plumber", "sculptor"]
CITIES = ["Oslo", "Lima", "Perth", "Quito", "Accra", "Hanoi", "Porto", "Cusco", "Turin", "Bergen"]
PETS = ["parrot", "beagle", "tortoise", "ferret", "goldfish", "hamster", "iguana", "poodle", "rabbit", "canary"]
HOBBIES = ["climb", "knit", "surf", "paint", "fish", "sing", "cycle", "garden", "hike", "bake"]
TYPES = ["INFP", "ISFP", "INTP", "ISTP", "INFJ", "ISFJ", "INTJ", "ENFP", "ENTP", "ESFP"]
PHRASES = {
    "E": "I love a crowd",
    "I": "I recharge alone",
    "S": "I trust the facts",
    "N": "I follow hunches",
    "T": "I decide by logic",
    "F": "I decide by heart",
    "J": "I like a plan",
    "P": "I keep options open",
}
GUESS = "ESTJ"  # the portrayal judge's reading of lines that show no type


def pool_rows() -> list[dict[str, Any]]:
    return [
        {
            "bio": f"Persona number {i}.",
            "statements": [
                f"I work as a {JOBS[i]}.",
                f"I live in {CITIES[i]}.",
                f"My pet is a {PETS[i]}.",
                f"On weekends I {HOBBIES[i]}.",
            ],
            "type": TYPES[i],
        }
        for i in range(len(TYPES))
    ]


def _who_you_are(system: str) -> list[str]:
    return re.findall(r"^- (.*)$", system.split("Who you are:", 1)[1], re.M)


def in_character(request: dict[str, Any]) -> str:
    """Says its next own statement, and shows its MBTI type."""
    messages = request["messages"]
    statements = _who_you_are(messages[0]["content"])
    said = sum(message["role"] == "assistant" for message in messages)
    kind = re.search(r"Your MBTI type is ([A-Z]{4})", messages[0]["content"])
    shown = f" {', '.join(PHRASES[letter] for letter in kind.group(1))}." if kind else ""
    return statements[said % len(statements)] + shown


def drifting(request: dict[str, Any]) -> str:
    """Takes the partner's facts for its own."""
    return f"Me too! {request['messages'][-1]['content']}"


def _sentences(text: str) -> list[str]:
    return [part.strip().lower() for part in re.split(r"[.!?\n]", text) if part.strip()]


def _relation(statement: str, said: list[str]) -> str:
    wanted = statement.rstrip(".").lower()
    if wanted in said:
        return "entailment"
    opening = next((o.lower() for o in OPENINGS if wanted.startswith(o.lower())), None)
    if opening and any(sentence.startswith(opening) for sentence in said):
        return "contradiction"
    return "neutral"


def _apc(prompt: str) -> str:
    statements = re.findall(r"^\d+\. (.*)$", prompt.split("What the person says", 1)[0], re.M)
    said = _sentences(prompt.split("What the person says in the conversation:", 1)[1])
    relations = [_relation(statement, said) for statement in statements]
    return json.dumps({"judgements": [{"relevant": r != "neutral", "relation": r} for r in relations]})


def _profiles(prompt: str) -> dict[str, list[str]]:
    profiles: dict[str, list[str]] = {}
    for label, block in re.findall(r"^(User \d) Profile:\n((?:- .*\n?)*)", prompt, re.M):
        profiles[label] = [line[2:] for line in block.splitlines() if line.startswith("- ")]
    return profiles


def _faithfulness(prompt: str) -> str:
    profiles = _profiles(prompt)
    for label, statements in profiles.items():
        said = _sentences(" ".join(re.findall(rf"^{label}: (.*)$", prompt, re.M)))
        if any(_relation(statement, said) == "contradiction" for statement in statements):
            return json.dumps(
                {"reason": f"{label} tells their own facts otherwise", "speaker": label, "contradiction": True}
            )
    return json.dumps({"reason": "everyone keeps to their own facts", "speaker": "none", "contradiction": False})


def _attribution(prompt: str) -> str:
    profiles = _profiles(prompt)
    guesses = []
    for text in re.findall(r"^Turn \d+: (.*)$", prompt, re.M):
        said = _sentences(text)
        owner = next(
            (
                label
                for label, statements in profiles.items()
                if any(_relation(s, said) == "entailment" for s in statements)
            ),
            "User 1",
        )
        guesses.append(owner)
    return json.dumps({"speakers": guesses})


def _portrayal(prompt: str) -> str:
    index = re.search(r"what (User \d) says", prompt).group(1)
    said = " ".join(re.findall(rf"^{index}: (.*)$", prompt, re.M))
    letters = []
    for first, second, guess in zip("ESTJ", "INFP", GUESS):
        letters.append(first if PHRASES[first] in said else (second if PHRASES[second] in said else guess))
    return json.dumps({"reason": "from the phrases", "estimate": "".join(letters)})


def _simulator(messages: list[dict[str, str]]) -> str:
    """Tells its own statements one at a time (its profile's first line is the bio)."""
    profile = messages[0]["content"].split("your profile is: \n", 1)[1].split("\n You can say", 1)[0]
    statements = profile.splitlines()[1:]
    said = sum(message["role"] == "assistant" for message in messages)
    return statements[said % len(statements)]


def judge_and_simulator(request: dict[str, Any]) -> str | ScriptedReply:
    messages = request["messages"]
    system, prompt = messages[0]["content"], messages[-1]["content"]
    if system.startswith("You are engaging in a conversation"):
        return _simulator(messages)
    for start, answer in (
        ("You check whether what a person says", _apc),
        ("You are a careful annotator", _faithfulness),
        ("You read a conversation whose speaker names are hidden", _attribution),
        ("You are a personality psychologist", _portrayal),
    ):
        if system.startswith(start):
            return answer(prompt)
    return ScriptedReply(status=400, content=f"unexpected prompt: {system[:60]}")
