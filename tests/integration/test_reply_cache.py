"""The reply cache: a rerun pays only for the questions it has not asked before, across processes."""

from __future__ import annotations

import subprocess
import sys
import time

from factory.llm.cache import ReplyCache
from factory.llm.port import ChatResult
from factory.recipes import apply_overrides, load_recipe
from factory.records import TokenUsage
from factory.run import run_recipe
from tests.conftest import subprocess_env
from tests.recipes import small_recipe, write_recipe

GENERATOR_SYSTEM = "You write natural"


def _generation_calls(server) -> int:
    return sum(r["messages"][0]["content"].startswith(GENERATOR_SYSTEM) for r in server.requests)


def test_a_rerun_with_one_critic_changed_asks_only_that_critic(tmp_path, scripted_server):
    first = write_recipe(tmp_path, small_recipe(dialogues=8, ray={"enabled": False}), "first.yaml")
    result = run_recipe(apply_overrides(load_recipe(first), base_url=scripted_server.base_url), tmp_path / "a")
    asked = scripted_server.chat_calls
    assert _generation_calls(scripted_server) == 8
    endpoint = result.manifest["execution"]["endpoints"][scripted_server.base_url]
    assert endpoint["cache_hits"] == 0 and endpoint["cache_misses"] == asked
    assert endpoint["generation_requests"] == 8

    changed = small_recipe(dialogues=8, ray={"enabled": False}, critics={"faithfulness": {"few_shot": False}})
    second = write_recipe(tmp_path, changed, "second.yaml")
    again = run_recipe(apply_overrides(load_recipe(second), base_url=scripted_server.base_url), tmp_path / "b")
    new_requests = scripted_server.requests[asked:]
    assert not any(r["messages"][0]["content"].startswith(GENERATOR_SYSTEM) for r in new_requests)
    reached = sum(v.critic == "faithfulness" for v in _verdicts(tmp_path / "b"))
    assert len(new_requests) == reached > 0  # only the critic whose prompt changed was asked again
    endpoint = again.manifest["execution"]["endpoints"][scripted_server.base_url]
    assert endpoint["cache_hits"] == 8 and endpoint["cache_misses"] == reached
    assert endpoint["generation_requests"] == 0 and endpoint["judge_requests"] == reached  # as the manifest says
    assert again.stats.accepted == result.stats.accepted


def _verdicts(out):
    import pyarrow.parquet as pq

    from factory.records import Verdict

    return [
        Verdict.model_validate(verdict)
        for split in ("accepted", "rejected")
        for path in (out / "data").glob(f"{split}-*.parquet")
        for row in pq.read_table(path).to_pylist()
        for verdict in row["verdicts"]
    ]


def test_the_cache_survives_the_process_and_no_cache_turns_it_off(tmp_path, scripted_server):
    path = write_recipe(tmp_path, small_recipe(dialogues=4, ray={"enabled": False}))

    def run(out: str, *flags: str) -> None:
        command = [sys.executable, "-m", "factory.cli", "run", str(path), "--out", str(tmp_path / out)]
        command += ["--base-url", scripted_server.base_url, "--no-progress", *flags]
        finished = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), timeout=300)
        assert finished.returncode == 0, finished.stderr[-2000:]

    run("a")
    asked = scripted_server.chat_calls
    assert asked > 0
    run("b")  # another process, the same questions: all answered from disk
    assert scripted_server.chat_calls == asked
    run("c", "--no-cache")
    assert scripted_server.chat_calls == 2 * asked


WRITER = """
import sys
from factory.llm.cache import ReplyCache
from factory.llm.port import ChatResult
from factory.records import TokenUsage

cache = ReplyCache(sys.argv[1])
for n in range(int(sys.argv[3])):
    cache.put(f"{sys.argv[2]}-{n}", ChatResult(f"reply {n}", TokenUsage(prompt_tokens=n, completion_tokens=1), "stop"))
cache.close()
"""


def test_processes_writing_the_cache_at_once_lose_nothing(tmp_path):
    script = tmp_path / "writer.py"
    script.write_text(WRITER, encoding="utf-8")
    writers = [
        subprocess.Popen([sys.executable, str(script), str(tmp_path / "cache"), name, "300"], env=subprocess_env())
        for name in ("a", "b", "c")
    ]
    assert [writer.wait(timeout=120) for writer in writers] == [0, 0, 0]
    cache = ReplyCache(tmp_path / "cache")
    try:
        for name in ("a", "b", "c"):
            for n in (0, 150, 299):
                assert cache.get(f"{name}-{n}") == ChatResult(
                    f"reply {n}", TokenUsage(prompt_tokens=n, completion_tokens=1), "stop"
                )
        count = cache._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]
    finally:
        cache.close()
    assert count == 900


OPENER = """
import os, sys, time
from factory.llm.cache import ReplyCache
from factory.llm.port import ChatResult
from factory.records import TokenUsage

while not os.path.exists(sys.argv[2]):
    time.sleep(0.001)
cache = ReplyCache(sys.argv[1])
cache.put(sys.argv[3], ChatResult("reply", TokenUsage(prompt_tokens=1, completion_tokens=1), "stop"))
cache.close()
"""


def test_processes_opening_a_new_cache_at_once_all_open_it(tmp_path):
    # Ray workers start together and each opens the node's cache: the first to turn on WAL
    # holds the file a moment, and the others must wait for it, not fail
    script = tmp_path / "opener.py"
    script.write_text(OPENER, encoding="utf-8")
    for attempt in range(3):
        go = tmp_path / f"go-{attempt}"
        cache_dir = tmp_path / f"cache-{attempt}"
        openers = [
            subprocess.Popen(
                [sys.executable, str(script), str(cache_dir), str(go), f"key-{n}"],
                env=subprocess_env(),
                stderr=subprocess.PIPE,
                text=True,
            )
            for n in range(10)
        ]
        time.sleep(3)  # every process imported and waiting
        go.touch()
        finished = [(opener.communicate(timeout=120)[1], opener.returncode) for opener in openers]
        assert not [stderr[-300:] for stderr, code in finished if code != 0]
        cache = ReplyCache(cache_dir)
        try:
            assert cache._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0] == 10
        finally:
            cache.close()


def _run_cli(path, out, base_url, cache_dir):
    command = [sys.executable, "-m", "factory.cli", "run", str(path), "--out", str(out)]
    command += ["--base-url", base_url, "--no-progress"]
    env = {**subprocess_env(), "PERSONA_FACTORY_CACHE": str(cache_dir)}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def test_a_corrupt_cache_is_set_aside_and_the_run_goes_on(tmp_path, scripted_server):
    path = write_recipe(tmp_path, small_recipe(dialogues=4, ray={"enabled": False}))
    for n, garbage in enumerate((b"this is no database" * 100, b"SQLite format 3\x00" + b"\xff" * 8000)):
        cache_dir = tmp_path / f"cache-{n}"
        cache_dir.mkdir()
        (cache_dir / "replies.sqlite3").write_bytes(garbage)
        finished = _run_cli(path, tmp_path / f"out-{n}", scripted_server.base_url, cache_dir)
        assert finished.returncode == 0, finished.stderr[-2000:]
        assert "Traceback" not in finished.stderr
        warning = [line for line in finished.stderr.splitlines() if line.startswith("warning: the reply cache")]
        assert len(warning) == 1 and str(cache_dir / "replies.sqlite3") in warning[0], finished.stderr[-2000:]
        (aside,) = cache_dir.glob("replies.sqlite3.corrupt-*")
        assert aside.read_bytes() == garbage  # kept as it was, for whoever wants to look
        fresh = ReplyCache(cache_dir)  # the fresh cache holds this run's answers
        try:
            assert fresh._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0] > 0
        finally:
            fresh.close()


def test_a_cache_that_cannot_be_opened_is_warned_of_once(tmp_path, scripted_server):
    path = write_recipe(tmp_path, small_recipe(dialogues=4, ray={"enabled": False}))
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder should be", encoding="utf-8")
    finished = _run_cli(path, tmp_path / "out", scripted_server.base_url, blocked)
    assert finished.returncode == 0, finished.stderr[-2000:]
    warning = [line for line in finished.stderr.splitlines() if line.startswith("warning: the reply cache")]
    assert len(warning) == 1 and str(blocked) in warning[0] and "without it" in warning[0], finished.stderr[-2000:]
