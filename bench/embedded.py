"""Tokens per second on the embedded llama.cpp server: the factory's engine against a direct
client, on the same server, the same generator prompts and the same sampling settings, taking
turns in one invocation (direct, factory, direct, factory, ...), medians of ``--repeats``.

The model is the bottleneck here, so this measures whether the factory keeps the server busy:
no gaps between requests, nothing of its own in the way. The last line is
``ratio factory/direct: X.XX``.

    python bench/embedded.py --dialogues 16 --max-tokens 160
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from factory.engine.journal import RunJournal
from factory.engine.rounds import execute, plan_rows
from factory.llm.spec import EndpointSpec
from factory.personas import plan
from factory.recipes import parse_recipe


def recipe_for(dialogues: int, max_tokens: int, concurrency: int) -> dict:
    return {
        "name": "embedded-bench",
        "seed": 3,
        "personas": [{"source": "statements", "count": 8}, {"source": "mbti", "count": 4}],
        "casting": {"dialogues": dialogues},
        "generation": {"min_turns": 4, "max_turns": 8, "few_shot": 1, "max_tokens": max_tokens, "temperature": 0.7},
        "critics": {"heuristic": {"enabled": False}, "faithfulness": {"enabled": False}},
        "llm": {"max_concurrency": concurrency, "structured_output": "json_object", "cache": {"enabled": False}},
        "ray": {"enabled": False},
    }


async def direct(
    base_url: str, model: str, rows: list, temperature: float, max_tokens: int, concurrency: int
) -> tuple[int, float]:
    """(completion tokens, seconds) of a plain ``openai.AsyncOpenAI`` loop over the same prompts."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=600)
    semaphore = asyncio.Semaphore(concurrency)
    tokens = 0

    async def one(record, messages) -> None:
        nonlocal tokens
        async with semaphore:
            response = await client.chat.completions.create(
                model=model,
                messages=messages,
                temperature=temperature,
                max_tokens=max_tokens,
                seed=record.generation.seed,
            )
            tokens += response.usage.completion_tokens

    started = time.perf_counter()
    await asyncio.gather(*(one(record, messages) for record, messages in rows))
    elapsed = time.perf_counter() - started
    await client.close()
    return tokens, elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialogues", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--concurrency", type=int, default=4, help="Most requests in flight, both clients.")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from factory.llm.embedded import EmbeddedServer

    recipe = parse_recipe(recipe_for(args.dialogues, args.max_tokens, args.concurrency))
    casts = plan(recipe).casts
    direct_rates, factory_rates = [], []
    with EmbeddedServer() as server, tempfile.TemporaryDirectory() as tmp:
        spec = EndpointSpec.of(recipe.llm, server.base_url, server.model, "embedded")
        rows = plan_rows(recipe, casts, spec)
        print(
            f"embedded {server.model}; {args.dialogues} dialogues of at most {args.max_tokens} tokens; "
            f"at most {args.concurrency} requests in flight; {args.repeats} runs each, medians"
        )
        for repeat in range(args.repeats):
            tokens, seconds = asyncio.run(
                direct(
                    server.base_url,
                    server.model,
                    rows,
                    recipe.generation.temperature,
                    args.max_tokens,
                    args.concurrency,
                )
            )
            direct_rates.append(tokens / seconds)

            journal = RunJournal(Path(tmp) / f"journal-{repeat}")
            started = time.perf_counter()
            execute(recipe, casts, spec, journal, on_ray=False)
            seconds = time.perf_counter() - started
            tokens = sum(r.generation.usage.completion_tokens for batch in journal.batches() for r in batch)
            journal.close()
            factory_rates.append(tokens / seconds)
            print(
                f"run {repeat + 1}: direct {direct_rates[-1]:6.1f} tokens/s, factory {factory_rates[-1]:6.1f} tokens/s"
            )

    direct_rate, factory_rate = statistics.median(direct_rates), statistics.median(factory_rates)
    print(f"direct client:  {direct_rate:6.1f} tokens/s")
    print(f"factory engine: {factory_rate:6.1f} tokens/s")
    print(f"ratio factory/direct: {factory_rate / direct_rate:.2f}")


if __name__ == "__main__":
    main()
