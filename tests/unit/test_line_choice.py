"""A turn's candidate lines: while a speaker has not drawn on their own persona, the line that
does is kept, even where the learned critic would rather keep an echo of the partner's topic."""

from __future__ import annotations

import asyncio

import pytest

from factory.critics import line_choice
from factory.critics.base import JudgeContext
from factory.critics.line_choice import CriticsLineChooser, candidate_groundings
from factory.llm.embeddings import MiniLMEmbedder
from factory.recipes.critics import CriticsConfig
from factory.recipes.generation import GenerationConfig
from factory.records import DialogueRecord, GenerationMeta, PersonaProfile, Turn

DOGS = ["I love dogs.", "I have two golden retrievers.", "I live in Alabama."]
PIANO = ["I teach piano.", "I play in a jazz band on weekends.", "I grew up in Vienna."]
ECHO = "Jazz on weekends sounds wonderful, what do you like to play in the band?"
OWN = "My two golden retrievers would howl along, they love any music at all."


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    return MiniLMEmbedder()


def _record() -> DialogueRecord:
    speakers = [
        PersonaProfile(id="dogs", kind="statements", statements=DOGS),
        PersonaProfile(id="piano", kind="statements", statements=PIANO),
    ]
    return DialogueRecord(
        id="d", recipe="r", speakers=speakers, turns=[], generation=GenerationMeta(model="m", prompt_hash="", seed=0)
    )


def _turns(*lines: tuple[str, str]) -> list[Turn]:
    return [Turn(speaker=who, text=text) for who, text in lines]


def test_only_a_line_on_the_speakers_own_persona_brings_them_to_the_threshold(minilm):
    record = _record()
    so_far = _turns(("piano", "I just came from my jazz band's rehearsal, we play every weekend."))
    candidates = _turns(("dogs", ECHO), ("dogs", OWN))
    assert [g >= 0.05 for g in candidate_groundings(record, so_far, candidates, minilm)[0]] == [False, True]
    # once two of their lines drew on it, any line keeps them there
    grounded = [*so_far, *_turns(("dogs", "I love dogs, I have two golden retrievers."), ("piano", "Cute!"))]
    grounded += _turns(("dogs", "Alabama summers are hot for my dogs."), ("piano", "I bet."))
    assert [g >= 0.05 for g in candidate_groundings(record, grounded, candidates, minilm)[0]] == [True, True]


def test_the_chooser_keeps_the_grounded_line_over_the_learned_critics_favourite(minilm, monkeypatch):
    critics = CriticsConfig.model_validate({"learned": {"enabled": True}, "grounding": {"enabled": True}})
    context = JudgeContext(None, GenerationConfig(min_turns=2, max_turns=8), embedder=minilm)
    chooser = CriticsLineChooser(critics, context)
    # the learned critic prefers the echo, strongly; grounding alone would tie the summed ranks
    monkeypatch.setattr(chooser, "_scores", lambda record, turns, kept, margins: [[0.9, 0.1][: len(kept)]])
    monkeypatch.setattr(line_choice, "heuristic_verdict", lambda *a, **k: type("V", (), {"score": 1.0})())
    so_far = _turns(("piano", "I just came from my jazz band's rehearsal, we play every weekend."))
    chosen = asyncio.run(chooser(_record(), so_far, _turns(("dogs", ECHO), ("dogs", OWN))))
    assert chosen == 1
