"""The Generator-Critic loop on Ray against the scripted endpoint, with every expert on: the
cascade, best-of-N per cast, few-shot examples fed back between rounds, run-wide deduplication,
and a card that reports rounds, experts and persona cells from the data."""

from __future__ import annotations

import json
from collections import defaultdict

import datasets
import pytest
import yaml

from factory.recipes import apply_overrides, load_recipe
from factory.run import run_recipe
from tests.recipes import small_recipe, write_recipe

pytestmark = [pytest.mark.ray, pytest.mark.slow]

EXPERTS = ["heuristic", "faithfulness", "apc", "toxicity", "portrayal", "attribution"]


def test_rounds_candidates_cascade_quality_and_dedup(tmp_path, scripted_server):
    recipe = small_recipe(
        dialogues=8,
        generation={"min_turns": 4, "max_turns": 8, "few_shot": 1, "chunk_size": 4, "candidates": 2, "rounds": 2},
        critics={
            "order": EXPERTS,
            "apc": {"enabled": True},
            "toxicity": {"enabled": True},
            # the scripted psychologist reads everyone as INTJ / all 4s: accept any reading here
            "portrayal": {"enabled": True, "mbti_tolerance": 4, "big_five_tolerance": 6},
            "attribution": {"enabled": True},
            "quality": {"enabled": True},
            "dedup": {"enabled": True},
        },
    )
    path = write_recipe(tmp_path, recipe)
    out = tmp_path / "out"
    run_recipe(apply_overrides(load_recipe(path), base_url=scripted_server.base_url), out, show_progress=False)

    rows = [row for split in datasets.load_dataset(str(out)).values() for row in split]
    assert len(rows) == 16  # 8 casts x 2 candidates

    for row in rows:
        critics = [v["critic"] for v in row["verdicts"]]
        failed = [v["critic"] for v in row["verdicts"] if not v["passed"]]
        if failed and failed[0] in ("format", "heuristic", "faithfulness"):
            # a hard gate stops the cascade right there
            assert critics[-1] == failed[0] and len(failed) == 1
        else:
            assert critics[:7] == ["format", *EXPERTS]
        assert row["accepted"] == (not failed)

    # best of N: per cast, exactly one candidate that passed every expert wins quality
    by_cast = defaultdict(list)
    for row in rows:
        by_cast[row["generation"]["cast_id"]].append(row)
    for _cast, candidates in by_cast.items():
        assert sorted(c["generation"]["candidate"] for c in candidates) == [0, 1]
        quality = [v for c in candidates for v in c["verdicts"] if v["critic"] == "quality"]
        contenders = [
            c
            for c in candidates
            if [v["critic"] for v in c["verdicts"]][:7] == ["format", *EXPERTS]
            and all(v["passed"] for v in c["verdicts"][:7])
        ]
        assert len(quality) == len(contenders)
        if contenders:
            assert sum(v["passed"] for v in quality) == 1

    # the loop: round 1 was shown round 0's best accepted dialogues as its examples
    manifest = json.loads((out / "manifest.json").read_text())
    rounds = manifest["rounds"]
    assert [(r["round"], r["casts"], r["dialogues"]) for r in rounds] == [(0, 4, 8), (1, 4, 8)]
    round0_accepted = {
        row["id"]
        for row in rows
        if row["generation"]["iteration"] == 0 and all(v["passed"] for v in row["verdicts"] if v["critic"] != "dedup")
    }
    assert round0_accepted, "the script should let some round-0 dialogue through"
    round1 = [row for row in rows if row["generation"]["iteration"] == 1]
    assert all(
        row["generation"]["few_shot_ids"] and set(row["generation"]["few_shot_ids"]) <= round0_accepted
        for row in round1
    )
    assert set(rounds[1]["few_shot_from"]) <= round0_accepted
    assert all(i.startswith("spc-") for i in rounds[0]["few_shot_from"])
    fed = next(row for row in rows if row["id"] == round1[0]["generation"]["few_shot_ids"][0])
    prompts = [
        r["messages"][-1]["content"]
        for r in scripted_server.requests
        if r["messages"][0]["content"].startswith("You write natural")
    ]
    assert any(f"Example 1:\nUser 1 Profile:\n- {fed['speakers'][0]['statements'][0]}" in p for p in prompts)

    # dedup: the scripted good dialogue is the same text every time, so one copy survives
    accepted = [row for row in rows if row["accepted"]]
    assert len(accepted) == 1
    duplicates = [v for row in rows for v in row["verdicts"] if v["critic"] == "dedup" and not v["passed"]]
    assert duplicates and all(f"near-duplicate of {accepted[0]['id']}" in v["reason"] for v in duplicates)

    # the card: rounds, experts, persona cells, tokens per accepted dialogue
    text = (out / "README.md").read_text()
    meta = yaml.safe_load(text.split("---")[1])["persona_factory"]
    assert meta["rounds"] == rounds and "## Generator-Critic rounds" in text
    stats = meta["stats"]
    judged = {c["critic"]: c["judged"] for c in stats["critics"]}
    assert set(judged) == {"format", *EXPERTS, "quality", "dedup"}
    assert judged["format"] == 16 and judged["heuristic"] < 16  # the cascade spared later experts
    total = sum(
        row["generation"]["usage"]["prompt_tokens"]
        + row["generation"]["usage"]["completion_tokens"]
        + sum(v["tokens"] for v in row["verdicts"])
        for row in rows
    )
    assert stats["total_tokens"] == total and stats["tokens_per_accepted"] == total
    speakers_by_kind = defaultdict(lambda: [0, 0])
    for row in rows:
        for speaker in row["speakers"]:
            speakers_by_kind[speaker["kind"]][0] += 1
            speakers_by_kind[speaker["kind"]][1] += row["accepted"]
    cells = {c["cell"]: (c["speakers"], c["accepted"]) for c in stats["cells"] if c["dimension"] == "kind"}
    assert cells == {kind: tuple(counts) for kind, counts in speakers_by_kind.items()}
    assert "## Pass rates by persona cell" in text
