"""Runs complete through endpoint faults, with every affected row accounted for: 500s for a
while, dropped connections, timeouts, and one prompt too long for the model (only its row is
rejected, with the reason). A Ray worker killed midway is in test_ray_cluster."""

from __future__ import annotations

import datasets
import pytest

from factory.engine.rounds import plan_rows
from factory.errors import EndpointError
from factory.llm.spec import EndpointSpec
from factory.personas import plan
from factory.recipes import apply_overrides, load_recipe
from factory.run import run_recipe
from tests.openai_server import HANG, RESET, ScriptedReply
from tests.recipes import small_recipe, write_recipe

DIALOGUES = 10


def run_with(tmp_path, server, **overrides):
    settings = {"max_retries": 6, "backoff_base": 0.02, "backoff_max": 0.2, "eject_seconds": 0.05, "max_concurrency": 4}
    recipe_dict = small_recipe(dialogues=DIALOGUES, ray={"enabled": False}, **overrides)
    recipe_dict["llm"] = {**recipe_dict["llm"], **settings, **overrides.get("llm", {})}
    recipe = apply_overrides(load_recipe(write_recipe(tmp_path, recipe_dict)), base_url=server.base_url)
    return recipe, run_recipe(recipe, tmp_path / "out", show_progress=False)


def all_rows(tmp_path):
    return [row for split in datasets.load_dataset(str(tmp_path / "out")).values() for row in split]


def failures_of(result) -> int:
    return sum(numbers["failures"] for numbers in result.manifest["execution"]["endpoints"].values())


@pytest.mark.parametrize("fault", [503, 500, RESET], ids=["503", "500", "reset"])
def test_a_run_rides_out_server_errors_and_dropped_connections(tmp_path, scripted_server, fault):
    scripted_server.fail_next(*[fault] * 8)
    _, result = run_with(tmp_path, scripted_server)
    rows = all_rows(tmp_path)
    assert scripted_server.faults_served == 8
    assert failures_of(result) == 8  # every fault was seen, and retried
    assert len(rows) == DIALOGUES
    assert not [row["id"] for row in rows if any("generation failed" in v["reason"] for v in row["verdicts"])]
    assert all(row["raw_generation"] for row in rows)  # every generator reply arrived


def test_a_run_rides_out_requests_that_time_out(tmp_path, scripted_server):
    scripted_server.hang_seconds = 2.0
    scripted_server.fail_next(HANG, HANG, HANG)
    _, result = run_with(tmp_path, scripted_server, llm={"timeout": 0.5})
    rows = all_rows(tmp_path)
    assert failures_of(result) == 3
    assert len(rows) == DIALOGUES and all(row["raw_generation"] for row in rows)


def test_a_prompt_too_long_for_the_model_rejects_only_its_row(tmp_path, scripted_server):
    # the generator prompts of this recipe, measured the way the server counts: the longest are too long
    recipe_dict = small_recipe(
        dialogues=DIALOGUES, ray={"enabled": False}, critics={"faithfulness": {"enabled": False}}
    )
    recipe = load_recipe(write_recipe(tmp_path, recipe_dict, "probe.yaml"))
    spec = EndpointSpec.of(recipe.llm, scripted_server.base_url, scripted_server.model, "openai-compatible")
    lengths = {
        record.id: sum(len(message["content"].split()) for message in messages)
        for record, messages in plan_rows(recipe, plan(recipe).casts, spec)
    }
    limit = max(lengths.values()) - 1
    too_long = {dialogue for dialogue, words in lengths.items() if words > limit}
    assert 0 < len(too_long) < DIALOGUES
    scripted_server.context_words = limit

    _, result = run_with(tmp_path, scripted_server, critics={"faithfulness": {"enabled": False}})
    rows = {row["id"]: row for row in all_rows(tmp_path)}
    assert len(rows) == DIALOGUES
    failed_generation = {
        dialogue
        for dialogue, row in rows.items()
        if any(v["critic"] == "format" and "maximum context length" in v["reason"] for v in row["verdicts"])
    }
    assert failed_generation == too_long
    assert all(not row["accepted"] for dialogue, row in rows.items() if dialogue in too_long)
    assert all(row["raw_generation"] for dialogue, row in rows.items() if dialogue not in too_long)
    # a refused request is not retried, and says nothing of the endpoint's health
    assert scripted_server.chat_calls == DIALOGUES
    assert failures_of(result) == 0


@pytest.mark.parametrize("on_ray", [False, pytest.param(True, marks=pytest.mark.ray)], ids=["in-process", "ray"])
def test_an_endpoint_down_for_good_stops_the_run_and_it_resumes_later(tmp_path, scripted_server, on_ray):
    down = {"now": True}
    script = scripted_server.script
    scripted_server.script = lambda request: ScriptedReply(status=502) if down["now"] else script(request)
    recipe_dict = small_recipe(dialogues=DIALOGUES, ray={"enabled": on_ray}, generation={"chunk_size": 2})
    recipe_dict["llm"].update({"outage_seconds": 1.0, "eject_after": 1, "eject_seconds": 0.1, "max_retries": 50})
    recipe = apply_overrides(load_recipe(write_recipe(tmp_path, recipe_dict)), base_url=scripted_server.base_url)
    with pytest.raises(EndpointError, match=r"no endpoint of .* answered for 1 s.*--resume"):
        run_recipe(recipe, tmp_path / "out", show_progress=False)
    assert not (tmp_path / "out" / "data").exists()

    down["now"] = False
    result = run_recipe(recipe, tmp_path / "out", show_progress=False, resume=True)
    assert result.stats.generated == DIALOGUES
    assert all(row["raw_generation"] for row in all_rows(tmp_path))


@pytest.mark.parametrize("on_ray", [False, pytest.param(True, marks=pytest.mark.ray)], ids=["in-process", "ray"])
def test_an_endpoint_that_answers_html_stops_the_run_with_one_line_and_no_version(tmp_path, scripted_server, on_ray):
    import subprocess
    import sys

    from tests.conftest import subprocess_env

    scripted_server.script = lambda request: ScriptedReply(
        raw=b"<html><body>502 Bad Gateway</body></html>", content_type="text/html"
    )
    path = write_recipe(
        tmp_path, small_recipe(dialogues=DIALOGUES, ray={"enabled": on_ray}, generation={"chunk_size": 2})
    )
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
            scripted_server.base_url,
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"error: the endpoint at {scripted_server.base_url} is not answering"
    ), lines
    assert "an HTML page: '<html><body>502 Bad Gateway</body></html>'" in lines[0]
    assert (
        not (out / "data").exists()
        and "v1.0.0" not in subprocess.run(["git", "-C", str(out), "tag"], capture_output=True, text=True).stdout
    )


def test_an_endpoint_that_refuses_json_schema_gets_json_object_and_the_manifest_says_so(tmp_path, scripted_server):
    script = scripted_server.script

    def refuses_json_schema(request):
        if (request.get("response_format") or {}).get("type") == "json_schema":
            return ScriptedReply(status=500, content="Internal Server Error")  # llama-cpp-python's own server
        return script(request)

    scripted_server.script = refuses_json_schema
    _recipe, result = run_with(tmp_path, scripted_server)
    judged = [v for row in all_rows(tmp_path) for v in row["verdicts"] if v["critic"] == "faithfulness"]
    assert judged and all(v["answered"] for v in judged), [v["reason"] for v in judged if not v["answered"]]
    assert any(v["passed"] for v in judged) and any(not v["passed"] for v in judged)  # the scripted judge's own answers
    assert result.manifest["structured_output"] == {
        "configured": "json_schema",
        "used": "json_object",
        "refused_by": scripted_server.base_url,
    }
    assert failures_of(result) == 0
