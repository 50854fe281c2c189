"""Calls per second against one OpenAI-compatible server with a fixed delay, measured side by side
in one process, on the same planned prompts, at the same concurrency; each figure is the median of
``--repeats`` runs:

0. the server's capacity: its concurrency divided by its service time (what it could answer with
   clients that cost nothing; on 2 cores a plain asyncio loop is bound by its own client well
   below it);
1. the limit: a plain asyncio loop over ``openai.AsyncOpenAI``;
2. a plain distilabel ``TextGeneration`` pipeline (local, not Ray) with ``OpenAILLM``;
3. the factory's engine in this process with its critics off (the same calls, journaled to disk as
   they finish), then with its critics on (a judge call per dialogue as well);
3b. the engine inside a distilabel pipeline: ``factory.distilabel``'s generator step, which runs
   the recipe as ``persona-factory run`` does (published into a scratch folder) in distilabel's
   step process, critics off;
3c. the recipe as distilabel steps (``build_pipeline(mode="steps")``: casts, the writer through
   ``OpenAILLM``, accept), critics off: distilabel's batch at a time, a batch per step;
4. the same two on local Ray workers: Ray's start and the workers' start are timed apart from the
   steady rate.

Reading the gap between 3 and 4: in process, the engine's client shares this interpreter (and its
lock) with the scripted server's threads; a Ray worker is a process of its own, so its steady
rate can be above the in-process one, while its overall rate pays the worker's start and a round
trip to the driver per chunk. Plain distilabel also runs its step in a process of its own.

The last lines are ratios: ``factory/distilabel``, ``factory/limit``, ``factory/capacity`` and
``limit/capacity``.

    python bench/throughput.py --calls 4096 --delay 0.1 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("DISTILABEL_LOG_LEVEL", "ERROR")

import _project  # noqa: F401 - the project root on sys.path, for tests.openai_server

from factory.api import EndpointSpec, RunJournal, execute, parse_recipe, plan_casts, plan_rows, ray_session
from tests.openai_server import ScriptedOpenAIServer

DIALOGUE = "\n".join(f"User {1 + i % 2}: line {i} about gardening and the weather today" for i in range(8))
VERDICT = '{"contradiction": false, "speaker": "none", "reason": "consistent"}'


def reply(request: dict) -> str:
    return VERDICT if request["messages"][0]["content"].startswith("You are a careful annotator") else DIALOGUE


def recipe_for(calls: int, concurrency: int, critics: bool, on_ray: bool) -> dict:
    return {
        "name": "bench",
        "seed": 1,
        "personas": [{"source": "mbti", "count": 16}, {"source": "big_five", "count": 16}],
        "casting": {"dialogues": calls},
        "generation": {"min_turns": 4, "max_turns": 12, "few_shot": 1, "max_tokens": 300},
        "critics": {"heuristic": {"enabled": critics}, "faithfulness": {"enabled": critics}},
        "llm": {"max_concurrency": concurrency, "max_retries": 3, "cache": {"enabled": False}},  # every call a request
        "ray": {"enabled": on_ray},
    }


async def plain_asyncio(base_url: str, model: str, prompts: list[list[dict]], concurrency: int) -> float:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0)
    semaphore = asyncio.Semaphore(concurrency)

    async def one(messages: list[dict]) -> None:
        async with semaphore:
            await client.chat.completions.create(model=model, messages=messages, max_tokens=300)

    started = time.perf_counter()
    await asyncio.gather(*(one(messages) for messages in prompts))
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


def plain_distilabel(base_url: str, model: str, prompts: list[list[dict]], batch: int, cache: Path) -> float:
    from distilabel.models import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts
    from distilabel.steps.tasks import TextGeneration

    data = [{"system_prompt": m[0]["content"], "instruction": m[1]["content"]} for m in prompts]
    with Pipeline(name="bench-plain-distilabel", cache_dir=cache) as pipeline:
        load = LoadDataFromDicts(data=data, batch_size=batch)
        generate = TextGeneration(
            llm=OpenAILLM(model=model, base_url=base_url, api_key="bench", generation_kwargs={"max_new_tokens": 300}),
            input_batch_size=batch,
        )
        load >> generate
    started = time.perf_counter()
    pipeline.run(use_cache=False)
    return time.perf_counter() - started


def engine_in_distilabel(base_url: str, recipe: dict, cache: Path) -> float:
    import yaml

    from factory.api import GENERATOR_NAME, distilabel_pipeline

    pipeline = distilabel_pipeline(yaml.safe_dump(recipe), f"bench-engine-{cache.name}")
    pipeline._cache_dir = cache  # where distilabel keeps this run's batches, apart from the others
    started = time.perf_counter()
    pipeline.run(parameters={GENERATOR_NAME: {"base_url": base_url}}, use_cache=False)
    return time.perf_counter() - started


def steps_in_distilabel(base_url: str, model: str, recipe: dict, cache: Path) -> float:
    import yaml
    from distilabel.models import OpenAILLM

    from factory.api import distilabel_pipeline

    llm = OpenAILLM(model=model, base_url=base_url, api_key="bench")
    pipeline = distilabel_pipeline(yaml.safe_dump(recipe), f"bench-steps-{cache.name}", mode="steps", llm=llm)
    pipeline._cache_dir = cache
    started = time.perf_counter()
    pipeline.run(use_cache=False)
    return time.perf_counter() - started


class Timed:
    """Calls per second of one factory run: overall, and steady (from the first finished chunk on)."""

    def __init__(self, server: ScriptedOpenAIServer) -> None:
        self.server = server
        self.first: tuple[float, int] | None = None

    def progress(self, _dialogues: int, _calls: int) -> None:
        if self.first is None:
            self.first = (time.perf_counter(), self.server.chat_calls)

    def run(self, go: Callable[[Callable[[int, int], None]], None]) -> tuple[float, float, float, int]:
        """(overall rate, steady rate, seconds to the first finished chunk, calls)."""
        before = self.server.chat_calls
        started = time.perf_counter()
        go(self.progress)
        ended = time.perf_counter()
        calls = self.server.chat_calls - before
        assert self.first is not None
        first_at, first_calls = self.first
        steady = (self.server.chat_calls - first_calls) / max(ended - first_at, 1e-9)
        return calls / (ended - started), steady, first_at - started, calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=4096)
    parser.add_argument("--delay", type=float, default=0.1, help="Seconds the server waits per request.")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64, help="distilabel's batch size.")
    parser.add_argument("--repeats", type=int, default=3, help="Runs of each; medians are printed.")
    parser.add_argument("--no-ray", action="store_true", help="Leave out the runs on local Ray.")
    args = parser.parse_args()
    logging.getLogger("distilabel").setLevel(logging.ERROR)
    median = statistics.median

    with (
        ScriptedOpenAIServer(reply, delay=args.delay, keep_requests=False) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        work = Path(tmp)
        recipes = {
            (critics, on_ray): parse_recipe(recipe_for(args.calls, args.concurrency, critics, on_ray))
            for critics in (False, True)
            for on_ray in (False, True)
        }
        base = recipes[(False, False)]
        spec = EndpointSpec.of(base.llm, server.base_url, server.model, "openai-compatible")
        casts = plan_casts(base).casts
        prompts = [messages for _, messages in plan_rows(base, casts, spec)]
        print(
            f"server: {args.delay * 1000:.0f} ms per request; {args.calls} dialogues; concurrency {args.concurrency}; "
            f"{args.repeats} runs each, medians"
        )
        runs = iter(range(1_000_000))

        def factory(critics: bool, on_ray: bool) -> Callable[[Callable[[int, int], None]], None]:
            recipe = recipes[(critics, on_ray)]

            def go(progress: Callable[[int, int], None]) -> None:
                journal = RunJournal(work / f"journal-{next(runs)}")
                execute(recipe, casts, spec, journal, on_ray=on_ray, progress=progress)
                journal.close()

            return go

        def median_rate(run: Callable[[int], float]) -> float:
            """Calls per second of ``run(repeat)`` (which returns its seconds), the median of the repeats."""
            rates = []
            for repeat in range(args.repeats):
                before = server.chat_calls
                seconds = run(repeat)
                rates.append((server.chat_calls - before) / seconds)
            return median(rates)

        capacity = args.concurrency / args.delay
        print(f"server capacity (concurrency/delay):{capacity:8.1f} calls/s")
        plain_recipe = recipe_for(args.calls, args.concurrency, False, False)
        limit = median_rate(
            lambda _: asyncio.run(plain_asyncio(server.base_url, server.model, prompts, args.concurrency))
        )
        print(f"plain asyncio (limit):              {limit:8.1f} calls/s")
        distilabel_rate = median_rate(
            lambda r: plain_distilabel(server.base_url, server.model, prompts, args.batch, work / f"distilabel-{r}")
        )
        print(f"plain distilabel (batch {args.batch}):        {distilabel_rate:8.1f} calls/s")
        engine_step_rate = median_rate(
            lambda r: engine_in_distilabel(server.base_url, plain_recipe, work / f"engine-{r}")
        )
        print(f"factory engine as a distilabel step:{engine_step_rate:8.1f} calls/s")
        steps_rate = median_rate(
            lambda r: steps_in_distilabel(server.base_url, server.model, plain_recipe, work / f"steps-{r}")
        )
        print(f"factory as distilabel steps:        {steps_rate:8.1f} calls/s")

        local = {}
        for critics in (False, True):
            results = [Timed(server).run(factory(critics, on_ray=False)) for _ in range(args.repeats)]
            local[critics] = median(r[0] for r in results)
            label = "on " if critics else "off"
            print(f"factory in process, critics {label}:   {local[critics]:8.1f} calls/s ({results[0][3]} calls)")

        if not args.no_ray:
            ray_started = time.perf_counter()
            with ray_session(None):
                print(
                    f"ray start:                          {time.perf_counter() - ray_started:8.1f} s (not in any rate)"
                )
                for critics in (False, True):
                    results = [Timed(server).run(factory(critics, on_ray=True)) for _ in range(args.repeats)]
                    label = "on " if critics else "off"
                    print(
                        f"factory on local Ray, critics {label}: {median(r[0] for r in results):8.1f} calls/s overall, "
                        f"{median(r[1] for r in results):.1f} steady; {median(r[2] for r in results):.2f} s to the first "
                        "finished chunk (worker start)"
                    )

    print(f"ratio critics on/limit: {local[True] / limit:.2f}")
    print(f"ratio factory/distilabel: {local[False] / distilabel_rate:.2f}")
    print(f"ratio engine step/limit: {engine_step_rate / limit:.2f}")
    print(f"ratio steps/limit: {steps_rate / limit:.2f}")
    print(f"ratio factory/limit: {local[False] / limit:.2f}")
    print(f"ratio factory/capacity: {local[False] / capacity:.2f}")
    print(f"ratio limit/capacity: {limit / capacity:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
