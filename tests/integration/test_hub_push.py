"""Pushing versions to a local stand-in of the Hub's HTTP API (tests/hub.py), through the real
HfApi client, and reading them back with `datasets`: a pull request for review, idempotent
re-pushes, a failed push that changes nothing and is retried, and the token in no written file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from factory.bank import build_bank
from factory.personas import plan
from factory.recipes import PersonaBankRecipe, parse_recipe
from tests.conftest import subprocess_env
from tests.hub import HubServer
from tests.recipes import small_recipe

TOKEN = "hf_test_token_do_not_leak_7f3a9"


@pytest.fixture
def hub():
    with HubServer(token=TOKEN) as server:
        yield server


def hub_env(hub: HubServer, tmp_path: Path) -> dict[str, str]:
    return subprocess_env(
        HF_ENDPOINT=hub.endpoint, HF_TOKEN=TOKEN, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf-home")
    )


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "factory.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


def python(env: dict[str, str], code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.fixture
def bank(tmp_path) -> Path:
    recipe = parse_recipe({"name": "types", "sources": [{"source": "mbti", "count": 16}]}, model=PersonaBankRecipe)
    build_bank(recipe, tmp_path / "bank", show_progress=False)
    return tmp_path / "bank"


def test_push_opens_a_review_pull_request_readable_by_datasets(tmp_path, hub, bank):
    env = hub_env(hub, tmp_path)
    result = cli(env, "push", str(bank), "--repo", "org/types", "--private")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "v1.0.0 is up for review as pull request #1 of org/types"

    repo = hub.repos["org/types"]
    assert repo.private and repo.pulls[1].status == "open" and "main" not in repo.branches  # nothing released yet
    files = repo.commits[repo.pulls[1].head].files
    assert set(files) == {"README.md", "recipe.yaml", "manifest.json", "data/personas-00000-of-00001.parquet"}
    assert "review_status: in_review" in files["README.md"].decode()
    # the card says how to use what it describes: the folder locally, the repository on the Hub
    assert "{source: bank, path: bank, revision: v1.0.0}" in (bank / "README.md").read_text()
    assert "{source: bank, repo: org/types, revision: v1.0.0}" in files["README.md"].decode()
    assert files["data/personas-00000-of-00001.parquet"] == (bank / "data/personas-00000-of-00001.parquet").read_bytes()

    rows = python(
        env,
        "import datasets; d = datasets.load_dataset('org/types', revision='refs/pr/1', split='personas'); "
        "print(sorted(d['mbti']))",
    )
    assert len(eval(rows)) == 16

    # pushing again is idempotent: no new commit, no new pull request
    commits = len(repo.commits)
    again = cli(env, "push", str(bank), "--repo", "org/types")
    assert again.returncode == 0 and "already in review as pull request #1" in again.stdout
    assert len(repo.commits) == commits and len(repo.pulls) == 1


def test_a_failed_push_changes_nothing_and_can_be_retried(tmp_path, hub, bank):
    env = hub_env(hub, tmp_path)
    hub.fail_next("/commit/", 500)
    failed = cli(env, "push", str(bank), "--repo", "org/types")
    assert failed.returncode == 1
    assert failed.stderr.startswith("error: the Hub refused the push of v1.0.0 to org/types (500)")
    repo = hub.repos["org/types"]
    assert not repo.commits and not repo.pulls
    retried = cli(env, "push", str(bank), "--repo", "org/types")
    assert retried.returncode == 0 and len(repo.pulls) == 1


def test_a_push_cut_off_in_parts_resumes_and_uploads_only_what_did_not_arrive(tmp_path, hub, bank):
    env = hub_env(hub, tmp_path)
    hub.fail_next("/commit/", 500, after=2)  # the third commit is refused
    failed = cli(env, "push", str(bank), "--repo", "org/types", "--files-per-commit", "1")
    assert failed.returncode == 1 and failed.stderr.startswith("error: the Hub refused the push of v1.0.0")
    repo = hub.repos["org/types"]
    arrived = repo.commits[repo.pulls[1].head].files
    # the card goes last, so a pull request cut off has none for a reviewer to approve from
    assert len(repo.commits) == 2 and set(arrived) == {"data/personas-00000-of-00001.parquet", "manifest.json"}

    resumed = cli(env, "push", str(bank), "--repo", "org/types", "--files-per-commit", "1")
    assert resumed.returncode == 0, resumed.stderr
    assert "up for review as pull request #1" in resumed.stdout and "had not arrived" in resumed.stdout
    assert len(repo.commits) == 4 and len(repo.pulls) == 1  # one commit each for recipe.yaml and the card
    files = repo.commits[repo.pulls[1].head].files
    assert set(files) == {"README.md", "recipe.yaml", "manifest.json", "data/personas-00000-of-00001.parquet"}
    assert files["data/personas-00000-of-00001.parquet"] == (bank / "data/personas-00000-of-00001.parquet").read_bytes()
    again = cli(env, "push", str(bank), "--repo", "org/types")
    assert "already in review" in again.stdout and len(repo.commits) == 4


def test_a_bad_token_is_refused_and_never_written(tmp_path, hub, bank):
    env = hub_env(hub, tmp_path)
    env["HF_TOKEN"] = "hf_wrong_token"
    refused = cli(env, "push", str(bank), "--repo", "org/types")
    assert refused.returncode == 1 and "(401)" in refused.stderr and "hf_wrong_token" not in refused.stderr
    ok = cli(hub_env(hub, tmp_path), "push", str(bank), "--repo", "org/types")
    assert ok.returncode == 0
    assert TOKEN not in ok.stdout + ok.stderr
    written = [p for p in bank.rglob("*") if p.is_file()]
    stored = [
        content for repo in hub.repos.values() for commit in repo.commits.values() for content in commit.files.values()
    ]
    assert written and stored
    assert all(TOKEN.encode() not in p.read_bytes() for p in written)
    assert all(TOKEN.encode() not in content for content in stored)
    assert f"Bearer {TOKEN}" in hub.seen_authorization  # it was sent, in the header only


def test_a_dialogue_run_can_seed_from_a_bank_on_the_hub(tmp_path, hub, bank, monkeypatch):
    env = hub_env(hub, tmp_path)
    assert cli(env, "push", str(bank), "--repo", "org/types").returncode == 0
    head = hub.repos["org/types"].pulls[1].head
    # In this process: a separate interpreter loading a bank from the Hub has been seen to abort at
    # exit now and then ("terminate called without an active exception") after finishing its work.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    for name in ("HF_ENDPOINT", "HF_TOKEN", "HF_HOME"):
        monkeypatch.setenv(name, env[name])
    recipe = parse_recipe(
        small_recipe(
            personas=[{"source": "bank", "repo": "org/types", "revision": "refs/pr/1"}],
            casting={"dialogues": 8, "strategy": "quota", "quota": [{"by": "mbti"}]},
        )
    )
    cast_plan = plan(recipe)
    assert cast_plan.banks == [
        {"repo": "org/types", "revision": "refs/pr/1", "commit": head, "bank_version": "v1.0.0", "personas": 16}
    ]
    assert len({s.mbti for c in cast_plan.casts for s in c.speakers}) == 16


def test_a_persona_pool_on_the_hub_is_streamed_at_its_revision(tmp_path, hub):
    import polars as pl
    from huggingface_hub import HfApi

    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    api.create_repo("org/pool", repo_type="dataset")
    rows = [{"persona": f"A lighthouse keeper number {i} who paints gulls at dawn, {i * 13}."} for i in range(40)]
    pl.DataFrame(rows).write_parquet(tmp_path / "train.parquet")
    first = api.upload_file(
        path_or_fileobj=str(tmp_path / "train.parquet"), path_in_repo="persona/train.parquet",
        repo_id="org/pool", repo_type="dataset",
    ).oid  # fmt: skip
    pl.DataFrame(rows[:5]).write_parquet(tmp_path / "train.parquet")
    api.upload_file(
        path_or_fileobj=str(tmp_path / "train.parquet"), path_in_repo="persona/train.parquet",
        repo_id="org/pool", repo_type="dataset",
    )  # fmt: skip
    recipe = {
        "name": "pool",
        "personas": [{"source": "hub_personas", "repo": "org/pool", "revision": first, "layout": "personahub",
                      "scan": 30, "dedup_threshold": None}],
        "casting": {"dialogues": 2},
    }  # fmt: skip

    out = python(
        hub_env(hub, tmp_path),
        "import json, random; from factory.recipes import parse_recipe; from factory.personas import build_persona_pool; "
        f"pool = build_persona_pool(parse_recipe({recipe!r}), random.Random(1)); "
        "print(json.dumps([p.source for p in pool.personas]))",
    )

    sources = json.loads(out.strip().splitlines()[-1])
    assert len(sources) == 30  # the first revision's 40 rows, of which `scan` were read
    assert sources[0] == f"org/pool@{first} row 1"
