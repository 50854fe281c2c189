"""Build the distilabel pipeline of a recipe and run it on Ray, round after round.

    load casts -> generate (SPC, one call per candidate) -> the experts of the cascade
    then, on the driver: best-of-N quality per cast, and run-wide deduplication

Prompts are built here, on the driver, from the recipe's seed, so that a run is reproducible and
every worker only sends what it is given.
"""

from __future__ import annotations

import json
import os
import random
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distilabel.pipeline import RayPipeline
from distilabel.steps import LoadDataFromDicts, StepResources

from factory.config import Recipe
from factory.critics.base import JudgeContext, passed_so_far
from factory.critics.dedup import dedup
from factory.critics.quality import select_best
from factory.critics.steps import NEEDS_LLM, ExpertCritic
from factory.errors import PipelineError
from factory.generation.prompts import FewShotExample, generator_messages, pick_few_shot
from factory.generation.steps import MESSAGES_COLUMN, GenerateDialogues
from factory.llm.client import EndpointSpec, prompt_hash
from factory.llm.tasks import JsonTaskRunner
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


def plan_rows(
    recipe: Recipe,
    casts: list[Cast],
    spec: EndpointSpec,
    iteration: int = 0,
    fed_back: list[FewShotExample] | None = None,
) -> list[dict[str, str]]:
    """One input row per candidate dialogue: the empty record and the generator prompt. Few-shot
    examples come from the SPC data, or, from the second round on, from ``fed_back``: the best
    accepted dialogues of the rounds before."""
    generation = recipe.generation
    few_shot_path = recipe.resolve_path(generation.few_shot_path)
    rows = []
    for cast in casts:
        rng = random.Random(cast.seed)
        if fed_back:
            examples = rng.sample(fed_back, min(generation.few_shot, len(fed_back)))
        else:
            examples = pick_few_shot(few_shot_path, generation.few_shot, generation.max_turns, rng)
        messages = generator_messages(
            list(cast.speakers), examples, min_turns=generation.min_turns, max_turns=generation.max_turns, roles=cast.roles
        )
        for candidate in range(generation.candidates):
            record = DialogueRecord(
                id=cast.dialogue_id if generation.candidates == 1 else f"{cast.dialogue_id}-c{candidate}",
                recipe=recipe.name,
                speakers=list(cast.speakers),
                roles=list(cast.roles),
                turns=[],
                generation=GenerationMeta(
                    model=spec.model,
                    endpoint_kind=spec.kind,
                    prompt_hash=prompt_hash(messages),
                    seed=cast.seed + candidate,
                    iteration=iteration,
                    cast_id=cast.dialogue_id,
                    candidate=candidate,
                    few_shot_ids=[example.id for example in examples],
                ),
            )
            rows.append({RECORD_COLUMN: record.model_dump_json(), MESSAGES_COLUMN: json.dumps(messages)})
    return rows


def build_pipeline(
    recipe: Recipe, rows: list[dict[str, str]], spec: EndpointSpec, cache_dir: Path, show_progress: bool
) -> ProgressRayPipeline:
    """load casts -> generate -> one step per enabled expert, in the cascade's order."""
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
        for name, _config in recipe.critics.cascade():
            steps.append(
                ExpertCritic(
                    name=name,
                    expert=name,
                    endpoint=spec,
                    critics=recipe.critics,
                    generation=recipe.generation,
                    input_batch_size=batch,
                    resources=llm_resources if name in NEEDS_LLM else resources,
                )
            )
        for upstream, downstream in zip(steps, steps[1:]):
            upstream.connect(downstream)
    return pipeline


@dataclass
class Execution:
    records: list[DialogueRecord]
    rounds: list[dict[str, Any]] = field(default_factory=list)


def _run_round(
    recipe: Recipe, rows: list[dict[str, str]], spec: EndpointSpec, work_dir: Path, show_progress: bool
) -> list[DialogueRecord]:
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
    values = list(next(iter(distiset.values()))["train"][RECORD_COLUMN])
    lost = sum(value is None for value in values)
    if lost:
        raise PipelineError(
            f"a step failed on {lost} of {len(values)} dialogues (its error is in the log above); no version was written"
        )
    if len(values) != len(rows):
        raise PipelineError(f"planned {len(rows)} dialogues but the pipeline returned {len(values)}")
    return [DialogueRecord.model_validate_json(value) for value in values]


def _mean_score(record: DialogueRecord) -> float:
    scores = [v.score for v in record.verdicts if v.score is not None]
    return sum(scores) / len(scores) if scores else 0.0


def execute(
    recipe: Recipe, casts: list[Cast], spec: EndpointSpec, work_dir: Path, *, show_progress: bool = True
) -> Execution:
    """The Generator-Critic loop in the current Ray session: for each round, write the candidates
    of that round's casts and run the experts on Ray, keep the best candidate of each cast (quality,
    on the driver), and feed the best accepted dialogues back as the next round's few-shot
    examples. Near-duplicates are removed across the whole run at the end."""
    generation, critics = recipe.generation, recipe.critics
    rounds = min(generation.rounds, len(casts))
    shares = [casts[r::rounds] for r in range(rounds)]
    records: list[DialogueRecord] = []
    summaries: list[dict[str, Any]] = []
    fed_back: list[FewShotExample] = []
    # Best-of-N needs all of a cast's candidates at once, so it runs here on the driver.
    with JsonTaskRunner(spec, os.environ.get("OPENAI_API_KEY")) as runner:
        context = JudgeContext(runner.client, spec, generation)
        for iteration, share in enumerate(shares):
            rows = plan_rows(recipe, share, spec, iteration, fed_back or None)
            made = _run_round(recipe, rows, spec, work_dir / f"round-{iteration}", show_progress)
            if critics.quality.enabled and generation.candidates > 1:
                by_cast: dict[str, list[DialogueRecord]] = {}
                for record in sorted(made, key=lambda r: r.id):
                    if passed_so_far(record):
                        by_cast.setdefault(record.generation.cast_id, []).append(record)
                runner.gather(
                    (select_best(group, critics.quality, context) for group in by_cast.values()),
                    desc="quality", show_progress=show_progress,
                )
            accepted = sorted((r for r in made if passed_so_far(r)), key=lambda r: (-_mean_score(r), r.id))
            summaries.append(
                {
                    "round": iteration,
                    "casts": len(share),
                    "dialogues": len(made),
                    "accepted": len(accepted),
                    "tokens": sum(r.generation.usage.total_tokens + sum(v.tokens for v in r.verdicts) for r in made),
                    "few_shot_from": sorted({i for r in made for i in r.generation.few_shot_ids}),
                }
            )
            if accepted and generation.few_shot:
                fed_back = [FewShotExample.from_record(r, generation.max_turns) for r in accepted[: max(generation.few_shot, 2)]]
            records.extend(made)
    if critics.dedup.enabled:
        dedup(records, critics.dedup)
    for record in records:
        record.accepted = passed_so_far(record)
    records.sort(key=lambda record: record.id)
    return Execution(records=records, rounds=summaries)
