"""Progress moves per finished dialogue, on a terminal and in a log, on Ray too, where a chunk of
work comes back whole; nothing else lands in the middle of the bar."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios

import pytest

from tests.conftest import subprocess_env
from tests.recipes import small_recipe, write_recipe


def run_on_a_terminal(command: list[str], timeout: float = 300) -> tuple[int, str]:
    """The command on a pseudo-terminal of 120 columns (a bar needs a width), and what it showed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=subprocess_env())
    os.close(slave)
    shown = b""
    try:
        while True:
            readable, _, _ = select.select([master], [], [], 0.5)
            if readable:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the terminal closed with the process
                    break
                if not chunk:
                    break
                shown += chunk
            elif process.poll() is not None:
                break
        return process.wait(timeout=timeout), shown.decode(errors="replace")
    finally:
        os.close(master)


@pytest.mark.ray
@pytest.mark.slow
def test_the_bar_advances_per_dialogue_on_ray_with_one_chunk(tmp_path, scripted_server):
    scripted_server.delay = 0.15
    # one chunk holds all eight dialogues: before, the bar sat at 0/8 and jumped at the end
    recipe = write_recipe(
        tmp_path,
        small_recipe(dialogues=8, generation={"chunk_size": 8}, llm={"max_concurrency": 1, "initial_concurrency": 1}),
    )
    code, shown = run_on_a_terminal(
        [
            sys.executable,
            "-m",
            "factory.cli",
            "run",
            str(recipe),
            "--out",
            str(tmp_path / "out"),
            "--base-url",
            scripted_server.base_url,
        ]
    )
    assert code == 0, shown[-2000:]
    counts = [int(n) for n in re.findall(r"dialogues:\s+\d+%\|[^|]*\|\s*(\d+)/8", shown)]
    assert counts and counts == sorted(counts) and counts[-1] == 8
    assert len({n for n in counts if 0 < n < 8}) >= 3, counts
    assert "WARNING" not in shown and "Token authentication" not in shown


def test_a_log_gets_a_line_a_minute_with_the_figures_not_a_redrawn_bar(tmp_path, scripted_server):
    priced = {"max_retries": 2, "backoff_base": 0.05, "pricing": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}}
    recipe = write_recipe(tmp_path, small_recipe(dialogues=8, ray={"enabled": False}, llm=priced))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "factory.cli",
            "run",
            str(recipe),
            "--out",
            str(tmp_path / "out"),
            "--base-url",
            scripted_server.base_url,
        ],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("dialogues:")]
    # a run of seconds: the line at the start and the one at the end, nothing in between
    assert len(lines) == 2 and "\r" not in result.stderr
    assert lines[0].startswith("dialogues: 0/8 (0%)") and lines[1].startswith("dialogues: 8/8 (100%)")
    accepted = int(re.search(r"accepted (\d+)", lines[1]).group(1))
    assert f"{accepted} accepted," in result.stdout  # the count the run's summary gives
    calls = float(re.search(r"([\d.]+) calls/s", lines[1]).group(1))
    assert calls > 0 and re.search(r"[\d,]+ tok/s", lines[1]) and "$" in lines[1]


def test_quiet_prints_lines_on_a_terminal_too(tmp_path, scripted_server):
    recipe = write_recipe(tmp_path, small_recipe(dialogues=4, ray={"enabled": False}))
    code, shown = run_on_a_terminal(
        [sys.executable, "-m", "factory.cli", "run", str(recipe), "--out", str(tmp_path / "out"),
         "--base-url", scripted_server.base_url, "--quiet"]
    )  # fmt: skip
    assert code == 0, shown[-2000:]
    assert "dialogues: 4/4 (100%)" in shown and "%|" not in shown  # lines, no bar
