"""The learned critic's parts that need no model: the corruptions it learns from, its features'
surface checks, the split of the data, and the folder it is kept in."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest

from factory.critics.learned.corruptions import CORRUPTIONS, Conversation, Materials, corrupted
from factory.critics.learned.features import FEATURES, _surface
from factory.critics.learned.model import SHIPPED, CriticFolderError, load_critic, part_of
from factory.critics.learned.train import frames_of
from factory.records import DialogueRecord, GenerationMeta, PersonaProfile, Turn, Verdict

TALK = Conversation(
    [["I am a nurse.", "I have two dogs."], ["I play the violin.", "I live in Ohio."]],
    [
        (0, "Hi there! How was your day at the hospital today?"),
        (1, "Long, but I practised the violin for an hour after work."),
        (0, "That sounds lovely. My two dogs would howl if I played anything."),
        (1, "Ha! Mine is a quiet house in Ohio, nobody to howl at me."),
        (0, "Do you play in an orchestra or only for yourself at home?"),
        (1, "Only for myself, though I would love to join one some day."),
    ],
)
DONOR = Conversation([["I am a pilot."], ["I hate cheese."]], [(0, "Hello."), (1, "Hi.")])


def test_each_corruption_breaks_its_own_thing_and_keeps_the_rest():
    rng = random.Random(3)
    materials = Materials(DONOR, ["Here is your next message:"])
    made = {name: CORRUPTIONS[name](TALK, materials, rng) for name in CORRUPTIONS}
    assert all(bad is not None and bad != TALK for bad in made.values())
    swapped = made["persona_swapped"]
    assert swapped.lines == TALK.lines and any(p in DONOR.profiles for p in swapped.profiles)
    shuffled = made["turns_shuffled"]
    assert sorted(shuffled.lines) == sorted(TALK.lines) and shuffled.lines != TALK.lines
    truncated = made["turns_truncated"]
    cut = [b for a, b in zip(TALK.lines, truncated.lines) if a != b]
    assert cut and all(not text.endswith((".", "?", "!")) for _, text in cut)
    repeated = made["own_lines_repeated"]
    assert any(
        a != b and any(b[1].lower().endswith(c[1][1:].lower()) for c in TALK.lines if c[0] == b[0])
        for a, b in zip(TALK.lines, repeated.lines)
    )
    assert any("Here is your next message:" in text for _, text in made["boilerplate_inserted"].lines)
    exchanged = made["speakers_exchanged"]
    assert exchanged.profiles == TALK.profiles[::-1] and exchanged.lines == TALK.lines


def test_a_corruption_that_cannot_apply_is_left_out():
    one_liner = Conversation([["I am a nurse."], ["I am a nurse."]], [(0, "Hi."), (1, "Hey.")])
    made = dict(
        corrupted(one_liner, [DONOR], ["turns_truncated", "own_lines_repeated", "speakers_exchanged"], random.Random(0))
    )
    assert made == {}


def test_held_out_boilerplate_is_never_trained_on_and_parts_are_fixed_by_id():
    assert not set(frames_of("train")) & set(frames_of("test"))
    assert frames_of("test") == frames_of("calibrate")
    parts = [part_of(f"spc-r{n}") for n in range(2000)]
    assert [part_of(f"spc-r{n}") for n in range(2000)] == parts
    assert 0.6 < parts.count("train") / 2000 < 0.8 and 0.1 < parts.count("test") / 2000 < 0.2


def test_a_turn_cut_on_a_function_word_is_dangling_and_a_finished_one_is_not():
    dangling, short, _ = _surface(
        ["I went to the", "We talked about my", "Yes I do", "Nice to meet you", "Which one of?"]
    )
    assert dangling == pytest.approx(2 / 5)
    assert short == pytest.approx(2 / 5)  # "Yes I do" and "Which one of?" are three words


def test_a_missing_or_corrupt_critic_folder_is_one_line_naming_it(tmp_path):
    with pytest.raises(CriticFolderError, match="^" + re.escape(f"{tmp_path / 'nowhere'}: no trained critic here")):
        load_critic(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CriticFolderError, match=r"critic\.json is missing"):
        load_critic(empty)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "critic.json").write_text("{not json", encoding="utf-8")
    (broken / "weights.npz").write_bytes(b"garbage")
    with pytest.raises(CriticFolderError) as caught:
        load_critic(broken)
    assert str(caught.value).startswith(f"{broken}: the trained critic is corrupt") and "\n" not in str(caught.value)


def test_a_critic_trained_for_other_features_is_refused(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "weights.npz").write_bytes((SHIPPED / "weights.npz").read_bytes())
    meta = json.loads((SHIPPED / "critic.json").read_text(encoding="utf-8"))
    meta["features"] = meta["features"][:-1]
    (folder / "critic.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(CriticFolderError, match="another version of the features"):
        load_critic(folder)


def test_the_shipped_critic_loads_and_is_small():
    critic = load_critic(SHIPPED)
    assert critic.meta["features"] == list(FEATURES)
    assert sum(path.stat().st_size for path in SHIPPED.iterdir()) < 5_000_000
    assert 0 < critic.threshold < 1
    probabilities = critic.head.probabilities(np.zeros((2, len(FEATURES))))
    assert np.all((probabilities >= 0) & (probabilities <= 1))


def test_the_frechet_distance_is_zero_for_one_distribution_and_grows_with_a_shift():
    from factory.critics.reference import coverage, frechet_distance

    rng = np.random.default_rng(0)
    points = rng.normal(size=(400, 8))
    same = frechet_distance(points[:200], points[200:])
    shifted = frechet_distance(points[:200], points[200:] + 1.0)
    assert same < 0.5 < shifted and frechet_distance(points, points) == pytest.approx(0, abs=1e-6)
    unit = np.abs(points) / np.linalg.norm(points, axis=1, keepdims=True)  # one orthant of the sphere
    assert coverage(unit[:50], unit[50:], 3) > 0.5
    assert coverage(-unit[:50], unit[50:], 3) == 0.0  # the opposite orthant: nowhere near
    assert coverage(unit[50:], unit[50:], 3) == 1.0


def _judged(id_: str, learned: float, faithful: tuple[bool, str | None] | None) -> DialogueRecord:
    verdicts = [Verdict(critic="learned", passed=learned >= 0.45, score=learned, reason="")]
    if faithful is not None:
        verdicts.append(Verdict(critic="faithfulness", passed=faithful[0], reason="", decided_by=faithful[1]))
    speaker = PersonaProfile(id="p", kind="statements", statements=["I sing."])
    return DialogueRecord(
        id=id_, recipe="t", speakers=[speaker], turns=[Turn(speaker="p", text="Hello there.")],
        generation=GenerationMeta(model="m", prompt_hash="", seed=0), verdicts=verdicts,
        accepted=all(v.passed for v in verdicts),
    )  # fmt: skip


def test_the_card_says_what_the_uncertain_band_saved_and_how_often_the_audit_agreed():
    from factory.dataset.card_sections import band_lines
    from factory.dataset.stats import StatsAccumulator

    accumulator = StatsAccumulator(band=(0.45, 0.8))
    accumulator.add(
        [
            _judged("below", 0.2, None),
            _judged("in", 0.6, (True, None)),
            _judged("sure-1", 0.9, (True, "learned")),
            _judged("sure-2", 0.95, (True, "learned")),
            _judged("audited", 0.85, (False, None)),
        ]
    )
    stats = accumulator.result()
    assert stats.band == {"band": [0.45, 0.8], "in_band": 1, "above": 3, "audited": 1, "agreed": 0, "calls_saved": 2}
    (line, _) = band_lines(stats)
    assert "1 dialogues scored in it" in line and "saved 2 LLM critic verdicts" in line and "passed 0 of 1" in line
    assert "turn_sample" not in stats.as_dict() and stats.turn_sample == ["Hello there."] * 3  # the accepted ones'
