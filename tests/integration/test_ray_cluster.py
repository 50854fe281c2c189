"""Runs on a two-node Ray cluster: the workers land on both nodes, the manifest says which, and a
worker killed midway is replaced without losing or repeating a dialogue."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import datasets
import pytest

from factory.recipes import apply_overrides, load_recipe
from factory.run import run_recipe
from tests.recipes import small_recipe, write_recipe

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def test_workers_run_on_both_nodes(tmp_path, scripted_server, two_node_cluster):
    cluster, worker = two_node_cluster
    recipe_path = write_recipe(
        tmp_path, small_recipe(dialogues=8, ray={"workers": 2, "cpus_per_worker": 2}, generation={"chunk_size": 2})
    )
    recipe = apply_overrides(load_recipe(recipe_path), base_url=scripted_server.base_url, ray_address=cluster.address)

    result = run_recipe(recipe, tmp_path / "out", show_progress=False)

    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    nodes_by_step = manifest["ray"]["nodes_by_step"]
    assert manifest["ray"]["address"] == cluster.address
    used = {node for nodes in nodes_by_step.values() for node in nodes}
    head_id = cluster.head_node.node_id
    assert used == {head_id, worker.node_id}, nodes_by_step
    assert result.stats.generated == 8


def test_a_worker_killed_midway_is_replaced_and_every_dialogue_is_accounted_for(
    tmp_path, scripted_server, two_node_cluster
):
    import ray

    cluster, _ = two_node_cluster
    dialogues = 16
    recipe_path = write_recipe(
        tmp_path,
        small_recipe(
            dialogues=dialogues,
            ray={"workers": 2, "cpus_per_worker": 2},
            generation={"chunk_size": 2},
            llm={"max_concurrency": 2, "initial_concurrency": 1},
        ),
    )
    recipe = apply_overrides(load_recipe(recipe_path), base_url=scripted_server.base_url, ray_address=cluster.address)
    scripted_server.delay = 0.3  # slow enough that the kill lands while chunks are in flight
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = run_recipe(recipe, tmp_path / "out", show_progress=False)
        except BaseException as exc:
            outcome["error"] = exc

    runner = threading.Thread(target=run)
    runner.start()
    deadline = time.monotonic() + 120
    while scripted_server.chat_calls < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    victim = ray.get_actor("persona-factory-worker-0")
    os.kill(ray.get(victim.pid.remote()), signal.SIGKILL)
    calls_at_kill = scripted_server.chat_calls
    runner.join(timeout=300)
    assert not runner.is_alive()
    assert "error" not in outcome, outcome.get("error")

    result = outcome["result"]
    assert result.manifest["execution"]["worker_restarts"] == 1
    assert scripted_server.chat_calls > calls_at_kill
    rows = datasets.load_dataset(str(tmp_path / "out"))
    ids = [row for split in rows.values() for row in split["id"]]
    assert sorted(ids) == sorted(set(ids)) and len(ids) == dialogues
    assert result.stats.generated == dialogues
    # every dialogue was written: no row is an empty placeholder of a lost chunk
    assert all(row for split in rows.values() for row in split["raw_generation"])


def test_workers_auto_uses_every_node_with_the_quickstart_unchanged(
    tmp_path, scripted_server, two_node_cluster, project_root
):
    """``ray.workers`` unset is ``auto``: one worker per alive node, so a recipe written for one
    machine spreads over a cluster it is given."""
    cluster, worker = two_node_cluster
    recipe = apply_overrides(
        load_recipe(project_root / "pipelines" / "quickstart.yaml"),
        base_url=scripted_server.base_url, ray_address=cluster.address,
    )  # fmt: skip
    assert recipe.ray.workers == "auto"
    run_recipe(recipe, tmp_path / "out", show_progress=False)
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    generated_on = set(manifest["ray"]["nodes_by_step"]["generate"])
    assert generated_on == {cluster.head_node.node_id, worker.node_id}, manifest["ray"]["nodes_by_step"]
