"""A dataset folder written by an earlier release of the factory (before its modules were
rearranged) stays a dataset: `datasets` loads it, it reviews as before, and a new run publishes
the next version on top of it with a changelog against it."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import datasets

from factory.dataset.folder import DatasetFolder
from tests.conftest import subprocess_env
from tests.recipes import small_recipe, write_recipe

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "legacy-dialogues-v1.0.0.tar.gz"
CHECKS = ["--check", "coverage", "--check", "samples_read", "--check", "no_harm", "--check", "critics"]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "factory.cli", *args], capture_output=True, text=True, env=subprocess_env(), timeout=300
    )


def unpacked(tmp_path: Path) -> Path:
    with tarfile.open(FIXTURE) as archive:
        archive.extractall(tmp_path, filter="data")
    return tmp_path / "legacy"


def test_a_folder_written_before_the_renovation_loads_and_reviews(tmp_path, scripted_server):
    folder_path = unpacked(tmp_path)
    loaded = datasets.load_dataset(str(folder_path))
    assert loaded["accepted"].num_rows == 1 and loaded["rejected"].num_rows == 3
    assert set(loaded["accepted"].column_names) >= {"id", "speakers", "turns", "verdicts", "accepted"}

    shown = cli("review", "show", str(folder_path))
    assert shown.returncode == 0 and shown.stdout.startswith(f"{folder_path.resolve()} v1.0.0: in_review"), shown
    signed = cli("review", "sign", str(folder_path), "--reviewer", "ana", "--decision", "approve", *CHECKS)
    assert signed.returncode == 0, signed.stderr
    approved = cli("review", "approve", str(folder_path))
    assert approved.returncode == 0, approved.stderr
    folder = DatasetFolder(folder_path)
    assert folder.released_versions() == ["v1.0.0"]

    recipe = write_recipe(tmp_path, small_recipe(4, name="legacy", ray={"enabled": False}))
    run = cli("run", str(recipe), "--out", str(folder_path), "--base-url", scripted_server.base_url)
    assert run.returncode == 0, run.stderr
    assert folder.versions() == ["v1.0.0", "v1.1.0"]
    manifest = folder.read_manifest("v1.1.0")
    assert manifest is not None and manifest.previous_version == "v1.0.0" and manifest.changelog["against"] == "v1.0.0"
    # the manifest of the earlier release (records schema 1.4) is read by today's model
    legacy = folder.read_manifest("v1.0.0")
    assert legacy is not None and legacy.schema_version == "1.4" and legacy.files_of("accepted")
    assert datasets.load_dataset(str(folder_path))["accepted"].num_rows >= 1
