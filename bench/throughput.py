"""Calls per second against one OpenAI-compatible server with a fixed delay, measured three ways
side by side in one process, on the same planned prompts:

1. the limit: a plain asyncio loop over ``openai.AsyncOpenAI`` at the same concurrency;
2. a plain distilabel ``TextGeneration`` pipeline (local, not Ray) with ``OpenAILLM``;
3. the factory's pipeline on local Ray with its critics switched off (the same calls), and then
   with its critics on (more calls per dialogue: the judge).

Ray's start is timed apart from the pipeline runs. The last line is ``ratio factory/limit: X.XX``.

    python bench/throughput.py --calls 4096 --delay 0.1 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DISTILABEL_LOG_LEVEL", "ERROR")

from factory.config import parse_recipe  # noqa: E402
from factory.distributed import ray_session  # noqa: E402
from factory.generation.steps import MESSAGES_COLUMN  # noqa: E402
from factory.personas import plan_casts  # noqa: E402
from factory.pipeline import execute, plan_rows  # noqa: E402
from factory.llm.endpoint import endpoint_spec  # noqa: E402
from factory.testing import ScriptedOpenAIServer  # noqa: E402

DIALOGUE = "\n".join(f"User {1 + i % 2}: line {i} about gardening and the weather today" for i in range(8))
VERDICT = '{"contradiction": false, "speaker": "none", "reason": "consistent"}'


def reply(request: dict) -> str:
    return VERDICT if request["messages"][0]["content"].startswith("You are a careful annotator") else DIALOGUE


def recipe_for(calls: int, concurrency: int, batch: int, critics: bool) -> dict:
    return {
        "name": "bench",
        "seed": 1,
        "personas": [{"source": "mbti", "count": 16}, {"source": "big_five", "count": 16}],
        "casting": {"dialogues": calls},
        "generation": {"min_turns": 4, "max_turns": 12, "few_shot": 1, "batch_size": batch, "max_tokens": 300},
        "critics": {"heuristic": {"enabled": critics}, "faithfulness": {"enabled": critics}},
        "llm": {"max_concurrency": concurrency, "max_retries": 3},
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=4096)
    parser.add_argument("--delay", type=float, default=0.1, help="Seconds the server waits per request.")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64, help="distilabel batch size, both pipelines.")
    args = parser.parse_args()
    logging.getLogger("distilabel").setLevel(logging.ERROR)

    with ScriptedOpenAIServer(reply, delay=args.delay) as server, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        plain = parse_recipe(recipe_for(args.calls, args.concurrency, args.batch, critics=False))
        full = parse_recipe(recipe_for(args.calls, args.concurrency, args.batch, critics=True))
        spec = endpoint_spec(plain.llm, server.base_url, server.model, "scripted")
        casts = plan_casts(plain)
        prompts = [json.loads(row[MESSAGES_COLUMN]) for row in plan_rows(plain, casts, spec)]
        print(f"server: {args.delay * 1000:.0f} ms per request; {args.calls} calls; concurrency {args.concurrency}; batch {args.batch}")

        before = server.chat_calls
        limit_s = asyncio.run(plain_asyncio(server.base_url, server.model, prompts, args.concurrency))
        limit = (server.chat_calls - before) / limit_s
        print(f"plain asyncio (limit):        {limit:8.1f} calls/s")

        before = server.chat_calls
        distilabel_s = plain_distilabel(server.base_url, server.model, prompts, args.batch, work / "distilabel")
        distilabel_rate = (server.chat_calls - before) / distilabel_s
        print(f"plain distilabel:             {distilabel_rate:8.1f} calls/s")

        ray_started = time.perf_counter()
        with ray_session(None, None):
            print(f"ray start:                    {time.perf_counter() - ray_started:8.1f} s (not in the rates below)")
            before = server.chat_calls
            started = time.perf_counter()
            execute(plain, casts, spec, work / "factory", show_progress=False)
            factory_rate = (server.chat_calls - before) / (time.perf_counter() - started)
            print(f"factory on Ray, critics off:  {factory_rate:8.1f} calls/s")

            before = server.chat_calls
            started = time.perf_counter()
            execute(full, plan_casts(full), spec, work / "factory-full", show_progress=False)
            full_rate = (server.chat_calls - before) / (time.perf_counter() - started)
            print(f"factory on Ray, critics on:   {full_rate:8.1f} calls/s ({server.chat_calls - before} calls)")

    print(f"ratio factory/distilabel: {factory_rate / distilabel_rate:.2f}")
    print(f"ratio factory/limit: {factory_rate / limit:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
