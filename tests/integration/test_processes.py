"""However a run ends, it ends whole: Ctrl-C and SIGTERM say so and exit 130 and 143 (so `run &&
push` stops), the journal is kept for --resume, and the embedded llama.cpp server dies with the
run, even one killed with SIGKILL, leaving no log file behind."""

from __future__ import annotations

import glob
import os
import signal
import subprocess
import sys
import tempfile
import time
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


def llama_servers_of(pid: int) -> list[psutil.Process]:
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [child for child in children if "llama-server" in " ".join(child.cmdline())]


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
