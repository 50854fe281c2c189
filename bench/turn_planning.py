"""How the quickstart's turn planning pays on the embedded model: the quickstart recipe as shipped
(talking points and four candidate lines a turn), with its candidates off, and with its talking
points off too, side by side on one embedded server, each repeat with the same seeds and no reply
cache. Prints per variant the dialogues accepted, the grounding and learned critics' pass rates
among those they judged, the generation tokens and the wall time (a ratio between variants, not a
figure to compare across machines).

    python bench/turn_planning.py --repeats 1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from factory.api import EmbeddedServer, Recipe, apply_overrides, load_recipe, resolve_recipe_path, run_recipe

# name: (talking points, candidate lines a turn)
VARIANTS = {"plain": (False, 1), "talking points": (True, 1), "talking points + 4 candidates": (True, 4)}


def variant(recipe: Recipe, talking_points: bool, candidates: int, seed: int) -> Recipe:
    role_play = recipe.generation.role_play
    memory = role_play.memory.model_copy(update={"talking_points": talking_points})
    role_play = role_play.model_copy(update={"memory": memory, "line_candidates": candidates})
    llm = recipe.llm.model_copy(update={"cache": recipe.llm.cache.model_copy(update={"enabled": False})})
    return recipe.model_copy(
        update={
            "generation": recipe.generation.model_copy(update={"role_play": role_play}),
            "llm": llm,
            "seed": seed,
            "ray": recipe.ray.model_copy(update={"enabled": False}),
        }
    )


def one_run(recipe: Recipe, out: Path) -> list[int | float]:
    started = time.perf_counter()
    result = run_recipe(recipe, out, show_progress=False)
    figures: list[int | float] = [result.stats.accepted, result.stats.generated]
    for name in ("grounding", "learned"):
        critic = next((c for c in result.stats.critics if c.critic == name), None)
        figures += [critic.passed, critic.judged] if critic else [0, 0]
    return [*figures, result.stats.generation_tokens, time.perf_counter() - started]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    totals = {name: [0.0] * 8 for name in VARIANTS}
    with EmbeddedServer() as server, tempfile.TemporaryDirectory() as work:
        shipped = apply_overrides(
            load_recipe(resolve_recipe_path("quickstart")), base_url=server.base_url, model=server.model
        )
        for repeat in range(args.repeats):
            for name, (talking_points, candidates) in VARIANTS.items():  # in turn, so all see the same load
                recipe = variant(shipped, talking_points, candidates, seed=shipped.seed + repeat)
                figures = one_run(recipe, Path(work) / f"{repeat}-{candidates}-{talking_points}")
                totals[name] = [a + b for a, b in zip(totals[name], figures)]
                print(f"repeat {repeat} {name}: {report(figures)}", flush=True)
    for name, figures in totals.items():
        print(f"{name}: {report(figures)}")


def report(figures: list[int | float] | list[float]) -> str:
    accepted, generated, grounded, grounding_judged, learned, learned_judged, tokens, seconds = figures
    return (
        f"accepted {accepted:.0f}/{generated:.0f}, grounding passed {grounded:.0f}/{grounding_judged:.0f}, "
        f"learned passed {learned:.0f}/{learned_judged:.0f}, {tokens:,.0f} generation tokens, {seconds:.0f} s"
    )


if __name__ == "__main__":
    main()
