"""A run on a two-node Ray cluster: the steps land on both nodes, and the manifest says which."""

from __future__ import annotations

import json

import pytest

from factory.config import apply_overrides, load_recipe
from factory.run import run_recipe
from tests.recipes import small_recipe, write_recipe

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture
def two_node_cluster():
    import ray
    from ray.cluster_utils import Cluster

    # Each step actor reserves one CPU (cpus_per_step) and there are four step actors, so no
    # single node of two CPUs can hold them all.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    worker = cluster.add_node(num_cpus=2)
    cluster.wait_for_nodes()
    try:
        yield cluster, worker
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def test_steps_run_on_both_nodes(tmp_path, scripted_server, two_node_cluster):
    cluster, worker = two_node_cluster
    recipe_path = write_recipe(tmp_path, small_recipe(dialogues=4, ray={"cpus_per_step": 1}))
    recipe = apply_overrides(load_recipe(recipe_path), base_url=scripted_server.base_url, ray_address=cluster.address)

    result = run_recipe(recipe, tmp_path / "out", show_progress=False)

    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    nodes_by_step = manifest["ray"]["nodes_by_step"]
    assert manifest["ray"]["address"] == cluster.address
    used = {node for nodes in nodes_by_step.values() for node in nodes}
    head_id = cluster.head_node.node_id
    assert used == {head_id, worker.node_id}, nodes_by_step
    assert result.stats.generated == 4
