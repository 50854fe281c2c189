"""Critics against reviewers' labels, worked out by hand: precision, recall, AUROC, Wilson
intervals, weights of a stratified sample, and the threshold proposed for a target precision."""

from __future__ import annotations

import pytest

from factory.calibrate import calibrate, wilson, with_calibration
from factory.dataset.review_section import ReviewState, pick_samples, read_state, write_state

# id: (apc score, apc passed, accepted, labelled in character)
ROWS = {
    "a": (0.9, True, True, True),
    "b": (0.8, True, True, True),
    "c": (0.7, True, True, False),
    "d": (0.65, True, True, True),
    "e": (0.5, False, False, True),
    "f": (0.4, False, False, False),
    "g": (0.3, False, False, False),
    "h": (0.2, False, False, False),
}


def rows() -> list[dict]:
    return [
        {
            "id": i,
            "accepted": accepted,
            "verdicts": [
                {"critic": "format", "passed": True, "score": 1.0},
                {"critic": "heuristic", "passed": True, "score": None},
                {"critic": "apc", "passed": passed, "score": score},
            ],
        }
        for i, (score, passed, accepted, _) in ROWS.items()
    ]


def labelled_state() -> ReviewState:
    state = ReviewState(samples={"accepted": list("abcd"), "rejected": list("efgh")})
    state.labels = [
        {"id": i, "reviewer": "ana", "in_character": truth, "quality": 3, "flags": [], "note": "", "date": "-"}
        for i, (*_, truth) in ROWS.items()
    ]
    return state


def test_wilson_interval_matches_the_hand_worked_one():
    # 3 of 4: centre (0.75 + z²/8) / (1 + z²/4) = 0.6275, half-width 0.3269
    assert wilson(3, 4) == pytest.approx((0.3006, 0.9544), abs=1e-4)
    assert wilson(2, 2) == pytest.approx((0.3424, 1.0), abs=1e-4)


def test_precision_recall_auroc_and_threshold_by_hand():
    result = calibrate(labelled_state(), rows(), "v1.0.0", target_precision=0.9)
    apc = next(c for c in result.critics if c.critic == "apc")
    # passed a, b, c, d: three of them in character; in character a, b, d, e: three of them passed
    assert (apc.labelled, apc.passed) == (8, 4)
    assert (apc.precision.value, apc.precision.low, apc.precision.high) == pytest.approx(
        (0.75, 0.3006, 0.9544), abs=1e-4
    )
    assert (apc.recall.value, apc.recall.low, apc.recall.high) == pytest.approx((0.75, 0.3006, 0.9544), abs=1e-4)
    # positives 0.9 0.8 0.65 0.5 against negatives 0.7 0.4 0.3 0.2: 4 + 4 + 3 + 3 of 16 pairs
    assert apc.auroc == pytest.approx(14 / 16)
    # cuts from below: 0.5 keeps 4 of 5 in character, 0.65 3 of 4, 0.7 2 of 3, 0.8 2 of 2
    assert apc.threshold == 0.8 and apc.threshold_precision is not None
    assert apc.threshold_precision.value == 1.0 and apc.threshold_precision.low == pytest.approx(0.3424, abs=1e-4)
    heuristic = next(c for c in result.critics if c.critic == "heuristic")
    assert heuristic.auroc is None and heuristic.threshold is None  # no scores, no threshold setting
    assert [c.critic for c in result.critics] == [
        "heuristic",
        "apc",
    ]  # the generator's own format check is not a critic
    assert result.accepted_in_character.value == 0.75 and result.labels == 8


def test_an_unreachable_target_is_said_not_guessed():
    result = calibrate(labelled_state(), rows(), "v1.0.0", target_precision=1.0)
    apc = next(c for c in result.critics if c.critic == "apc")
    assert apc.threshold == 0.8  # 2 of 2 reach 1.0
    state = labelled_state()
    state.labels = [{**label, "in_character": label["id"] in "ce"} for label in state.labels]
    apc = next(c for c in calibrate(state, rows(), "v1.0.0", 0.9).critics if c.critic == "apc")
    assert apc.threshold is None and "no threshold reaches precision 0.9" in apc.threshold_note


def test_a_stratified_sample_weights_each_row_by_its_stratum():
    state = labelled_state()
    state.strata = [
        {"split": "accepted", "cell": "mbti=INTJ", "size": 10, "ids": ["a", "b"]},
        {"split": "accepted", "cell": "mbti=ENFP", "size": 2, "ids": ["c", "d"]},
    ]
    result = calibrate(state, rows(), "v1.0.0", 0.9)
    # a, b stand for 5 rows each, c, d for one: in character 5 (a) + 5 (b) + 1 (d) of 12
    share = result.accepted_in_character
    assert share.value == pytest.approx(11 / 12, abs=1e-4)
    # effective size n = 12² / (25 + 25 + 1 + 1) = 2.7692; with z² = 3.8415 the centre is
    # (0.9167 + z²/2n) / (1 + z²/n) = 1.6103 / 2.3872 = 0.6745, the half-width
    # z / (1 + z²/n) × √(p(1-p)/n + z²/4n²) = 0.8210 × √(0.02759 + 0.12523) = 0.3210
    assert (share.low, share.high) == pytest.approx((0.3536, 0.9955), abs=1e-3)


def test_two_reviewers_who_disagree_count_as_not_in_character():
    state = labelled_state()
    state.labels.append({**state.labels[0], "reviewer": "ben", "in_character": False})
    apc = next(c for c in calibrate(state, rows(), "v1.0.0", 0.9).critics if c.critic == "apc")
    assert apc.precision.value == 0.5  # a is now doubted: b and d of a, b, c, d


def test_the_sample_is_spread_over_cells_in_proportion_and_recorded():
    cells = {f"x{i}": "mbti=INTJ" for i in range(6)} | {"y0": "mbti=ENFP", "y1": "mbti=ENFP"}
    samples, strata = pick_samples({"accepted": cells}, seed=4, per_split={"accepted": 4})
    by_cell = {s["cell"]: s for s in strata}
    assert len(by_cell["mbti=INTJ"]["ids"]) == 3 and len(by_cell["mbti=ENFP"]["ids"]) == 1  # 4 × 6/8 and 4 × 2/8
    assert by_cell["mbti=INTJ"]["size"] == 6 and by_cell["mbti=ENFP"]["size"] == 2
    assert sorted(samples["accepted"]) == sorted(i for s in strata for i in s["ids"])
    assert pick_samples({"accepted": cells}, seed=4, per_split={"accepted": 4}) == (samples, strata)  # the seed decides


def test_the_calibration_goes_into_the_trust_section_and_the_changes_once():
    card = "---\nlicense: mit\n---\n# Card\n\n## Changes since v1.0.0\n\nsome\n\n## Use\n\nload it\n"
    card = write_state(card, labelled_state())
    result = calibrate(labelled_state(), rows(), "v1.1.0", 0.9)
    once = with_calibration(card, result)
    twice = with_calibration(once, result)
    assert twice == once  # calibrating again replaces, never stacks
    body = once.split("\n---\n", 1)[1]
    assert body.index("## Changes since") < body.index("calibrated on") < body.index("## How far to trust")
    assert body.index("## How far to trust") < body.index("## Use") < body.index("## Review")
    assert "| apc | 8 | 4 | 0.75 [0.30, 0.95] | 0.75 [0.30, 0.95] | 0.88 | 0.8 (precision 1.00 [0.34, 1.00]) |" in body
    assert read_state(once).labels == labelled_state().labels  # the review state is kept


def test_proposed_thresholds_are_written_into_the_recipe(tmp_path):
    import yaml

    from factory.calibrate import write_thresholds

    result = calibrate(labelled_state(), rows(), "v1.0.0", target_precision=0.9)
    version_recipe = "name: r\ncritics:\n  apc:\n    enabled: true\n    threshold: 0.6\n"
    fresh = tmp_path / "next.yaml"
    assert write_thresholds(fresh, result, version_recipe) == ["critics.apc.threshold = 0.8"]
    assert yaml.safe_load(fresh.read_text())["critics"]["apc"] == {"enabled": True, "threshold": 0.8}
    mine = tmp_path / "mine.yaml"
    mine.write_text("# my recipe\nname: mine\n")
    write_thresholds(mine, result, version_recipe)  # an existing file is the one changed
    assert yaml.safe_load(mine.read_text()) == {"name": "mine", "critics": {"apc": {"threshold": 0.8}}}
    unreachable = calibrate(labelled_state(), rows(), "v1.0.0", target_precision=1.0)
    unreachable.critics = [c for c in unreachable.critics if c.critic != "apc"]
    untouched = tmp_path / "untouched.yaml"
    untouched.write_text("# kept\nname: u\n")
    assert write_thresholds(untouched, unreachable, version_recipe) == []
    assert untouched.read_text() == "# kept\nname: u\n"  # nothing to change: comments and all stay
