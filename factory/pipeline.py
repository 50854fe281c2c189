"""Build the distilabel pipeline of a recipe and run it on Ray.

    load casts -> generate (SPC, one call per dialogue) -> heuristic gate -> faithfulness expert

Prompts are built here, on the driver, from the recipe's seed, so that a run is reproducible and
every worker only sends what it is given.
"""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distilabel.pipeline import RayPipeline
from distilabel.steps import LoadDataFromDicts, StepResources

from factory.config import Recipe
from factory.critics.steps import FaithfulnessCritic, HeuristicCritic
from factory.errors import PipelineError
from factory.generation.prompts import generator_messages, pick_few_shot
from factory.generation.steps import MESSAGES_COLUMN, GenerateDialogues
from factory.llm.client import EndpointSpec, prompt_hash
from factory.personas import Cast
from factory.records import DialogueRecord, GenerationMeta
from factory.steps import RECORD_COLUMN

if TYPE_CHECKING:
    from distilabel.pipeline.batch import _Batch


class ProgressRayPipeline(RayPipeline):
    """distilabel's Ray pipeline, with a progress bar per step fed from the driver's output loop."""

    def __init__(self, *args: Any, progress_total: int = 0, show_progress: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._progress_total = progress_total
        self._show_progress = show_progress
        self._bars: dict[str, Any] = {}

    def _process_batch(self, batch: _Batch, send_last_batch_flag: bool = True) -> None:
        rows = len(batch.data[0]) if batch.data else 0
        super()._process_batch(batch, send_last_batch_flag)
        if not self._show_progress or batch.step_name == "load_casts":
            return
        from tqdm.auto import tqdm

        bar = self._bars.get(batch.step_name)
        if bar is None:
            bar = self._bars[batch.step_name] = tqdm(
                total=self._progress_total, desc=f"{batch.step_name:>13}", unit="dlg", position=len(self._bars), leave=True
            )
        bar.update(rows)

    def close_progress(self) -> None:
        for bar in self._bars.values():
            bar.close()


def plan_rows(recipe: Recipe, casts: list[Cast], spec: EndpointSpec, iteration: int = 0) -> list[dict[str, str]]:
    """One input row per dialogue: the empty record and the generator prompt."""
    few_shot_path = recipe.resolve_path(recipe.generation.few_shot_path)
    rows = []
    for cast in casts:
        rng = random.Random(cast.seed)
        examples = pick_few_shot(few_shot_path, recipe.generation.few_shot, recipe.generation.max_turns, rng)
        messages = generator_messages(
            list(cast.speakers),
            examples,
            min_turns=recipe.generation.min_turns,
            max_turns=recipe.generation.max_turns,
            roles=cast.roles,
        )
        record = DialogueRecord(
            id=cast.dialogue_id,
            recipe=recipe.name,
            speakers=list(cast.speakers),
            roles=list(cast.roles),
            turns=[],
            generation=GenerationMeta(
                model=spec.model,
                endpoint_kind=spec.kind,
                prompt_hash=prompt_hash(messages),
                seed=cast.seed,
                iteration=iteration,
                few_shot_ids=[example.id for example in examples],
            ),
        )
        rows.append({RECORD_COLUMN: record.model_dump_json(), MESSAGES_COLUMN: json.dumps(messages)})
    return rows


def build_pipeline(
    recipe: Recipe, rows: list[dict[str, str]], spec: EndpointSpec, cache_dir: Path, show_progress: bool
) -> ProgressRayPipeline:
    resources = StepResources(cpus=recipe.ray.cpus_per_step)
    llm_resources = StepResources(cpus=recipe.ray.cpus_per_step, replicas=recipe.ray.replicas)
    batch = recipe.generation.batch_size
    with ProgressRayPipeline(
        name=f"persona-factory-{recipe.name}-{uuid.uuid4().hex[:8]}",
        description=recipe.description,
        cache_dir=cache_dir,
        progress_total=len(rows),
        show_progress=show_progress,
    ) as pipeline:
        steps: list[Any] = [
            LoadDataFromDicts(name="load_casts", data=rows, batch_size=batch, resources=resources),
            GenerateDialogues(
                name="generate", endpoint=spec, generation=recipe.generation, input_batch_size=batch, resources=llm_resources
            ),
        ]
        if recipe.critics.heuristic.enabled:
            steps.append(
                HeuristicCritic(
                    name="heuristic",
                    generation=recipe.generation,
                    config=recipe.critics.heuristic,
                    input_batch_size=batch,
                    resources=resources,
                )
            )
        if recipe.critics.faithfulness.enabled:
            steps.append(
                FaithfulnessCritic(
                    name="faithfulness",
                    endpoint=spec,
                    config=recipe.critics.faithfulness,
                    input_batch_size=batch,
                    resources=llm_resources,
                )
            )
        for upstream, downstream in zip(steps, steps[1:]):
            upstream.connect(downstream)
    return pipeline


def execute(
    recipe: Recipe, casts: list[Cast], spec: EndpointSpec, work_dir: Path, *, show_progress: bool = True
) -> list[DialogueRecord]:
    """Run the pipeline in the current Ray session; return every record, accepted or not."""
    rows = plan_rows(recipe, casts, spec)
    pipeline = build_pipeline(recipe, rows, spec, work_dir / "distilabel", show_progress)
    import datasets

    datasets.disable_progress_bars()  # distilabel reads its cache back through `datasets`
    try:
        distiset = pipeline.run(use_cache=False)
    except Exception as exc:  # distilabel wraps step failures in its own types
        raise PipelineError(f"the pipeline failed: {exc}") from exc
    finally:
        pipeline.close_progress()
    if distiset is None or not distiset:
        raise PipelineError("the pipeline produced no output (see the log above)")
    leaf = next(iter(distiset.values()))
    table = leaf["train"]
    values = list(table[RECORD_COLUMN])
    lost = sum(value is None for value in values)
    if lost:
        raise PipelineError(
            f"a step failed on {lost} of {len(values)} dialogues (its error is in the log above); "
            "no version was written"
        )
    records = [DialogueRecord.model_validate_json(value) for value in values]
    for record in records:
        record.accepted = bool(record.verdicts) and all(verdict.passed for verdict in record.verdicts)
    records.sort(key=lambda record: record.id)
    if len(records) != len(casts):
        raise PipelineError(f"planned {len(casts)} dialogues but the pipeline returned {len(records)}")
    return records
