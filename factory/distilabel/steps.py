"""A recipe as distilabel steps (``build_pipeline(..., mode="steps")``): the casts planned from
the recipe's seed, each dialogue written by the recipe's writer (SPC in one call, role-play turn by
turn), the critics of the cascade one step each, and the accept decision. Every step runs the
engine's own code, so for the same seed and replies the rows are the engine's dialogues.

The planned dialogue travels as ``record`` (the factory's record, as JSON); the columns the critic
steps read (``personas``, ``conversation``, ``verdicts``) are written beside it.
"""

# No ``from __future__ import annotations``: distilabel reads the steps' annotations at run time.
import asyncio
from pathlib import Path
from typing import Any

import yaml
from distilabel.steps import GeneratorStep, Step, StepInput
from distilabel.typing import GeneratorStepOutput, StepColumns, StepOutput
from pydantic import Field

from factory.critics.base import JudgeContext, passed_so_far
from factory.critics.quality import select_best
from factory.distilabel.base import LLMStep
from factory.distilabel.columns import conversation_of
from factory.distilabel.port import DistilabelChat
from factory.engine.rounds import plan_rows
from factory.errors import RecipeError
from factory.generation import WRITERS
from factory.generation.role_play.chat import chat_example
from factory.generation.writer import Voices
from factory.llm.spec import EndpointSpec
from factory.personas import plan
from factory.recipes import Recipe, parse_recipe
from factory.recipes.generation import GenerationConfig
from factory.records import DialogueRecord, Verdict


def recipe_of(text: str) -> Recipe:
    """A recipe from its YAML text; relative paths in it start where the pipeline runs."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"the step's recipe is not YAML: {exc}") from None
    return parse_recipe(data, path=Path.cwd() / "recipe.yaml")


class RecipeCasts(GeneratorStep):  # type: ignore[misc]  # distilabel's types are not followed (pyproject)
    """Every candidate dialogue of a recipe, planned from its seed: the empty record and its prompt."""

    recipe: str = Field(description="The recipe, as YAML text.")

    @property
    def outputs(self) -> StepColumns:
        return ["id", "record", "prompt"]

    def process(self, offset: int = 0) -> GeneratorStepOutput:
        recipe = recipe_of(self.recipe)
        if recipe.generation.rounds > 1 or recipe.critics.dedup.enabled:
            raise RecipeError("steps mode runs one round without run-wide dedup; use mode 'engine' for those")
        # the model is the writing step's LLM's; the planned prompts do not depend on it
        spec = EndpointSpec(base_urls=("http://planned",), model="")
        rows = [
            {"id": record.id, "record": record.model_dump_json(), "prompt": prompt}
            for record, prompt in plan_rows(recipe, plan(recipe).casts, spec)
        ][offset:]
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start : start + self.batch_size]
            yield batch, start + len(batch) >= len(rows)
        if not rows:
            yield [], True


class WriteDialogues(LLMStep):
    """Each planned dialogue written by its mode's writer through ``llm``."""

    recipe: str = Field(description="The recipe, as YAML text: its generation settings.")

    @property
    def inputs(self) -> StepColumns:
        return ["record", "prompt"]

    @property
    def outputs(self) -> StepColumns:
        return ["record", "personas", "conversation", "verdicts", "seed", "prompt_hash", "model_name"]

    def process(self, inputs: StepInput) -> StepOutput:
        generation = recipe_of(self.recipe).generation
        voices = Voices(DistilabelChat(self.llm))
        records = [DialogueRecord.model_validate_json(row["record"]) for row in inputs]
        for record in records:
            record.generation.model = str(self.llm.model_name)

        async def write_all() -> None:
            await asyncio.gather(
                *(
                    WRITERS[r.generation.mode].write(r, row["prompt"], voices, generation)
                    for r, row in zip(records, inputs)
                )
            )

        self.run_async(write_all())
        for row, record in zip(inputs, records):
            row.update(
                record=record.model_dump_json(),
                personas=[persona.model_dump(mode="json") for persona in record.speakers],
                conversation=conversation_of(record),
                verdicts=[verdict.model_dump(mode="json") for verdict in record.verdicts],
                seed=record.generation.seed,
                prompt_hash=record.generation.prompt_hash,
                model_name=record.generation.model,
            )
        yield inputs


class SelectBest(LLMStep):
    """Best-of-N (the quality critic): among a cast's candidates that passed every critic so far,
    the one the judge's pairwise policy votes prefer. A batch holds whole casts (its size is a
    multiple of the recipe's candidates, and the casts arrive in order)."""

    recipe: str = Field(description="The recipe, as YAML text: its quality settings.")

    @property
    def inputs(self) -> StepColumns:
        return ["record", "verdicts"]

    @property
    def outputs(self) -> StepColumns:
        return ["verdicts"]

    def process(self, inputs: StepInput) -> StepOutput:
        config = recipe_of(self.recipe).critics.quality
        client = DistilabelChat(self.llm)
        context = JudgeContext(client, GenerationConfig(min_turns=2, max_turns=1000), judge_model=client.model)
        by_cast: dict[str, list[DialogueRecord]] = {}
        rows_of: dict[str, dict[str, Any]] = {}
        for row in sorted(inputs, key=lambda row: row["id"]):
            record = DialogueRecord.model_validate_json(row["record"])
            record.verdicts = [Verdict.model_validate(verdict) for verdict in row["verdicts"]]
            if passed_so_far(record):
                by_cast.setdefault(record.generation.cast_id, []).append(record)
                rows_of[record.id] = row

        async def select_all() -> None:
            await asyncio.gather(*(select_best(group, config, context) for group in by_cast.values()))

        self.run_async(select_all())
        for group in by_cast.values():
            for record in group:
                rows_of[record.id]["verdicts"] = [verdict.model_dump(mode="json") for verdict in record.verdicts]
        yield inputs


class Accept(Step):  # type: ignore[misc]  # distilabel's types are not followed (pyproject)
    """A dialogue is accepted when every verdict it has passes (as the engine decides); an accepted
    dialogue of either mode is also a chat example (``messages``, as the version's ``messages``
    config has it with ``speakers: first``), else ``[]``."""

    recipe: str = Field(description="The recipe, as YAML text: its role-play settings.")

    @property
    def inputs(self) -> StepColumns:
        return ["record", "verdicts"]

    @property
    def outputs(self) -> StepColumns:
        return ["accepted", "messages"]

    def process(self, inputs: StepInput) -> StepOutput:
        role_play = recipe_of(self.recipe).generation.role_play
        for row in inputs:
            record = DialogueRecord.model_validate_json(row["record"])
            record.verdicts = [Verdict.model_validate(verdict) for verdict in row["verdicts"]]
            record.accepted = passed_so_far(record)
            row["accepted"] = record.accepted
            chat = chat_example(record, role_play).messages if record.accepted else []
            row["messages"] = [message.model_dump() for message in chat]
            row["record"] = record.model_dump_json()
        yield inputs
