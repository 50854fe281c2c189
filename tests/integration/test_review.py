"""The review workflow driven by the card: on a local dataset folder (review branches, main and
tags) and on the Hub stand-in (pull requests, main and tags)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from factory.bank import build_bank
from factory.dataset.folder import DatasetFolder
from factory.dataset.review_section import read_state
from factory.recipes import PersonaBankRecipe, apply_overrides, load_recipe, parse_recipe
from factory.run import run_recipe
from tests.conftest import subprocess_env
from tests.hub import HubServer
from tests.recipes import small_recipe, write_recipe

TOKEN = "hf_review_token_4c1d"
ALL_CHECKS = [
    "--decision",
    "approve",
    "--check",
    "coverage",
    "--check",
    "samples_read",
    "--check",
    "no_harm",
    "--check",
    "critics",
]
BANK_CHECKS = ["--check", "coverage", "--check", "samples_read", "--check", "no_harm", "--check", "dropped"]


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "factory.cli", *args],
        capture_output=True,
        text=True,
        env=env or subprocess_env(),
        timeout=300,
    )


def label_all(target: str, card: Path, env: dict[str, str], reviewer: str = "ana") -> None:
    """A label on every sampled dialogue of the version whose card is ``card``."""
    for dialogue_id in read_state(card.read_text()).sampled:
        labelled = cli(
            "review", "label", target, "--id", dialogue_id, "--reviewer", reviewer, "--in-character", "yes",
            "--quality", "4", env=env,
        )  # fmt: skip
        assert labelled.returncode == 0, labelled.stderr


def build(bank: Path, seed: int) -> None:
    recipe = parse_recipe(
        {"name": "types", "seed": seed, "sources": [{"source": "mbti", "count": 16}]}, model=PersonaBankRecipe
    )
    build_bank(recipe, bank, show_progress=False)


def test_local_folder_review_sign_approve_reject(tmp_path):
    bank = tmp_path / "bank"
    build(bank, 1)
    folder = DatasetFolder(bank)
    assert folder.versions() == ["v1.0.0"] and folder.released_versions() == []

    shown = cli("review", "show", str(bank))
    assert shown.returncode == 0 and shown.stdout.startswith(f"{folder.path} v1.0.0: in_review")
    sampled = cli("review", "sample", str(bank))
    state = read_state((bank / "README.md").read_text())
    assert len(state.samples["personas"]) == 5 and all(
        f"== {i} (mbti)" in sampled.stdout for i in state.samples["personas"]
    )

    refused = cli("review", "approve", str(bank))
    assert (
        refused.returncode == 1
        and "the checklist is incomplete: coverage, samples_read, no_harm, dropped" in refused.stderr
    )
    assert "I read every sampled persona" in shown.stdout and "critics" not in shown.stdout  # a bank's own checklist
    partly = cli(
        "review",
        "sign",
        str(bank),
        "--reviewer",
        "ana",
        "--decision",
        "approve",
        "--check",
        "coverage",
        "--notes",
        "types balanced",
    )
    assert partly.returncode == 0 and "items left: samples_read, no_harm, dropped" in partly.stdout
    assert cli("review", "approve", str(bank)).returncode == 1

    # a reviewer ticks the remaining boxes in the card itself, as on the Hub's editor
    card = folder.read_bytes(folder.resolve("v1.0.0"), "README.md").decode()
    assert card.count("- [ ]") == 3
    folder.commit_card("v1.0.0", card.replace("- [ ]", "- [x]"), "ticked in the editor")
    approved = cli("review", "approve", str(bank))
    assert approved.returncode == 0, approved.stderr
    assert folder.released_versions() == ["v1.0.0"] and folder.branch() == "main"
    released = read_state((bank / "README.md").read_text())
    assert released.status == "approved" and [s["reviewer"] for s in released.signoffs] == ["ana"]
    assert released.checklist == {"coverage": True, "samples_read": True, "no_harm": True, "dropped": True}

    build(bank, 2)  # v1.1.0 goes to review; main still holds v1.0.0
    assert folder.git("show", "main:manifest.json").count('"version": "v1.0.0"') == 1
    rejected = cli("review", "reject", str(bank), "--reason", "too many duplicates")
    assert rejected.returncode == 0
    state = read_state(folder.read_bytes(folder.resolve("v1.1.0"), "README.md").decode())
    assert state.status == "rejected" and state.reasons == "too many duplicates"
    assert "Rejected because: too many duplicates" in folder.read_bytes(folder.resolve("v1.1.0"), "README.md").decode()
    assert folder.released_versions() == ["v1.0.0"]
    assert cli("review", "approve", str(bank), "--version", "v1.1.0").returncode == 1
    build(bank, 3)
    assert folder.versions() == ["v1.0.0", "v1.1.0", "v1.2.0"]  # a rejected number is not reused


@pytest.mark.ray
@pytest.mark.slow
def test_hub_release_of_two_runs_with_a_changelog(tmp_path, scripted_server):
    with HubServer(token=TOKEN) as hub:
        env = subprocess_env(HF_ENDPOINT=hub.endpoint, HF_TOKEN=TOKEN, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf"))
        out = tmp_path / "out"
        first = small_recipe(dialogues=8)
        recipe = apply_overrides(load_recipe(write_recipe(tmp_path, first)), base_url=scripted_server.base_url)
        run_recipe(recipe, out, show_progress=False)

        assert cli("push", str(out), "--repo", "org/chats", env=env).returncode == 0
        assert cli("review", "approve", "hf://org/chats", env=env).returncode == 1  # nothing ticked yet
        signed = cli("review", "sign", "hf://org/chats", "--reviewer", "ana", *ALL_CHECKS, env=env)
        assert signed.returncode == 0, signed.stderr
        unlabelled = cli("review", "approve", "hf://org/chats", env=env)
        assert unlabelled.returncode == 1 and "sampled dialogue(s) have no label yet" in unlabelled.stderr
        label_all("hf://org/chats", out / "README.md", env)
        approved = cli("review", "approve", "hf://org/chats", env=env)
        assert approved.returncode == 0, approved.stderr
        repo = hub.repos["org/chats"]
        assert_charts_resolve(hub, "org/chats", "v1.0.0", tmp_path / "downloads")
        assert repo.tags["v1.0.0"] == repo.branches["main"] and repo.pulls[1].status == "merged"

        second = small_recipe(dialogues=6, generation={"temperature": 0.5})
        recipe = apply_overrides(load_recipe(write_recipe(tmp_path, second)), base_url=scripted_server.base_url)
        result = run_recipe(recipe, out, show_progress=False)
        assert result.version == "v1.1.0"
        changelog = result.manifest["changelog"]
        assert changelog["against"] == "v1.0.0" and changelog["generated"] == [8, 6]
        assert changelog["recipe_changes"] == ["casting.dialogues", "generation.temperature"]
        card = (out / "README.md").read_text()
        assert "## Changes since v1.0.0" in card and "| dialogues | 8 | 6 |" in card

        assert cli("push", str(out), "--repo", "org/chats", env=env).returncode == 0
        assert cli("review", "sign", "hf://org/chats", "--reviewer", "ben", *ALL_CHECKS, env=env).returncode == 0
        label_all("hf://org/chats", out / "README.md", env, reviewer="ben")
        assert cli("review", "approve", "hf://org/chats", env=env).returncode == 0
        assert set(repo.tags) == {"v1.0.0", "v1.1.0"} and repo.tags["v1.1.0"] == repo.branches["main"]

        code = (
            "import datasets, json; out = {}\n"
            "for rev in ('v1.0.0', 'v1.1.0', None):\n"
            "    d = datasets.load_dataset('org/chats', revision=rev)\n"
            "    out[str(rev)] = sum(len(s) for s in d.values())\n"
            "print(json.dumps(out))"
        )
        loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        assert loaded.returncode == 0, loaded.stderr[-2000:]
        assert json.loads(loaded.stdout) == {"v1.0.0": 8, "v1.1.0": 6, "None": 6}
        main_card = repo.commits[repo.branches["main"]].files["README.md"].decode()
        meta = yaml.safe_load(main_card.split("---")[1])["persona_factory"]
        assert meta["review_status"] == "approved" and meta["version"] == "v1.1.0"
        assert [s["reviewer"] for s in meta["review"]["signoffs"]] == ["ben"]


def assert_charts_resolve(hub: HubServer, repo: str, revision: str, cache: Path) -> None:
    """Every image the card links is, relative to the card, a PNG file of the same revision,
    downloaded over the Hub's protocol as a page showing the card would."""
    from huggingface_hub import hf_hub_download

    def download(name: str) -> bytes:
        where = hf_hub_download(
            repo, name, repo_type="dataset", revision=revision, endpoint=hub.endpoint, token=TOKEN, cache_dir=cache
        )
        return Path(where).read_bytes()

    links = re.findall(r"!\[[^]]*\]\(([^)]+)\)", download("README.md").decode())
    assert {"charts/pass_rate_per_critic.png", "charts/tokens_per_accepted.png"} <= set(links)
    for link in links:
        assert not link.startswith(("/", "http")) and download(link)[:8] == b"\x89PNG\r\n\x1a\n", link


def test_hub_reject_closes_the_pull_request_with_the_reasons_in_the_card(tmp_path):
    bank = tmp_path / "bank"
    build(bank, 1)
    with HubServer(token=TOKEN) as hub:
        env = subprocess_env(HF_ENDPOINT=hub.endpoint, HF_TOKEN=TOKEN, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf"))
        assert cli("push", str(bank), "--repo", "org/bank", env=env).returncode == 0
        shown = cli("review", "show", "hf://org/bank", env=env)
        assert shown.returncode == 0 and shown.stdout.startswith("org/bank v1.0.0: in_review")
        rejected = cli("review", "reject", "hf://org/bank", "--reason", "too few women among the personas", env=env)
        assert rejected.returncode == 0, rejected.stderr
        repo = hub.repos["org/bank"]
        pull = repo.pulls[1]
        assert pull.status == "closed" and pull.comments == ["too few women among the personas"]
        card = read_state(repo.commits[pull.head].files["README.md"].decode())
        assert card.status == "rejected" and card.reasons == "too few women among the personas"
        assert not repo.tags and "main" not in repo.branches
        assert cli("review", "show", "hf://org/bank", env=env).returncode == 1  # nothing left in review


def sign_all(
    target: str, reviewer: str, decision: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Every box of a persona bank's checklist ticked, and the decision."""
    return cli("review", "sign", target, "--reviewer", reviewer, "--decision", decision, *BANK_CHECKS, env=env)


def test_a_standing_reject_blocks_approval_until_that_reviewer_signs_again(tmp_path):
    bank = tmp_path / "bank"
    build(bank, 1)
    with HubServer(token=TOKEN) as hub:
        env = subprocess_env(HF_ENDPOINT=hub.endpoint, HF_TOKEN=TOKEN, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf"))
        assert cli("push", str(bank), "--repo", "org/bank", env=env).returncode == 0
        for target in (str(bank), "hf://org/bank"):
            assert sign_all(target, "ana", "approve", env).returncode == 0
            assert sign_all(target, "ben", "reject", env).returncode == 0
            refused = cli("review", "approve", target, env=env)
            assert refused.returncode == 1 and "ben signed off with decision reject" in refused.stderr, refused.stderr
            assert len(refused.stderr.strip().splitlines()) == 1
            assert sign_all(target, "ben", "approve", env).returncode == 0
            approved = cli("review", "approve", target, env=env)
            assert approved.returncode == 0, approved.stderr
        assert DatasetFolder(bank).released_versions() == ["v1.0.0"] and set(hub.repos["org/bank"].tags) == {"v1.0.0"}


def test_a_local_reject_leaves_the_folder_on_the_latest_release(tmp_path):
    import datasets

    bank = tmp_path / "bank"
    build(bank, 1)
    assert sign_all(str(bank), "ana", "approve").returncode == 0
    assert cli("review", "approve", str(bank)).returncode == 0
    released_ids = sorted(datasets.load_dataset(str(bank), split="personas")["id"])
    build(bank, 2)
    assert sorted(datasets.load_dataset(str(bank), split="personas")["id"]) != released_ids  # v1.1.0 is checked out
    assert cli("review", "reject", str(bank), "--reason", "not balanced").returncode == 0
    folder = DatasetFolder(bank)
    assert folder.branch() == "main"
    assert json.loads((bank / "manifest.json").read_text())["version"] == "v1.0.0"
    assert sorted(datasets.load_dataset(str(bank), split="personas")["id"]) == released_ids


def test_a_target_that_is_neither_a_folder_nor_hf_is_refused_before_any_request(tmp_path):
    bank = tmp_path / "quickstart"
    build(bank, 1)
    with HubServer(token=TOKEN) as hub:
        env = subprocess_env(HF_ENDPOINT=hub.endpoint, HF_TOKEN=TOKEN, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf"))
        typo = cli("review", "show", str(tmp_path / "quickstar"), env=env)
        assert typo.returncode == 2 and len(typo.stderr.strip().splitlines()) == 1, typo.stderr
        assert "no such dataset folder" in typo.stderr
        bare = cli("review", "show", "org/quickstart", env=env)
        assert (
            bare.returncode == 2 and "hf://org/quickstart" in bare.stderr and len(bare.stderr.strip().splitlines()) == 1
        )
        for bad in ("../../etc/passwd", "a/b/c", "hf://../x"):
            pushed = cli("push", str(bank), "--repo", bad, env=env)
            assert pushed.returncode == 2 and len(pushed.stderr.strip().splitlines()) == 1, pushed.stderr
            assert "is not a Hub repository id" in pushed.stderr
            shown = cli("review", "show", f"hf://{bad}" if not bad.startswith("hf://") else bad, env=env)
            assert shown.returncode == 2 and len(shown.stderr.strip().splitlines()) == 1, shown.stderr
        assert hub.requests == []


@pytest.mark.parametrize("command", [["approve"], ["reject", "--reason", "bad"], ["show"], ["sample"]])
def test_review_of_a_hub_repo_that_is_missing_or_down_is_one_line(tmp_path, command):
    with HubServer(token=TOKEN) as hub:
        env = subprocess_env(HF_ENDPOINT=hub.endpoint, HF_TOKEN=TOKEN, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf"))
        missing = cli("review", *command[:1], "hf://org/x", *command[1:], env=env)
        down_endpoint = hub.endpoint
    # the stand-in is stopped: nothing listens at its address any more
    down = cli(
        "review",
        *command[:1],
        "hf://org/x",
        *command[1:],
        env=subprocess_env(HF_ENDPOINT=down_endpoint, HF_TOKEN=TOKEN, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf")),
    )
    for result, says in ((missing, "org/x"), (down, "could not be reached")):
        assert result.returncode == 1, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0] and "Traceback" not in result.stderr, result.stderr
        assert TOKEN not in result.stderr
