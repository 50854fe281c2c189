"""The model served on the cluster: a run with ``llm.serve`` deploys llama.cpp on two nodes with
Ray Serve, talks to it through Serve's proxy, names where the replicas ran, and removes it at the
end; a replica killed outright is restarted by Serve and costs no dialogue. The vLLM deployment
is built from the recipe and checked without a GPU."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time

import datasets
import psutil
import pytest

from factory.errors import RecipeError
from factory.llm.serve import running_replicas
from factory.recipes import apply_overrides, load_recipe, parse_recipe
from factory.run import run_recipe
from tests.conftest import subprocess_env
from tests.recipes import small_recipe, write_recipe

APP = "persona-factory-e2e-generator"
SERVED = {"replicas": 2, "one_replica_per_node": True, "num_cpus": 1, "engine_args": {"parallel": 2}}


def served_recipe(tmp_path, cluster, dialogues: int, **llm):
    recipe = small_recipe(
        dialogues=dialogues,
        generation={"chunk_size": 2, "max_tokens": 48, "min_turns": 2, "max_turns": 4},
        critics={"faithfulness": {"enabled": False}},
        llm={"serve": {**SERVED, "port": free_port()}, "max_retries": 8, **llm},
    )
    return apply_overrides(load_recipe(write_recipe(tmp_path, recipe)), ray_address=cluster.address)


def free_port() -> int:
    from factory.llm.embedded import free_loopback_port

    return free_loopback_port()


def gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def llama_servers() -> list[psutil.Process]:
    return [process for process in psutil.process_iter(["name"]) if process.info["name"] == "llama-server"]


@pytest.mark.ray
@pytest.mark.embedded
@pytest.mark.slow
def test_a_run_serves_its_model_on_both_nodes_and_removes_it(tmp_path, two_node_cluster):
    import ray
    from ray import serve

    cluster, worker = two_node_cluster
    recipe = served_recipe(tmp_path, cluster, dialogues=4)

    result = run_recipe(recipe, tmp_path / "out", show_progress=False)

    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    both = {cluster.head_node.node_id, worker.node_id}
    served = manifest["ray"]["served"]["generator"]
    assert set(served["replica_nodes"]) == both, served
    assert served["engine"] == "llama.cpp" and served["model"] == "smollm2-135m-instruct"
    assert set(manifest["ray"]["nodes_by_step"]["generate"]) == both, manifest["ray"]["nodes_by_step"]
    assert "/persona-factory-e2e-generator/v1" in manifest["endpoint"]
    assert result.stats.generated == 4
    # torn down: no Serve application, no llama.cpp server left on the machine
    ray.init(address=cluster.address)
    assert serve.status().applications == {}
    ray.shutdown()
    deadline = time.monotonic() + 30
    while llama_servers() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert llama_servers() == []


@pytest.mark.ray
@pytest.mark.embedded
@pytest.mark.slow
def test_a_replica_killed_midway_is_restarted_and_no_dialogue_is_lost_or_repeated(tmp_path, two_node_cluster):
    import ray

    cluster, _ = two_node_cluster
    dialogues = 24
    recipe = served_recipe(tmp_path, cluster, dialogues=dialogues)
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = run_recipe(recipe, tmp_path / "out", show_progress=False)
        except BaseException as exc:
            outcome["error"] = exc

    runner = threading.Thread(target=run)
    runner.start()
    deadline = time.monotonic() + 300
    replicas = []
    while len(replicas) < 2 and runner.is_alive() and time.monotonic() < deadline:
        if ray.is_initialized():  # by the run: joining here too would race it
            with contextlib.suppress(Exception):  # Serve not started yet
                replicas = running_replicas(APP)
        time.sleep(0.5)
    assert len(replicas) == 2, outcome
    time.sleep(3)  # into the run: dialogues in flight on both replicas
    victim = replicas[0]
    servers_of_victim = psutil.Process(victim["pid"]).children()
    os.kill(victim["pid"], signal.SIGKILL)
    restarted = False
    while runner.is_alive() and not restarted and time.monotonic() < deadline:
        with contextlib.suppress(ray.exceptions.RayError):
            now = {replica["replica_id"] for replica in running_replicas(APP)}
            restarted = len(now - {replica["replica_id"] for replica in replicas}) > 0
        time.sleep(0.5)
    runner.join(timeout=600)
    assert not runner.is_alive()
    assert "error" not in outcome, outcome.get("error")

    result = outcome["result"]
    served = result.manifest["ray"]["served"]["generator"]
    assert restarted or served["replicas_seen"] >= 3, served  # Serve started one in the killed replica's place
    assert servers_of_victim and all(gone(server) for server in servers_of_victim)  # died with their replica
    rows = datasets.load_dataset(str(tmp_path / "out"))
    ids = [row for split in rows.values() for row in split["id"]]
    assert len(ids) == dialogues and len(set(ids)) == dialogues
    assert result.stats.generated == dialogues


def test_the_vllm_deployments_are_built_from_the_recipe_without_a_gpu(project_root):
    from factory.llm.serve_apps import vllm_llm_config
    from factory.personas import plan

    recipe = load_recipe(project_root / "pipelines" / "gpu_cluster.yaml")
    generator, judge = vllm_llm_config(recipe.llm.serve), vllm_llm_config(recipe.critics.llm.serve)

    assert generator.model_id == "Qwen/Qwen2.5-7B-Instruct"
    assert generator.engine_kwargs == {"max_model_len": 16384, "gpu_memory_utilization": 0.9}
    autoscaling = generator.deployment_config["autoscaling_config"]
    assert (autoscaling["min_replicas"], autoscaling["max_replicas"]) == (1, 4)
    assert generator.placement_group_config["bundle_per_worker"] == {"GPU": 1, "CPU": 4}
    # the judge: two GPUs per replica, one per tensor-parallel rank, its CPU split between them
    assert judge.deployment_config["num_replicas"] == 1
    assert judge.engine_kwargs["tensor_parallel_size"] == 2
    assert judge.placement_group_config["bundle_per_worker"] == {"GPU": 1, "CPU": 0.5}
    with pytest.raises(RecipeError, match="more than one per rank"):
        vllm_llm_config(recipe.critics.llm.serve.model_copy(update={"num_gpus": 4}))
    assert len(plan(recipe).casts) > 0  # the rest of the recipe is a runnable plan


def test_a_recipe_that_serves_and_names_an_endpoint_is_refused():
    with pytest.raises(RecipeError, match=r"leave llm\.base_url unset"):
        parse_recipe({**small_recipe(), "llm": {"serve": {}, "base_url": "http://127.0.0.1:1/v1"}})
    with pytest.raises(RecipeError, match=r"serve is set on critics\.llm only"):
        parse_recipe({**small_recipe(), "critics": {"faithfulness": {"llm": {"serve": {}}}}})


@pytest.mark.ray
@pytest.mark.embedded
@pytest.mark.slow
def test_serve_deploys_a_recipes_model_on_the_cluster_prints_its_url_and_takes_it_down(tmp_path, two_node_cluster):
    import openai

    cluster, _ = two_node_cluster
    recipe = write_recipe(tmp_path, small_recipe(llm={"serve": {"num_cpus": 1, "port": free_port()}}))
    command = [sys.executable, "-m", "factory.cli", "serve", "--recipe", str(recipe), "--ray-address", cluster.address]

    up = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), timeout=300)

    assert up.returncode == 0, up.stderr[-2000:]
    line = up.stdout.strip().splitlines()[-1]
    assert line.startswith("generator: smollm2-135m-instruct at http://"), up.stdout
    client = openai.OpenAI(base_url=line.rsplit(" at ", 1)[1], api_key="unused", max_retries=3)
    answer = client.chat.completions.create(
        model="smollm2-135m-instruct", messages=[{"role": "user", "content": "Hello"}], max_tokens=8
    )
    assert answer.usage.completion_tokens > 0  # still served after the command that deployed it ended

    down = subprocess.run([*command, "--down"], capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert down.returncode == 0, down.stderr[-2000:]
    assert "removed persona-factory-e2e-generator" in down.stdout
    with pytest.raises(openai.APIConnectionError):
        openai.OpenAI(base_url=line.rsplit(" at ", 1)[1], api_key="unused", max_retries=0).models.list()


def test_the_served_models_take_the_place_of_the_serve_blocks_for_generator_and_judges():
    from factory.critics.jury import judges_of
    from factory.llm.serve import ServedModel, pointed_at

    recipe = parse_recipe({**small_recipe(), "llm": {"serve": {}}, "critics": {"llm": {"serve": {"num_cpus": 2}}}})
    served = {
        "generator": ServedModel("generator", "g", recipe.llm.serve, "http://head:8000/g/v1", "smollm2-135m-instruct"),
        "judge": ServedModel("judge", "j", recipe.critics.llm.serve, "http://head:8000/j/v1", "judge-model"),
    }

    pointed = pointed_at(recipe, served)

    assert pointed.llm.serve is None and pointed.llm.base_urls == ["http://head:8000/g/v1"]
    assert pointed.llm.model == "smollm2-135m-instruct" and pointed.llm.structured_output == "json_object"
    judges, _ = judges_of(pointed.critics, "faithfulness")
    assert [(judge.base_urls, judge.model) for judge in judges] == [(["http://head:8000/j/v1"], "judge-model")]
    assert recipe.llm.serve is not None  # the recipe as written is left as it was (its manifest and resume check)
