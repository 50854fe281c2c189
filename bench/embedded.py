"""Tokens and dialogues per second on the embedded model, every way of serving it side by side in
one invocation, on the same generator prompts and sampling settings; medians of ``--repeats``,
the ways taking turns in each repeat so the machine's noise falls on all of them alike.

Ways (one server at a time, each started for its turn):

- ``serial``: llama-cpp-python's server, the embedded model's server before parallel decoding:
  one request at a time on every core.
- ``replicas``: one serial server per core, one thread each, behind the client's multi-URL pool.
- ``batched``: llama.cpp's own server with parallel slots and continuous batching, the default.

On each the factory's engine runs the dialogues (as ``make demo`` does); on ``batched`` a direct
``openai`` client also drives the server at several concurrencies, the best of which is the
ceiling of what the server gives on this machine. The last lines are
``ratio batched/serial: X.XX`` (the engine on each) and ``ratio factory/direct: X.XX`` (the engine
against the direct client on the batched server, at the engine's concurrency).

    python bench/embedded.py --dialogues 16 --max-tokens 160
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from factory.api import (
    EMBEDDED_MODEL_ALIAS,
    EMBEDDED_PARALLEL,
    EmbeddedServer,
    EndpointSpec,
    RunJournal,
    embedded_model_path,
    execute,
    parse_recipe,
    plan_casts,
    plan_rows,
)


class SerialServer(EmbeddedServer):
    """llama-cpp-python's server: one request at a time."""

    health_path = "/v1/models"

    def command(self) -> list[str]:
        return self._die_with_parent(
            [
                sys.executable,
                "-m",
                "llama_cpp.server",
                "--model",
                str(embedded_model_path()),
                "--model_alias",
                EMBEDDED_MODEL_ALIAS,
                "--host",
                self.host,
                "--port",
                str(self.port),
                "--n_ctx",
                str(self.n_ctx),
                "--n_threads",
                str(self.n_threads),
            ]
        )


def recipe_for(dialogues: int, max_tokens: int) -> dict:
    return {
        "name": "embedded-bench",
        "seed": 3,
        "personas": [{"source": "statements", "count": 8}, {"source": "mbti", "count": 4}],
        "casting": {"dialogues": dialogues},
        "generation": {"min_turns": 4, "max_turns": 8, "few_shot": 1, "max_tokens": max_tokens, "temperature": 0.7},
        "critics": {"heuristic": {"enabled": False}, "faithfulness": {"enabled": False}},
        "llm": {"structured_output": "json_object", "cache": {"enabled": False}},
        "ray": {"enabled": False},
    }


def servers(way: str, slots: int) -> list[EmbeddedServer]:
    cores = os.cpu_count() or 1
    if way == "serial":
        return [SerialServer()]
    if way == "replicas":
        return [SerialServer(n_threads=1) for _ in range(cores)]
    return [EmbeddedServer(parallel=slots)]


async def direct(base_url: str, rows: list, temperature: float, max_tokens: int, concurrency: int) -> tuple[int, float]:
    """(completion tokens, seconds) of a plain ``openai.AsyncOpenAI`` loop over the same prompts."""
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, timeout=600)
    semaphore = asyncio.Semaphore(concurrency)
    tokens = 0

    async def one(record, messages) -> None:
        nonlocal tokens
        async with semaphore:
            response = await client.chat.completions.create(
                model=EMBEDDED_MODEL_ALIAS,
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


def warm_up(started: list[EmbeddedServer]) -> None:
    """A first request per server: the model's pages are read in before anything is timed."""
    import openai

    for server in started:
        with openai.OpenAI(base_url=server.base_url, api_key="bench") as client:
            client.chat.completions.create(
                model=EMBEDDED_MODEL_ALIAS, messages=[{"role": "user", "content": "Hello"}], max_tokens=16
            )


def factory_run(recipe, casts, spec: EndpointSpec, folder: Path) -> tuple[int, float, int]:
    """(completion tokens, seconds, dialogues) of the engine's run of the casts."""
    journal = RunJournal(folder)
    started = time.perf_counter()
    execute(recipe, casts, spec, journal, on_ray=False)
    seconds = time.perf_counter() - started
    records = [record for batch in journal.batches() for record in batch]
    journal.close()
    return sum(record.generation.usage.completion_tokens for record in records), seconds, len(records)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialogues", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ways", default="serial,replicas,batched")
    parser.add_argument("--concurrencies", default="1,2,4,8,16", help="The direct client's, on the batched server.")
    parser.add_argument("--slots", type=int, default=EMBEDDED_PARALLEL, help="The batched server's parallel slots.")
    args = parser.parse_args()

    recipe = parse_recipe(recipe_for(args.dialogues, args.max_tokens))
    casts = plan_casts(recipe).casts
    ways = args.ways.split(",")
    concurrencies = [int(value) for value in args.concurrencies.split(",")]
    engine: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
    ceiling: dict[int, list[float]] = {concurrency: [] for concurrency in concurrencies}
    print(
        f"embedded {EMBEDDED_MODEL_ALIAS} on {os.cpu_count()} cores; {args.dialogues} dialogues of at most "
        f"{args.max_tokens} tokens; batched: {args.slots} slots; {args.repeats} repeats, medians"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for way in ways:
                with ExitStack() as stack:
                    started = [stack.enter_context(server) for server in servers(way, args.slots)]
                    spec = EndpointSpec.of(recipe.llm, [s.base_url for s in started], EMBEDDED_MODEL_ALIAS, "embedded")
                    warm_up(started)
                    if way == "batched":
                        rows = plan_rows(recipe, casts, spec)
                        for concurrency in concurrencies:
                            tokens, seconds = asyncio.run(
                                direct(spec.base_url, rows, recipe.generation.temperature, args.max_tokens, concurrency)
                            )
                            ceiling[concurrency].append(tokens / seconds)
                    tokens, seconds, dialogues = factory_run(recipe, casts, spec, Path(tmp) / f"{way}-{repeat}")
                    engine[way].append((tokens / seconds, dialogues / seconds))
                    print(f"repeat {repeat + 1} {way:>8}: engine {tokens / seconds:6.1f} tokens/s", flush=True)

    for way in ways:
        rate = statistics.median(tokens for tokens, _ in engine[way])
        per_second = statistics.median(dialogues for _, dialogues in engine[way])
        print(f"{way:>8} server, engine:  {rate:6.1f} tokens/s  {per_second:5.3f} dialogues/s")
    if "batched" in ways:
        for concurrency in concurrencies:
            print(f" batched server, direct x{concurrency:<3} {statistics.median(ceiling[concurrency]):6.1f} tokens/s")
    if "batched" in ways and "serial" in ways:
        batched = statistics.median(tokens for tokens, _ in engine["batched"])
        serial = statistics.median(tokens for tokens, _ in engine["serial"])
        at = min(concurrencies, key=lambda concurrency: abs(concurrency - args.slots))
        print(f"ratio batched/serial: {batched / serial:.2f}")
        print(f"ratio factory/direct: {batched / statistics.median(ceiling[at]):.2f} (direct x{at})")


if __name__ == "__main__":
    main()
