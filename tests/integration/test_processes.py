"""However a run ends, it ends whole: Ctrl-C and SIGTERM say so and exit 130 and 143 (so `run &&
push` stops), the journal is kept for --resume, and the embedded llama.cpp server dies with the
run, even one killed with SIGKILL, leaving no log file behind."""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from factory.dataset.folder import DatasetFolder
from factory.engine.journal import RunJournal
from tests.conftest import subprocess_env
from tests.recipes import small_recipe, write_recipe


def start_run(recipe: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "factory.cli", "run", str(recipe), "--out", str(out), "--no-progress", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=subprocess_env(),
    )


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def journaled(out: Path) -> int:
    path = out / ".persona-factory" / "run" / "journal"
    if not path.exists():
        return 0
    with RunJournal(path) as journal:
        return journal.rows


@pytest.mark.parametrize(
    "signum, code, name", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")], ids=["ctrl-c", "sigterm"]
)
def test_an_interrupted_run_says_so_exits_non_zero_and_resumes(tmp_path, scripted_server, signum, code, name):
    scripted_server.delay = 0.2
    recipe = write_recipe(
        tmp_path,
        small_recipe(dialogues=24, ray={"enabled": False}, generation={"chunk_size": 2}, llm={"max_concurrency": 2}),
    )
    out = tmp_path / "out"
    run = start_run(recipe, out, "--base-url", scripted_server.base_url)
    wait_for(lambda: journaled(out) >= 2, 120, "the first dialogues in the journal")
    run.send_signal(signum)
    _stdout, stderr = run.communicate(timeout=60)
    assert run.returncode == code, stderr[-2000:]
    assert (
        stderr.strip().splitlines()[-1]
        == f"interrupted ({name}); the finished dialogues are kept: continue with --resume --out {out}"
    )
    assert "Traceback" not in stderr and DatasetFolder(out).versions() == []
    kept = journaled(out)
    assert 2 <= kept < 24
    scripted_server.delay = 0.0
    resumed = subprocess.run(
        [
            sys.executable,
            "-m",
            "factory.cli",
            "run",
            str(recipe),
            "--out",
            str(out),
            "--no-progress",
            "--resume",
            "--base-url",
            scripted_server.base_url,
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"resumed: {kept} dialogues were already finished" in resumed.stdout


def descendants_of(pid: int, matches: Callable[[psutil.Process], bool]) -> list[psutil.Process]:
    """The processes below ``pid`` that ``matches`` takes (one gone, or a zombie not yet reaped, is not)."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    found = []
    for child in children:
        try:
            if matches(child):
                found.append(child)
        except psutil.Error:
            pass
    return found


def llama_servers_of(pid: int) -> list[psutil.Process]:
    return descendants_of(pid, lambda child: "llama-server" in " ".join(child.cmdline()))


def gone(process: psutil.Process) -> bool:
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.embedded
@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_the_embedded_server_dies_with_its_run(tmp_path, signum):
    logs_before = set(glob.glob(os.path.join(tempfile.gettempdir(), "persona-factory-llama-*.log")))
    recipe = write_recipe(tmp_path, small_recipe(dialogues=4, ray={"enabled": False}))
    run = start_run(recipe, tmp_path / "out")
    server = wait_for(lambda: llama_servers_of(run.pid), 120, "the embedded server to start")[0]
    port = wait_for(
        lambda: [c.laddr.port for c in server.net_connections() if c.status == psutil.CONN_LISTEN],
        120,
        "the embedded server to listen",
    )[0]
    run.send_signal(signum)
    run.communicate(timeout=60)
    assert run.returncode == (-signal.SIGKILL if signum == signal.SIGKILL else 143)
    wait_for(lambda: gone(server), 15, f"the llama.cpp server (pid {server.pid}) to die with its run")

    def listening() -> list:
        return [c for c in psutil.net_connections("tcp") if c.laddr.port == port and c.status == psutil.CONN_LISTEN]

    # the kernel may list a killed process's listening socket for a moment after the process is gone
    deadline = time.monotonic() + 10
    while listening() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert listening() == []
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "persona-factory-llama-*.log"))) == logs_before


@pytest.mark.ray
def test_the_local_ray_of_a_run_listens_on_loopback_only(tmp_path, scripted_server):
    # Ray has no authentication of its own: a port reachable from the network takes anyone's code
    scripted_server.delay = 0.3
    recipe = write_recipe(tmp_path, small_recipe(dialogues=12, ray={"workers": 1}, generation={"chunk_size": 2}))
    run = start_run(recipe, tmp_path / "out", "--base-url", scripted_server.base_url)
    try:
        wait_for(lambda: journaled(tmp_path / "out") > 0, 240, "the Ray workers to finish a chunk")
        processes = [psutil.Process(run.pid), *psutil.Process(run.pid).children(recursive=True)]
        pids = {process.pid for process in processes}
        listening = [
            (connection.laddr.ip, connection.laddr.port, connection.pid)
            for connection in psutil.net_connections(kind="inet")
            if connection.status == psutil.CONN_LISTEN and connection.pid in pids
        ]
        names = {process.pid: process.name() for process in processes}
        assert any("raylet" in names[pid] or "gcs_server" in names[pid] for _, _, pid in listening)
        beyond = [
            (ip, port, names[pid]) for ip, port, pid in listening if ip not in ("127.0.0.1", "::ffff:127.0.0.1", "::1")
        ]
        assert beyond == []
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr[-2000:]
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()


def ray_processes_of(pid: int) -> list[psutil.Process]:
    return descendants_of(pid, lambda child: any(word in child.name() for word in ("raylet", "gcs_server", "ray::")))


@pytest.mark.ray
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_run_on_local_ray_ends_whole_on_sigterm_and_sigkill(tmp_path, scripted_server, signum):
    scripted_server.delay = 0.3
    recipe = write_recipe(tmp_path, small_recipe(dialogues=24, ray={"workers": 1}, generation={"chunk_size": 2}))
    out = tmp_path / "out"
    run = start_run(recipe, out, "--base-url", scripted_server.base_url)
    try:
        wait_for(lambda: journaled(out) >= 2, 240, "the first dialogues in the journal")
        ray_processes = ray_processes_of(run.pid)
        assert ray_processes, "the run started no local Ray"
        run.send_signal(signum)
        _stdout, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    if signum == signal.SIGTERM:
        assert run.returncode == 143, stderr[-2000:]
        assert stderr.strip().splitlines()[-1].startswith("interrupted (SIGTERM); the finished dialogues are kept")
    else:
        assert run.returncode == -signal.SIGKILL
    wait_for(lambda: all(gone(process) for process in ray_processes), 20, "the run's Ray processes to end with it")


def test_an_endpoint_that_stops_answering_fails_within_its_timeout(tmp_path, scripted_server):
    scripted_server.delay = 30.0  # accepts every request and answers none in time
    recipe = write_recipe(
        tmp_path, small_recipe(dialogues=4, ray={"enabled": False}, llm={"timeout": 2, "max_retries": 5})
    )
    started = time.monotonic()
    run = start_run(recipe, tmp_path / "out", "--base-url", scripted_server.base_url)
    _stdout, stderr = run.communicate(timeout=120)
    took = time.monotonic() - started
    assert run.returncode == 1, stderr[-2000:]
    (line,) = stderr.strip().splitlines()
    assert line.startswith(f"error: the endpoint at {scripted_server.base_url} answered nothing for 2 s (llm.timeout)")
    assert "--resume" in line
    assert took < 2 * 6  # one timeout, not one per retry (six of them)


def healthy(process: psutil.Process) -> bool:
    """The server has loaded its model: its /health answers 200 (it listens before that)."""
    import urllib.request

    try:
        ports = [c.laddr.port for c in process.net_connections() if c.status == psutil.CONN_LISTEN]
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[0]}/health", timeout=2) as response:
            return response.status == 200
    except (psutil.NoSuchProcess, IndexError, OSError):
        return False


def embedded_recipe(tmp_path: Path, dialogues: int = 4) -> Path:
    return write_recipe(
        tmp_path,
        small_recipe(
            dialogues=dialogues, ray={"enabled": False}, personas=[{"source": "mbti", "count": 4}],
            generation={"min_turns": 2, "max_turns": 4, "few_shot": 0, "chunk_size": 2},
        ),
    )  # fmt: skip


@pytest.mark.embedded
@pytest.mark.slow
def test_an_embedded_server_killed_mid_run_is_started_again_and_the_run_finishes(tmp_path):
    run = start_run(embedded_recipe(tmp_path), tmp_path / "out")
    try:
        first = wait_for(lambda: llama_servers_of(run.pid), 180, "the embedded server to start")[0]
        wait_for(lambda: healthy(first), 180, "the embedded server to load its model")
        time.sleep(2)  # the run's first requests in flight
        first.kill()  # as the kernel's OOM killer would
        _stdout, stderr = run.communicate(timeout=600)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 0, stderr[-2000:]
    assert (
        "warning: the embedded llama.cpp server was killed by signal 9; starting it again (1 of 3 restarts)" in stderr
    )
    assert DatasetFolder(tmp_path / "out").versions() == ["v1.0.0"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["stats"]["generated"] == 4


@pytest.mark.embedded
@pytest.mark.slow
def test_an_embedded_server_that_keeps_dying_stops_the_run_with_one_line(tmp_path):
    run = start_run(embedded_recipe(tmp_path, dialogues=200), tmp_path / "out")  # long enough for four kills
    killed: set[int] = set()
    try:
        first = wait_for(lambda: llama_servers_of(run.pid), 180, "the embedded server to start")[0]
        wait_for(lambda: healthy(first), 180, "the embedded server to load its model")
        time.sleep(2)  # the run has started on it: from here on each death is the supervisor's to handle
        while len(killed) < 4 and run.poll() is None:
            for server in llama_servers_of(run.pid):
                if server.pid not in killed and not gone(server) and healthy(server):  # loaded, then killed
                    killed.add(server.pid)
                    server.kill()
            time.sleep(0.2)
        last_kill = time.monotonic()
        _stdout, stderr = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert time.monotonic() - last_kill < 60, f"{len(killed)} killed; {stderr[-2000:]}"
    assert run.returncode == 1, stderr[-2000:]
    errors = [line for line in stderr.strip().splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr[-3000:]
    assert errors[0].startswith("error: the embedded llama.cpp server was killed by signal 9, after 3 restart(s)"), (
        stderr[-3000:]
    )
    assert "kept for --resume" in errors[0]
