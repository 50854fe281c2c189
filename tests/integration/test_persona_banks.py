"""Persona banks against the scripted endpoint: each generative source, the shipped data as input,
cards whose coverage matches the data, and a bank seeding a dialogue run by revision."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import datasets
import pytest
import yaml

from factory.bank import build_bank
from factory.dataset.bank_card import compute_coverage
from factory.dataset.folder import DatasetFolder
from factory.errors import RecipeError
from factory.personas.conversations import load_conversations
from factory.personas.implicit import reference_parts
from factory.personas.mbti_bank import BEHAVIOUR
from factory.recipes import PersonaBankRecipe, apply_overrides, load_recipe, parse_recipe
from factory.run import run_recipe
from factory.traits import MBTI_TYPES
from tests.openai_server import ScriptedOpenAIServer
from tests.persona_scripts import NEW_QUERIES, PersonaScript
from tests.recipes import small_recipe, write_recipe

USP = Path(__file__).resolve().parents[2] / "factory" / "data" / "usp"


def bank_recipe(server: ScriptedOpenAIServer, *sources: dict, name: str = "bank") -> PersonaBankRecipe:
    return parse_recipe(
        {
            "name": name,
            "seed": 4,
            "sources": list(sources),
            "llm": {"base_url": server.base_url, "max_retries": 1, "backoff_base": 0.05},
            "embeddings": {"backend": "endpoint", "model": "bag-of-words"},
        },
        model=PersonaBankRecipe,
    )


def card_of(folder: Path) -> tuple[dict, str]:
    text = (folder / "README.md").read_text(encoding="utf-8")
    _, metadata, body = text.split("---", 2)
    return yaml.safe_load(metadata), body


def loaded_rows(folder: Path) -> list[dict]:
    return list(datasets.load_dataset(str(folder), split="personas"))


def assert_card_matches_data(folder: Path) -> dict:
    """The card's coverage (YAML and tables) is what the loaded data says."""
    metadata, body = card_of(folder)
    rows = loaded_rows(folder)
    coverage = compute_coverage(rows).as_dict()
    assert metadata["persona_factory"]["coverage"] == coverage
    assert f"{len(rows)} personas." in body
    for kind, count in coverage["by_kind"].items():
        assert f"| {kind} | {count} |" in body
    for code, count in coverage["by_mbti"].items():
        assert f"| {code} | {count} |" in body
    return metadata


def test_mbti_bank_regenerates_invalid_characters_and_drops_hopeless_ones(tmp_path):
    script = PersonaScript()
    with ScriptedOpenAIServer(script) as server:
        recipe = bank_recipe(
            server, {"source": "mbti_bank", "types": ["INTJ", "intp", "ESTP", "ENFP"], "per_type": 2, "max_attempts": 2}
        )
        result = build_bank(recipe, tmp_path / "bank", show_progress=False)
        calls = server.chat_calls

    # INTJ and ENFP pass at once (2 + 2 calls), INTP on its second attempt (4), ESTP never (4).
    assert calls == 12
    rows = loaded_rows(tmp_path / "bank")
    assert sorted(row["mbti"] for row in rows) == ["ENFP", "ENFP", "INTJ", "INTJ", "INTP", "INTP"]
    for row in rows:
        assert len(row["behaviour_examples"]) == 3 and all(BEHAVIOUR.match(e) for e in row["behaviour_examples"])
        assert len(row["statements"]) == 11 and row["speaking_style"] and row["demographics"]["age"]
        assert {a["name"] for a in row["attributes"]} >= {"hobby", "recent_worry", "family_relationship"}
    assert [d.item.split("-")[1] for d in result.dropped] == ["estp", "estp"]
    for dropped in result.dropped:
        assert "attempt 1: behaviour_examples" in dropped.reason and "attempt 2: behaviour_examples" in dropped.reason
    manifest = json.loads((tmp_path / "bank" / "manifest.json").read_text())
    assert [d["item"] for d in manifest["dropped"]] == [d.item for d in result.dropped]
    metadata = assert_card_matches_data(tmp_path / "bank")
    assert metadata["persona_factory"]["dropped"] == {"mbti_bank": 2}
    assert metadata["persona_factory"]["coverage"]["by_mbti"]["ESTP"] == 0


def _usp_references() -> tuple[dict[str, str], list[str]]:
    """Each distinct conversation's first user turn -> its reference profile, and the references."""
    references = {}
    for conversation in load_conversations(USP):
        if conversation.has_user_turn:
            references[conversation.turns[0][1]] = "\n\n".join(reference_parts(conversation.reference or ""))
    return references, sorted(set(references.values()))


@pytest.mark.parametrize("faithful", [True, False], ids=["own-reference", "swapped-references"])
def test_implicit_profiles_from_usp_chats_are_scored_against_the_hidden_references(tmp_path, faithful):
    references, distinct = _usp_references()
    assert len(references) == 2 and len(distinct) == 2
    if not faithful:  # each chat gets the other chat's profile: agreement must notice
        swap = {distinct[0]: distinct[1], distinct[1]: distinct[0]}
        references = {turn: swap[reference] for turn, reference in references.items()}
    script = PersonaScript(references)
    with ScriptedOpenAIServer(script) as server:
        result = build_bank(
            bank_recipe(server, {"source": "implicit", "path": str(USP)}), tmp_path / "bank", show_progress=False
        )

    # 11 lines: 3 distinct chats, each several times; one chat has no user turn (3 lines), the
    # other two were extracted once each and their 6 repeats skipped.
    assert len(script.extractor_prompts) == 2
    for conversation in load_conversations(USP):
        hidden = reference_parts(conversation.reference or "")[0][:80]
        assert all(hidden not in prompt for prompt in script.extractor_prompts)
    reasons = sorted(d.reason.split(" as ")[0] for d in result.dropped)
    assert reasons.count("no user turn to infer a profile from") == 3
    assert reasons.count("the same conversation") == 6 and len(reasons) == 9

    rows = loaded_rows(tmp_path / "bank")
    assert len(rows) == 2 and {row["kind"] for row in rows} == {"implicit"}
    for row in rows:
        assert row["big_five"]["openness"] == 6 and row["demographics"]["occupation"] == "analyst"
        assert row["demographics"]["age"] == 30 and row["demographics"]["gender"] is None  # "unknown" is not a value
        assert [a["value"] for a in row["attributes"] if a["name"] == "goal"] == ["get information"]

    agreement = result.manifest["reports"]["implicit_agreement"]
    assert agreement["conversations"] == 2 and agreement["chance_top1"] == 0.5
    expected_top1 = 1.0 if faithful else 0.0
    assert agreement["objective_top1"] == expected_top1 and agreement["subjective_top1"] == expected_top1
    assert (agreement["objective_own"] > agreement["objective_others"]) is faithful
    metadata, body = card_of(tmp_path / "bank")
    assert metadata["persona_factory"]["implicit_agreement"] == agreement
    assert (
        f"| objective facts | {agreement['objective_own']:.3f} | {agreement['objective_others']:.3f} | {expected_top1:.2f} |"
        in body
    )
    assert "MIT licence" in body and metadata["license"] == "mit"


def test_spc_expansion_composes_profiles_on_induced_and_bootstrapped_queries(tmp_path):
    script = PersonaScript()
    source = {
        "source": "spc_expansion",
        "seed_statements": 60,
        "clusters": 6,
        "new_queries": 3,
        "statements_per_query": 4,
        "profiles": 12,
        "statements_per_profile": 4,
    }
    with ScriptedOpenAIServer(script) as server:
        result = build_bank(bank_recipe(server, source), tmp_path / "bank", show_progress=False)
        embedded_texts = sum(len(request["input"]) for request in server.embedding_requests)

    stats = result.manifest["reports"]["spc_expansion"]
    assert stats["seed_statements"] == 60 and stats["clusters"] == 6
    assert stats["bootstrapped_queries"] == len(NEW_QUERIES) and stats["duplicate_queries"] == 1
    # every query with example statements got one of them back verbatim: all dropped as duplicates
    assert stats["duplicate_statements"] >= stats["induced_queries"]
    assert embedded_texts > 60

    rows = loaded_rows(tmp_path / "bank")
    assert len(rows) == stats["profiles"] > 0
    for row in rows:
        assert len(row["statements"]) == 4 and len(set(row["topics"])) == 4
    topics = {topic for row in rows for topic in row["topics"]}
    assert topics & set(NEW_QUERIES), "bootstrapped queries should be used"
    assert all(re.fullmatch(r"What about [a-z']+\?", t) or t in NEW_QUERIES for t in topics)
    metadata = assert_card_matches_data(tmp_path / "bank")
    assert metadata["persona_factory"]["coverage"]["with_topics"] == len(rows)
    assert metadata["license"] == "cc-by-4.0"


@pytest.mark.ray
@pytest.mark.slow
def test_a_bank_revision_seeds_a_dialogue_run_with_every_mbti_type(tmp_path, scripted_server):
    bank = tmp_path / "bank"
    first = parse_recipe(
        {
            "name": "types",
            "seed": 1,
            "sources": [{"source": "mbti", "count": 16}, {"source": "mbti", "count": 8, "types": ["INTJ"]}],
        },
        model=PersonaBankRecipe,
    )
    assert build_bank(first, bank, show_progress=False).version == "v1.0.0"
    v1_ids = {row["id"] for row in loaded_rows(bank)}
    second = first.model_copy(update={"seed": 2})
    assert build_bank(second, bank, show_progress=False).version == "v1.1.0"
    assert not v1_ids & {row["id"] for row in loaded_rows(bank)}

    recipe = small_recipe(
        dialogues=8,
        personas=[{"source": "bank", "path": str(bank), "revision": "v1.0.0"}],
        casting={"dialogues": 8, "strategy": "quota", "quota": [{"by": "mbti"}]},
    )
    path = write_recipe(tmp_path, recipe)
    result = run_recipe(
        apply_overrides(load_recipe(path), base_url=scripted_server.base_url), tmp_path / "out", show_progress=False
    )

    rows = [row for split in datasets.load_dataset(str(tmp_path / "out")).values() for row in split]
    speakers = [speaker for row in rows for speaker in row["speakers"]]
    assert {s["mbti"] for s in speakers} == set(MBTI_TYPES)
    assert {s["id"] for s in speakers} <= v1_ids
    commit = DatasetFolder(bank).resolve("v1.0.0")
    assert result.manifest["persona_banks"] == [
        {"path": "../bank", "revision": "v1.0.0", "commit": commit, "bank_version": "v1.0.0", "personas": 24}
    ]
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["persona_banks"][0]["commit"] == commit
    # nothing published names this machine: not its paths, not its host name
    import socket

    published = [(tmp_path / "out" / name).read_text() for name in ("README.md", "manifest.json")] + [
        json.dumps(rows, default=str)
    ]
    host = socket.gethostname()
    for text in published:
        assert str(tmp_path) not in text
        assert len(host) < 6 or host not in text  # a short host name could be any word's letters
    assert all(set(p) == {"step", "node_id"} for row in rows for p in row["generation"]["placements"])


POOL = [
    "A retired nurse who restores old bicycles. Loves jazz records.",  # split at once
    "A harbour pilot who keeps racing pigeons.",  # third person, then right
    "A glassblower who teaches evening classes.",  # third person, then invented: dropped
]
SPLITS = {
    "retired nurse": [["I am a retired nurse.", "I restore old bicycles.", "I love jazz records."]],
    "harbour pilot": [["She is a harbour pilot."], ["I am a harbour pilot.", "I keep racing pigeons."]],
    "glassblower": [["He blows glass for a living."], ["I am an astronaut on the moon."]],
}


class PoolSplitter:
    """The LLM's statements for each description, one reply per attempt in turn."""

    def __init__(self) -> None:
        self.asked: Counter[str] = Counter()

    def __call__(self, request: dict) -> str:
        text = request["messages"][-1]["content"]
        key = next(key for key in SPLITS if key in text)
        replies = SPLITS[key]
        self.asked[key] += 1
        return json.dumps({"statements": replies[min(self.asked[key], len(replies)) - 1]})


def test_a_pool_split_into_statements_by_the_llm_is_checked_and_asked_again(tmp_path):
    (tmp_path / "pool.jsonl").write_text(
        "".join(json.dumps({"persona": text}) + "\n" for text in POOL), encoding="utf-8"
    )
    splitter = PoolSplitter()

    with ScriptedOpenAIServer(splitter) as server:
        source = {"source": "hub_personas", "path": str(tmp_path / "pool.jsonl"), "layout": "personahub",
                  "statements_by": "llm", "max_attempts": 2}  # fmt: skip
        result = build_bank(bank_recipe(server, source), tmp_path / "bank", show_progress=False)

    assert splitter.asked == {"retired nurse": 1, "harbour pilot": 2, "glassblower": 2}
    rows = {row["description"]: row["statements"] for row in loaded_rows(tmp_path / "bank")}
    assert rows == {POOL[0]: SPLITS["retired nurse"][0], POOL[1]: SPLITS["harbour pilot"][1]}
    (dropped,) = result.dropped
    assert dropped.item.endswith("pool.jsonl row 3")
    assert "attempt 1: statement 1 is not in the first person: 'He blows glass for a living.'" in dropped.reason
    assert (
        "attempt 2: statement 1 says nothing the description does: 'I am an astronaut on the moon.'" in dropped.reason
    )


def test_a_dialogue_run_refuses_statements_by_the_llm_and_says_to_build_a_bank():
    recipe = small_recipe(personas=[{"source": "hub_personas", "path": "pool.jsonl", "layout": "personahub",
                                     "statements_by": "llm"}])  # fmt: skip
    with pytest.raises(
        RecipeError, match=r"personas\[0\].statements_by llm .*persona-factory personas build"
    ) as caught:
        parse_recipe(recipe)
    assert "Value error" not in str(caught.value) and "(got {" not in str(caught.value)  # the reason, not a dump
