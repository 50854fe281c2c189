"""A run killed midway leaves the previous version intact and loadable; the next run recovers."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import datasets
import pytest

from factory.dataset.folder import DatasetFolder
from factory.errors import OutputError
from factory.recipes import apply_overrides, load_recipe
from factory.run import run_recipe
from tests.conftest import subprocess_env
from tests.recipes import small_recipe, write_recipe

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def snapshot(folder) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and ".git" not in path.parts and ".persona-factory" not in path.parts
    }


def test_killed_run_leaves_previous_version_unchanged(tmp_path, scripted_server):
    recipe_path = write_recipe(tmp_path, small_recipe(dialogues=4))
    recipe = apply_overrides(load_recipe(recipe_path), base_url=scripted_server.base_url)
    out = tmp_path / "out"
    run_recipe(recipe, out, show_progress=False)
    before = snapshot(out)
    rows_before = sum(len(split) for split in datasets.load_dataset(str(out)).values())

    scripted_server.delay = 120  # requests hang, so the run is surely mid-generation when killed
    calls = scripted_server.chat_calls
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "factory.cli",
            "run",
            str(recipe_path),
            "--out",
            str(out),
            "--base-url",
            scripted_server.base_url,
            "--no-progress",
            "--no-cache",  # the same questions as the first run: from the cache it would ask nothing
        ],
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while scripted_server.chat_calls == calls and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        assert scripted_server.chat_calls > calls, "the second run never reached generation"
        assert (out / ".persona-factory" / "run" / "run.json").is_file(), "the killed run should have left its journal"
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    assert snapshot(out) == before
    assert DatasetFolder(out).versions() == ["v1.0.0"]
    assert sum(len(split) for split in datasets.load_dataset(str(out)).values()) == rows_before

    scripted_server.delay = 0
    with pytest.raises(OutputError, match="--resume"):
        run_recipe(recipe, out, show_progress=False)
    result = run_recipe(recipe, out, show_progress=False, resume=True)
    assert result.version == "v1.1.0"
    assert not (out / ".persona-factory" / "run").exists(), "a published run leaves no journal behind"


def test_folder_recovers_from_a_publish_cut_short(tmp_path, scripted_server):
    recipe = apply_overrides(
        load_recipe(write_recipe(tmp_path, small_recipe(dialogues=2))), base_url=scripted_server.base_url
    )
    out = tmp_path / "out"
    run_recipe(recipe, out, show_progress=False)
    before = snapshot(out)
    folder = DatasetFolder(out)
    # what a run killed halfway through moving its files in leaves behind
    (folder.state / "publishing").write_text("{}")
    (out / "README.md").write_text("half written")
    (out / "data" / "accepted-99999-of-99999.parquet").write_bytes(b"partial")
    folder.prepare()
    assert snapshot(out) == before
    assert not (folder.state / "publishing").exists()


def test_folder_with_foreign_content_is_refused(tmp_path):
    from factory.errors import OutputError

    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not a persona-factory dataset folder"):
        DatasetFolder(tmp_path).prepare()


def test_a_wrong_ray_address_fails_in_bounded_time_and_leaves_nothing_behind(tmp_path, scripted_server):
    from factory.llm.embedded import free_loopback_port

    path = write_recipe(tmp_path, small_recipe(dialogues=4))
    out = tmp_path / "out"
    http_port = scripted_server.base_url.split(":")[2].split("/")[0]
    cases = {
        f"127.0.0.1:{free_loopback_port()}": "cannot reach the Ray cluster at",  # nothing listens
        f"127.0.0.1:{http_port}": "answers, but not as a Ray cluster",  # something that is not Ray
        "no-port-here": "is not host:port",
    }
    for address, said in cases.items():
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "factory.cli",
                "run",
                str(path),
                "--out",
                str(out),
                "--base-url",
                scripted_server.base_url,
                "--ray-address",
                address,
                "--no-progress",
            ],
            capture_output=True,
            text=True,
            env=subprocess_env(),
            timeout=120,  # Ray alone retries for minutes
        )
        assert result.returncode == 1, result.stderr[-2000:]
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and said in lines[0], lines
        assert not (out / ".persona-factory" / "run").exists()
    calls = scripted_server.chat_calls
    done = run_recipe(apply_overrides(load_recipe(path), base_url=scripted_server.base_url), out, show_progress=False)
    assert done.version == "v1.0.0" and scripted_server.chat_calls > calls  # a plain run is not blocked
