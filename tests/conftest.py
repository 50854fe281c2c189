"""Fixtures shared by every test: global state isolated, and a scripted endpoint."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.openai_server import ScriptedOpenAIServer
from tests.scripts import DialogueScript

ISOLATED_UNSET = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "PERSONA_FACTORY_BASE_URL",
    "PERSONA_FACTORY_MODEL",
    "PERSONA_FACTORY_JUDGE_BASE_URL",
    "PERSONA_FACTORY_JUDGE_MODEL",
    "RAY_ADDRESS",
    "HF_TOKEN",
    "PERSONA_FACTORY_FAILPOINT",
)


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's keys, caches or Ray cluster."""
    home = tmp_path_factory.mktemp("home")
    for name in ISOLATED_UNSET:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("PERSONA_FACTORY_CACHE", str(home / "replies"))  # each test's replies its own
    monkeypatch.setenv("HF_DATASETS_CACHE", str(home / "hf" / "datasets"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # `datasets` reads its cache location when imported, before this fixture runs.
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", home / "hf" / "datasets")


@pytest.fixture
def scripted_server() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer(DialogueScript()) as server:
        yield server


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ISOLATED_UNSET}
    env.update(extra)
    return env


@pytest.fixture
def two_node_cluster():
    """A head and one worker node of two CPUs each, as (cluster, worker node)."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    try:
        yield cluster, worker
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
