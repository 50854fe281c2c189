"""Talking points on the embedded model: the quickstart recipe with `role_play.memory.talking_points`
off and on, side by side on one embedded server, each repeat with the same seeds and no reply cache.
Prints the dialogues accepted, the grounding critic's pass rate among those it judged, and the
turns given a talking point.

    python bench/talking_points.py --repeats 2
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from factory.llm.embedded import EmbeddedServer
from factory.recipes import apply_overrides, load_recipe
from factory.recipes.paths import resolve_recipe_path
from factory.run import run_recipe


def one_run(talking_points: bool, base_url: str, model: str, out: Path, seed: int) -> tuple[int, int, int, int]:
    recipe = apply_overrides(load_recipe(resolve_recipe_path("quickstart")), base_url=base_url, model=model)
    role_play = recipe.generation.role_play
    memory = role_play.memory.model_copy(update={"talking_points": talking_points})
    generation = recipe.generation.model_copy(update={"role_play": role_play.model_copy(update={"memory": memory})})
    llm = recipe.llm.model_copy(update={"cache": recipe.llm.cache.model_copy(update={"enabled": False})})
    recipe = recipe.model_copy(
        update={
            "generation": generation,
            "llm": llm,
            "seed": seed,
            "ray": recipe.ray.model_copy(update={"enabled": False}),
        }
    )
    result = run_recipe(recipe, out, show_progress=False)
    grounding = next((c for c in result.stats.critics if c.critic == "grounding"), None)
    return (
        result.stats.accepted,
        result.stats.generated,
        grounding.passed if grounding else 0,
        grounding.judged if grounding else 0,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    totals = {False: [0, 0, 0, 0], True: [0, 0, 0, 0]}
    with EmbeddedServer() as server, tempfile.TemporaryDirectory() as work:
        for repeat in range(args.repeats):
            for talking_points in (False, True):  # in turn, so both see the same machine load
                out = Path(work) / f"{talking_points}-{repeat}"
                figures = one_run(talking_points, server.base_url, server.model, out, seed=7 + repeat)
                totals[talking_points] = [a + b for a, b in zip(totals[talking_points], figures)]
                print(f"repeat {repeat} talking_points={talking_points}: accepted {figures[0]}/{figures[1]}, "
                      f"grounding passed {figures[2]}/{figures[3]}", flush=True)  # fmt: skip
    for talking_points, (accepted, generated, passed, judged) in totals.items():
        print(f"talking_points={talking_points}: accepted {accepted}/{generated}, grounding passed {passed}/{judged}")


if __name__ == "__main__":
    main()
