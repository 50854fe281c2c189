"""What the reply cache saves when only a critic changes: a run, then the same recipe with one
critic's setting changed, side by side against one scripted server, with a fresh cache.

The second run should make no generation call (every dialogue's question was asked before) and
ask only the critic whose prompt changed. The server answers a generation in ``--generation-ms``
and a critic in ``--critic-ms`` (a dialogue is a long completion, a verdict a short one), so wall
time follows requests as it does against a real endpoint. The last line is
``ratio second/first run time: X.XX``.

    python bench/cache.py --dialogues 1000
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _project  # noqa: F401 - the project root on sys.path, for tests.openai_server

from tests.openai_server import ScriptedOpenAIServer
from tests.scripts import DialogueScript

GENERATOR_SYSTEM = "You write natural"


class TimedScript:
    """The tests' dialogue script, with a generation's and a critic's latency, counting each kind."""

    def __init__(self, generation_seconds: float, critic_seconds: float) -> None:
        self.inner = DialogueScript()
        self.generation_seconds, self.critic_seconds = generation_seconds, critic_seconds
        self.counts = {"generation": 0, "critics": 0}
        self.lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> Any:
        kind = "generation" if request["messages"][0]["content"].startswith(GENERATOR_SYSTEM) else "critics"
        with self.lock:
            self.counts[kind] += 1
        time.sleep(self.generation_seconds if kind == "generation" else self.critic_seconds)
        return self.inner(request)


def recipe_for(dialogues: int, few_shot_critic: bool, cache: Path) -> dict[str, Any]:
    return {
        "name": "cache",
        "seed": 3,
        "personas": [{"source": "statements", "count": 200}],
        "casting": {"dialogues": dialogues},
        "generation": {"min_turns": 4, "max_turns": 8, "few_shot": 1, "chunk_size": 16},
        "critics": {"faithfulness": {"few_shot": few_shot_critic}},
        "llm": {"max_concurrency": 64, "initial_concurrency": 64, "cache": {"path": str(cache)}},
        "ray": {"enabled": False},
        "output": {"samples_in_card": 3, "review_samples": 5},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialogues", type=int, default=1000)
    parser.add_argument("--generation-ms", type=float, default=400)
    parser.add_argument("--critic-ms", type=float, default=80)
    args = parser.parse_args()

    from factory.api import apply_overrides, parse_recipe, run_recipe

    script = TimedScript(args.generation_ms / 1000, args.critic_ms / 1000)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, ScriptedOpenAIServer(script, keep_requests=False) as server:
        for label, few_shot in (("first run", True), ("critic changed", False)):
            before = dict(script.counts)
            recipe = apply_overrides(
                parse_recipe(recipe_for(args.dialogues, few_shot, Path(tmp) / "replies")), base_url=server.base_url
            )
            started = time.perf_counter()
            result = run_recipe(recipe, Path(tmp) / label.replace(" ", "-"), show_progress=False)
            seconds = time.perf_counter() - started
            asked = {kind: script.counts[kind] - before[kind] for kind in script.counts}
            rows.append((label, result.stats.generated, asked["generation"], asked["critics"], seconds))
    print(f"{'run':<16}{'dialogues':>10}{'generation calls':>18}{'critic calls':>14}{'seconds':>10}")
    for label, dialogues, generation, critics, seconds in rows:
        print(f"{label:<16}{dialogues:>10}{generation:>18}{critics:>14}{seconds:>10.1f}")
    print(f"ratio second/first run time: {rows[1][4] / rows[0][4]:.2f}")


if __name__ == "__main__":
    main()
