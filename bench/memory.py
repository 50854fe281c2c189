"""Peak memory of a whole run (plan, engine, journal, version written) at two sizes, each in a
fresh process against one fast scripted server, side by side in one invocation.

The run streams: prompts are built a chunk at a time, finished dialogues go to the journal as they
finish, and the version's shards, statistics and card are made a batch at a time from the journal.
So the peak should hardly grow with the run. The last line is ``ratio peak 100k/10k: X.XX``.

    python bench/memory.py --small 10000 --large 100000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _project  # noqa: F401 - the project root on sys.path, for tests.openai_server

from tests.openai_server import ScriptedOpenAIServer

DIALOGUE = "\n".join(f"User {1 + i % 2}: line {i} about gardening, the weather and a long walk today" for i in range(8))


def recipe_for(dialogues: int, concurrency: int) -> dict:
    return {
        "name": "memory",
        "seed": 1,
        "personas": [{"source": "mbti", "count": 16}, {"source": "big_five", "count": 16}],
        "casting": {"dialogues": dialogues},
        "generation": {"min_turns": 4, "max_turns": 12, "few_shot": 1, "max_tokens": 300, "chunk_size": 16},
        "critics": {"heuristic": {"enabled": True}, "faithfulness": {"enabled": False}},
        "llm": {"max_concurrency": concurrency, "max_retries": 3, "cache": {"enabled": False}},  # every call a request
        "ray": {"enabled": False},
        "output": {"samples_in_card": 3, "review_samples": 5},
    }


def one_run(dialogues: int, base_url: str, concurrency: int) -> None:
    """In the child: run the recipe into a fresh folder, print the peak resident set."""
    from factory.api import apply_overrides, parse_recipe, run_recipe

    recipe = apply_overrides(parse_recipe(recipe_for(dialogues, concurrency)), base_url=base_url)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        result = run_recipe(recipe, Path(tmp) / "out", show_progress=False)
        seconds = time.perf_counter() - started
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"dialogues": result.stats.generated, "peak_mib": peak_kib / 1024, "seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        one_run(args.one, args.base_url, args.concurrency)
        return

    peaks = {}
    with ScriptedOpenAIServer(lambda request: DIALOGUE, keep_requests=False) as server:
        for size in (args.small, args.large):
            completed = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--one",
                    str(size),
                    "--base-url",
                    server.base_url,
                    "--concurrency",
                    str(args.concurrency),
                ],
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONWARNINGS": "ignore"},
                check=False,
            )
            if completed.returncode != 0:
                sys.exit(f"the run of {size} dialogues failed:\n{completed.stderr[-3000:]}")
            figures = json.loads(completed.stdout.strip().splitlines()[-1])
            peaks[size] = figures["peak_mib"]
            print(
                f"{figures['dialogues']:>7} dialogues: peak {figures['peak_mib']:7.1f} MiB, {figures['seconds']:6.1f} s "
                f"({figures['dialogues'] / figures['seconds']:.0f} dialogues/s)"
            )
    print(f"ratio peak {args.large // 1000}k/{args.small // 1000}k: {peaks[args.large] / peaks[args.small]:.2f}")


if __name__ == "__main__":
    main()
