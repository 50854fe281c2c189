"""`persona-factory critics judge`: the critics over a version that exists (nothing generated
again), and over chat datasets the factory did not make, local and on the Hub."""

from __future__ import annotations

import subprocess
import sys

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from factory.dataset.folder import DatasetFolder
from factory.recipes import apply_overrides, load_recipe
from factory.recipes.llm import LLMConfig
from factory.rejudge import ChatMapping, JudgeSettings, judge_source, load_source
from factory.run import run_recipe
from tests.conftest import subprocess_env
from tests.hub import HubServer
from tests.recipes import small_recipe, write_recipe
from tests.scripts import CONTRADICTION_MARK

GENERATOR_SYSTEM = "You write natural"
TOKEN = "hf_judge_token_3c1d"

CHATS = [
    {
        "conv": "c1",
        "dialog": [
            "Hi! I just got back from a run.",
            "Nice, I teach piano so I mostly sit all day.",
            "Ha, I run daily.",
        ],
        "persona_lines": [["I run every morning.", "I have two cats."], ["I teach piano."]],
    },
    {
        "conv": "c2",
        "dialog": [f"{CONTRADICTION_MARK}.", "My dog is asleep next to me.", "What is the dog's name?"],
        "persona_lines": [["I have a dog named Rex."], ["I like quiet evenings."]],
    },
]


def _verdicts_of(folder, split: str) -> dict[str, list[str]]:
    loaded = datasets.load_dataset(str(folder))
    return {row["id"]: [v["critic"] for v in row["verdicts"]] for row in loaded[split]} if split in loaded else {}


def test_a_version_is_judged_again_without_a_generation_call(tmp_path, scripted_server):
    recipe = apply_overrides(
        load_recipe(write_recipe(tmp_path, small_recipe(dialogues=8, ray={"enabled": False}))),
        base_url=scripted_server.base_url,
    )
    out = tmp_path / "out"
    first = run_recipe(recipe, out, show_progress=False)
    asked = len(scripted_server.requests)

    settings = JudgeSettings.of(recipe)
    result = judge_source(load_source(str(out), None, ChatMapping()), settings, ["faithfulness", "apc"], out)
    later = scripted_server.requests[asked:]
    assert later and not any(r["messages"][0]["content"].startswith(GENERATOR_SYSTEM) for r in later)
    assert result.version == "v1.1.0" and DatasetFolder(out).versions() == ["v1.0.0", "v1.1.0"]
    assert result.judged == first.stats.generated
    judged = {**_verdicts_of(out, "accepted"), **_verdicts_of(out, "rejected")}
    assert len(judged) == first.stats.generated
    # the writer's own verdict is kept; every other is this judging's (apc was not in the run)
    assert all(set(critics) <= {"format", "faithfulness", "apc"} for critics in judged.values())
    assert any("apc" in critics for critics in judged.values())
    manifest = DatasetFolder(out).read_manifest("v1.1.0")
    assert manifest is not None and manifest.judged["revision"] == "v1.0.0" and manifest.recipe == "judged-e2e"


def _chat_file(tmp_path):
    path = tmp_path / "chats" / "train.parquet"
    path.parent.mkdir()
    pq.write_table(pa.Table.from_pylist(CHATS), path)
    return path


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "factory.cli", "critics", "judge", *args],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


def test_a_chat_dataset_is_judged_through_a_column_mapping(tmp_path, scripted_server):
    source = _chat_file(tmp_path)
    out = tmp_path / "judged"
    finished = _cli(
        subprocess_env(), str(source.parent), "--experts", "faithfulness", "--out", str(out),
        "--map", "messages=dialog,personas=persona_lines,id=conv", "--base-url", scripted_server.base_url,
        "--no-progress",
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "2 judged, 1 accepted" in finished.stdout
    assert _verdicts_of(out, "accepted") == {"c1": ["faithfulness"]}
    assert _verdicts_of(out, "rejected") == {"c2": ["faithfulness"]}
    loaded = datasets.load_dataset(str(out))
    speakers = loaded["accepted"][0]["speakers"]
    assert [s["statements"] for s in speakers] == CHATS[0]["persona_lines"]


def test_the_heuristic_alone_judges_with_no_endpoint(tmp_path):
    """The model-free critics need no endpoint: none is asked for, and the judging does not fail for
    want of one (it ended in a StopIteration traceback)."""
    source = _chat_file(tmp_path)
    out = tmp_path / "judged"
    finished = _cli(
        subprocess_env(), str(source.parent), "--experts", "heuristic", "--out", str(out),
        "--map", "messages=dialog,personas=persona_lines,id=conv", "--no-progress",
    )  # fmt: skip
    assert finished.returncode == 0, finished.stderr[-2000:]
    judged = datasets.load_dataset(str(out))
    assert sum(len(split) for split in judged.values()) == 2
    assert all(v["critic"] == "heuristic" for split in judged.values() for row in split for v in row["verdicts"])


def test_a_missing_column_is_one_line_naming_it(tmp_path, scripted_server):
    source = _chat_file(tmp_path)
    finished = _cli(
        subprocess_env(), str(source), "--experts", "faithfulness", "--out", str(tmp_path / "judged"),
        "--map", "messages=turns", "--base-url", scripted_server.base_url,
    )  # fmt: skip
    assert finished.returncode == 2
    assert finished.stderr.strip().splitlines() == [
        f"error: {source}: no column 'turns' (--map messages=turns); the columns are: conv, dialog, persona_lines"
    ]
    assert scripted_server.chat_calls == 0 and not (tmp_path / "judged").exists()


@pytest.mark.parametrize("name", ["garbage.parquet", "chats.csv"])
def test_a_file_that_is_no_parquet_is_one_line_naming_it(tmp_path, name):
    source = tmp_path / name
    source.write_text("conv,dialog\nc1,hello\n", encoding="utf-8")
    finished = _cli(subprocess_env(), str(source), "--experts", "faithfulness", "--out", str(tmp_path / "judged"))
    assert finished.returncode == 2, finished.stderr[-2000:]
    (line,) = finished.stderr.strip().splitlines()
    assert line.startswith(f"error: {source}: ") and ".parquet" in line and ".jsonl" in line
    assert not (tmp_path / "judged").exists()


@pytest.fixture
def hub():
    with HubServer(token=TOKEN) as server:
        yield server


def test_a_chat_dataset_on_the_hub_is_judged_at_a_revision(tmp_path, scripted_server, hub, monkeypatch):
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    api.create_repo("org/chats", repo_type="dataset")
    first = api.upload_file(
        path_or_fileobj=_chat_file(tmp_path).read_bytes(), path_in_repo="data/train.parquet",
        repo_id="org/chats", repo_type="dataset",
    )  # fmt: skip
    revision = first.oid
    # a later commit the judging must not see: the revision pins what is judged
    pq.write_table(pa.Table.from_pylist(CHATS[:1]), tmp_path / "later.parquet")
    api.upload_file(
        path_or_fileobj=(tmp_path / "later.parquet").read_bytes(), path_in_repo="data/train.parquet",
        repo_id="org/chats", repo_type="dataset",
    )  # fmt: skip
    for name, value in {"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path / "hf")}.items():
        monkeypatch.setenv(name, value)
    source = load_source("hf://org/chats", revision, ChatMapping("dialog", "persona_lines", "conv"))
    assert [r.id for r in source.records] == ["c1", "c2"] and source.provenance["commit"] == revision
    settings = JudgeSettings(llm=LLMConfig(base_url=scripted_server.base_url))
    result = judge_source(source, settings, ["faithfulness"], tmp_path / "judged", show_progress=False)
    assert (result.judged, result.accepted) == (2, 1)
