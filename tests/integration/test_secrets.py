"""The API key reaches the Ray workers and is written nowhere: not in Ray's session folder (its
logs record a runtime environment's variables), not in the dataset folder, not in its git history."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.recipes import small_recipe, write_recipe

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def files_holding(root: Path, secret: bytes) -> list[str]:
    return [
        str(path)
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink() and secret in path.read_bytes()
    ]


def git_history(folder: Path) -> str:
    return subprocess.run(
        ["git", "-C", str(folder), "log", "--all", "-p"], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture
def ray_temp():
    # short: Ray's socket paths must fit in 107 bytes
    path = Path(tempfile.mkdtemp(prefix="pfray-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_with_key(tmp_path: Path, server, key: str, ray_temp: Path, *extra: str) -> Path:
    recipe = small_recipe(dialogues=4, ray={"workers": 2} if extra else {"workers": 1})
    path = write_recipe(tmp_path, recipe)
    out = tmp_path / "out"
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
            server.base_url,
            "--no-progress",
            *extra,
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(OPENAI_API_KEY=key, RAY_TMPDIR=str(ray_temp)),
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert key not in result.stdout + result.stderr
    return out


def test_the_key_is_in_no_file_of_a_local_ray_run(tmp_path, scripted_server, ray_temp):
    key = f"sk-sentinel-{uuid.uuid4().hex}"
    out = run_with_key(tmp_path, scripted_server, key, ray_temp)
    assert scripted_server.api_keys == {key}  # the workers did use it
    assert any((ray_temp / "ray").glob("session_*/logs/*")), "Ray wrote its logs where the test looks"
    assert files_holding(ray_temp, key.encode()) == []
    assert files_holding(out, key.encode()) == [] and key not in git_history(out)


def test_the_key_is_in_no_file_of_a_two_node_run(tmp_path, scripted_server, ray_temp):
    import ray
    from ray.cluster_utils import Cluster

    # the cluster is started without the key in its environment: the workers get it from the run alone
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False, "temp_dir": str(ray_temp)}
    )
    cluster.add_node(num_cpus=2, temp_dir=str(ray_temp))
    cluster.wait_for_nodes()
    try:
        key = f"sk-sentinel-{uuid.uuid4().hex}"
        out = run_with_key(tmp_path, scripted_server, key, ray_temp, "--ray-address", cluster.address)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
    assert scripted_server.api_keys == {key}
    assert files_holding(ray_temp, key.encode()) == []
    assert files_holding(out, key.encode()) == [] and key not in git_history(out)


def test_each_endpoint_gets_only_its_own_key(tmp_path, scripted_server, ray_temp):
    from tests.openai_server import ScriptedOpenAIServer
    from tests.scripts import DialogueScript

    generator_key, judge_key = f"sk-gen-{uuid.uuid4().hex}", f"sk-judge-{uuid.uuid4().hex}"
    with ScriptedOpenAIServer(DialogueScript()) as judge_server:
        recipe = small_recipe(
            dialogues=4, ray={"workers": 1},
            critics={"faithfulness": {"enabled": True},
                     "llm": {"base_url": judge_server.base_url, "model": "scripted", "api_key_env": "JUDGE_KEY"}},
        )  # fmt: skip
        path = write_recipe(tmp_path, recipe)
        command = [sys.executable, "-m", "factory.cli", "run", str(path), "--out", str(tmp_path / "out")]
        command += ["--base-url", scripted_server.base_url, "--no-progress"]
        env = subprocess_env(OPENAI_API_KEY=generator_key, JUDGE_KEY=judge_key, RAY_TMPDIR=str(ray_temp))
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
        assert judge_server.chat_calls > 0  # the judge was asked, on the workers
        assert judge_server.api_keys == {judge_key}
    assert scripted_server.api_keys == {generator_key}
    for key in (generator_key, judge_key):
        assert files_holding(ray_temp, key.encode()) == [] and files_holding(tmp_path / "out", key.encode()) == []
