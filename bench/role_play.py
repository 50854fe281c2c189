"""Calls per second of turn-by-turn role-play, side by side with the SPC mode and a plain asyncio
loop, against one scripted server with a fixed delay, in one process (medians of ``--repeats``).

Role-play costs one call per turn and a dialogue's turns are sequential, so its throughput comes
from many dialogues in flight at once. The last line is ``ratio role_play/limit: X.XX``.

    python bench/role_play.py --dialogues 512 --turns 6 --delay 0.1 --concurrency 64
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import _project  # noqa: F401 - the project root on sys.path, for tests.openai_server

from factory.api import EndpointSpec, RunJournal, execute, parse_recipe, plan_casts
from tests.openai_server import ScriptedOpenAIServer

DIALOGUE = "\n".join(f"User {1 + i % 2}: line {i} about gardening and the weather today" for i in range(6))


def reply(request: dict) -> str:
    system = request["messages"][0]["content"]
    if system.startswith("You write natural"):
        return DIALOGUE
    return f"A line about gardening number {len(request['messages'])}."


def recipe_for(dialogues: int, turns: int, concurrency: int, mode: str) -> dict:
    return {
        "name": "bench-role-play",
        "seed": 1,
        "personas": [{"source": "mbti", "count": 16}, {"source": "big_five", "count": 16}],
        "casting": {"dialogues": dialogues},
        "generation": {
            "mode": mode,
            "min_turns": turns,
            "max_turns": turns,
            "few_shot": 1,
            "max_tokens": 300,
            "role_play": {"turn_order": "alternate", "scenarios": ["They meet in a community garden."]},
        },
        "critics": {"heuristic": {"enabled": False}, "faithfulness": {"enabled": False}},
        "llm": {"max_concurrency": concurrency, "max_retries": 3, "cache": {"enabled": False}},  # every call a request
        "ray": {"enabled": False},
    }


async def plain_asyncio(base_url: str, model: str, calls: int, concurrency: int) -> float:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0)
    semaphore = asyncio.Semaphore(concurrency)
    messages = [
        {"role": "system", "content": "You are Ana, in a conversation with Ben."},
        {"role": "user", "content": "Hi."},
    ]

    async def one() -> None:
        async with semaphore:
            await client.chat.completions.create(model=model, messages=messages, max_tokens=120)

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(calls)))
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dialogues", type=int, default=512)
    parser.add_argument("--turns", type=int, default=6)
    parser.add_argument("--delay", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    rates: dict[str, list[float]] = {"limit": [], "spc": [], "role_play": []}
    with (
        ScriptedOpenAIServer(reply, delay=args.delay, keep_requests=False) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        recipes = {
            mode: parse_recipe(recipe_for(args.dialogues, args.turns, args.concurrency, mode))
            for mode in ("spc", "role_play")
        }
        spec = EndpointSpec.of(recipes["spc"].llm, server.base_url, server.model, "openai-compatible")
        casts = plan_casts(recipes["spc"]).casts
        calls = args.dialogues * args.turns
        print(
            f"server: {args.delay * 1000:.0f} ms per request; {args.dialogues} dialogues of {args.turns} turns; "
            f"concurrency {args.concurrency}; {args.repeats} runs each, medians"
        )
        for repeat in range(args.repeats):
            before = server.chat_calls
            seconds = asyncio.run(plain_asyncio(server.base_url, server.model, calls, args.concurrency))
            rates["limit"].append((server.chat_calls - before) / seconds)
            for mode, recipe in recipes.items():
                journal = RunJournal(Path(tmp) / f"{mode}-{repeat}")
                before = server.chat_calls
                started = time.perf_counter()
                execute(recipe, casts, spec, journal, on_ray=False)
                rates[mode].append((server.chat_calls - before) / (time.perf_counter() - started))
                journal.close()
    limit, spc, role_play = (statistics.median(rates[key]) for key in ("limit", "spc", "role_play"))
    print(f"plain asyncio (limit):       {limit:8.1f} calls/s")
    print(f"spc (one call a dialogue):   {spc:8.1f} calls/s, {spc:6.1f} dialogues/s")
    print(f"role_play (a call a turn):   {role_play:8.1f} calls/s, {role_play / args.turns:6.1f} dialogues/s")
    print(f"ratio role_play/limit: {role_play / limit:.2f}")


if __name__ == "__main__":
    main()
