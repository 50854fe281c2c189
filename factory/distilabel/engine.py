"""A whole recipe as one distilabel generator step, run on the factory's own engine; and the
``pipeline.yaml`` every version carries, which distilabel reads and reruns.

The step runs the recipe exactly as ``persona-factory run`` does (the engine at the endpoint's
limit, the critics, acceptance), into a scratch dataset folder, then yields its dialogues in
batches with the columns the critic steps read. On Ray when the step's process has Ray
initialised (a pipeline run with ``.ray()``), in process otherwise.
"""

# No ``from __future__ import annotations``: distilabel reads the step's annotations at run time.
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

import pyarrow.parquet as pq
from distilabel.mixins.runtime_parameters import RuntimeParameter
from distilabel.models.llms.base import LLM
from distilabel.pipeline import Pipeline
from distilabel.steps import GeneratorStep
from distilabel.typing import GeneratorStepOutput, StepColumns
from pydantic import Field

from factory.critics.base import hard_gates
from factory.dataset.pipeline_file import GENERATOR_NAME, PIPELINE_DESCRIPTION
from factory.distilabel.columns import conversation_of
from factory.distilabel.critics import CRITIC_STEPS
from factory.distilabel.steps import Accept, RecipeCasts, SelectBest, WriteDialogues, recipe_of
from factory.errors import RecipeError
from factory.recipes import Recipe, apply_overrides
from factory.recipes.critics import needs_llm
from factory.records import DialogueRecord

COLUMNS = ["id", "personas", "conversation", "verdicts", "accepted", "seed", "mode", "model_name"]


def dialogue_row(record: DialogueRecord) -> dict[str, Any]:
    """A factory dialogue with the columns distilabel steps read."""
    return {
        "id": record.id,
        "personas": [persona.model_dump(mode="json") for persona in record.speakers],
        "conversation": conversation_of(record),
        "verdicts": [verdict.model_dump(mode="json") for verdict in record.verdicts],
        "accepted": record.accepted,
        "seed": record.generation.seed,
        "mode": record.generation.mode,
        "model_name": record.generation.model,
    }


class RecipeDialogues(GeneratorStep):  # type: ignore[misc]  # distilabel's types are not followed (pyproject)
    """Every dialogue of a recipe, made and judged by the factory's engine."""

    recipe: str = Field(description="The recipe, as YAML text (what a version's recipe.yaml holds).")
    base_url: RuntimeParameter[str] | None = Field(
        default=None, description="The generator's endpoint; none: embedded."
    )
    model: RuntimeParameter[str] | None = Field(default=None, description="The generator's model.")
    judge_base_url: RuntimeParameter[str] | None = Field(default=None, description="The critics' judge endpoint.")
    judge_model: RuntimeParameter[str] | None = Field(default=None, description="The critics' judge model.")

    @property
    def outputs(self) -> StepColumns:
        return COLUMNS

    def loaded_recipe(self) -> Recipe:
        recipe = apply_overrides(
            recipe_of(self.recipe), base_url=self.base_url, model=self.model,
            judge_base_url=self.judge_base_url, judge_model=self.judge_model,
        )  # fmt: skip
        ray = sys.modules.get("ray")
        on_ray = ray is not None and ray.is_initialized()
        return recipe.model_copy(update={"ray": recipe.ray.model_copy(update={"enabled": on_ray})})

    def process(self, offset: int = 0) -> GeneratorStepOutput:
        from factory.run import run_recipe  # the run is above this layer's steps, and heavy to import

        with tempfile.TemporaryDirectory(prefix="persona-factory-") as scratch:
            result = run_recipe(self.loaded_recipe(), Path(scratch) / "dataset", show_progress=False)
            rows = [
                dialogue_row(DialogueRecord.model_validate(row))
                for split in ("accepted", "rejected")
                for path in sorted((result.path / "data").glob(f"{split}-*.parquet"))
                for row in pq.read_table(path).to_pylist()
            ]
        rows.sort(key=lambda row: row["id"])
        rows = rows[offset:]
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start : start + self.batch_size]
            yield batch, start + len(batch) >= len(rows)
        if not rows:
            yield [], True


def build_pipeline(
    recipe_text: str, name: str, mode: Literal["engine", "steps"] = "engine", llm: LLM | None = None
) -> Pipeline:
    """The distilabel pipeline of a recipe. ``engine``: one step that runs it on the factory's
    engine. ``steps``: its casts, the writer and each critic of its cascade as steps of their own,
    all asking ``llm`` (by default an ``OpenAILLM`` at the recipe's endpoint), then best-of-N and
    the accept decision; one round, no run-wide dedup."""
    if mode == "engine":
        with Pipeline(name=name, description=PIPELINE_DESCRIPTION) as pipeline:
            RecipeDialogues(name=GENERATOR_NAME, recipe=recipe_text)
        return pipeline
    if mode != "steps":
        raise ValueError(f"unknown pipeline mode {mode!r}")
    recipe = recipe_of(recipe_text)
    llm = llm or _recipe_llm(recipe)
    gates = sorted(hard_gates(recipe.critics))
    generation = recipe.generation
    # whole casts to a batch, for best-of-N: a multiple of the candidates, in cast order
    batch = generation.candidates * max(1, 50 // generation.candidates)
    with Pipeline(name=name, description="persona-factory: the recipe as distilabel steps") as pipeline:
        last: Any = RecipeCasts(name="plan_casts", recipe=recipe_text, batch_size=batch)
        last = last >> WriteDialogues(name="write_dialogues", recipe=recipe_text, llm=llm, input_batch_size=batch)
        for critic, config in recipe.critics.cascade():
            settings = config.model_dump(mode="json", exclude={"enabled", "llm", "jury"})
            step = CRITIC_STEPS[critic](
                name=f"critic_{critic}", settings=settings, min_turns=generation.min_turns,
                max_turns=generation.max_turns, gates=gates, input_batch_size=batch,
                **({"llm": llm} if needs_llm(critic) else {}),
            )  # fmt: skip
            last = last >> step
        if recipe.critics.quality.enabled and generation.candidates > 1:
            last = last >> SelectBest(name="select_best", recipe=recipe_text, llm=llm, input_batch_size=batch)
        last >> Accept(name="accept", recipe=recipe_text, input_batch_size=batch)
    return pipeline


def _recipe_llm(recipe: Recipe) -> LLM:
    from distilabel.models import OpenAILLM

    from factory.llm.keys import ApiKeys

    if not recipe.llm.base_urls or not recipe.llm.model:
        raise RecipeError("steps mode needs llm.base_url and llm.model, or an llm= of your own", field="llm")
    return OpenAILLM(
        base_url=recipe.llm.base_urls[0], model=recipe.llm.model, api_key=ApiKeys().for_endpoint(recipe.llm) or "none"
    )
