"""Adaptive concurrency (AIMD) and several base URLs for one model, against scripted servers."""

from __future__ import annotations

import asyncio

import pytest

from factory.errors import EndpointError
from factory.llm.client import ChatClient
from factory.llm.keys import ApiKeys
from factory.llm.limiter import AdaptiveLimiter
from factory.llm.spec import EndpointSpec
from tests.openai_server import ScriptedOpenAIServer, ScriptedReply


def test_slow_start_doubles_then_grows_by_one_per_round_trip():
    limiter = AdaptiveLimiter(minimum=1, maximum=100, initial=4)
    for _ in range(4):  # one round trip at limit 4: four answers
        limiter.started()
    for _ in range(4):
        limiter.succeeded(0.1, now=1.0)
    assert limiter.limit == 8
    limiter.started()
    limiter.overloaded(now=2.0)
    assert limiter.limit == 4 and not limiter.slow_start
    for _ in range(4):
        limiter.started()
    for _ in range(4):
        limiter.succeeded(0.1, now=3.0)
    assert limiter.limit == pytest.approx(5.0, abs=0.1)  # additive: about one per round trip


def test_decreases_when_latency_stays_high_at_most_once_per_round_trip_and_keeps_to_its_bounds():
    limiter = AdaptiveLimiter(minimum=3, maximum=10, initial=10, latency_tolerance=2.0)
    limiter.started()
    limiter.succeeded(0.1, now=0.0)  # best 0.1 s; 1 s is above both 2x and the slack
    for step in range(10):  # a burst of late answers within 50 ms: a pause, not queueing
        limiter.started()
        limiter.succeeded(1.0, now=0.005 * step)
    assert limiter.decreases == 0
    for step in range(30):  # late answers for 3 s: queueing; round trips are about 1 s
        limiter.started()
        limiter.succeeded(1.0, now=0.1 * step)
    assert 1 <= limiter.decreases <= 3
    for step in range(200):
        limiter.started()
        limiter.succeeded(1.0, now=10.0 + 0.5 * step)
    assert limiter.limit == 3  # never below the minimum
    for _ in range(200):
        limiter.started()
        limiter.succeeded(0.1, kind="verdict", now=200.0)
    assert limiter.limit == 10  # nor above the maximum


def test_jitter_within_the_slack_is_not_queueing():
    limiter = AdaptiveLimiter(minimum=1, maximum=64, initial=8)
    for step in range(100):
        limiter.started()
        limiter.succeeded(0.01 if step == 0 else 0.2, now=float(step))  # 20x the best, but only 0.19 s more
    assert limiter.decreases == 0


def test_latency_is_compared_within_a_kind_of_request():
    limiter = AdaptiveLimiter(minimum=1, maximum=64, initial=8)
    for step in range(50):  # short verdicts and long dialogues, each steady
        for kind, latency in (("verdict", 0.05), ("text", 2.0)):
            limiter.started()
            limiter.succeeded(latency, kind=kind, now=float(step))
    assert limiter.decreases == 0 and limiter.limit > 8


def test_fixed_concurrency_when_not_adaptive():
    limiter = AdaptiveLimiter(minimum=1, maximum=16, initial=2, adaptive=False)
    assert limiter.limit == 16
    limiter.started()
    limiter.overloaded()
    assert limiter.limit == 16


def spec_for(*urls: str, **overrides) -> EndpointSpec:
    settings = {
        "max_concurrency": 16,
        "initial_concurrency": 2,
        "max_retries": 8,
        "backoff_base": 0.01,
        "backoff_max": 0.2,
        "eject_seconds": 0.2,
        "timeout": 5.0,
    }
    return EndpointSpec(base_urls=urls, model="scripted-model", kind="openai-compatible", **{**settings, **overrides})


async def _calls(client: ChatClient, count: int, samples: list[float] | None = None) -> list[str]:
    async def sample() -> None:
        while True:
            samples.append(client.endpoints[0].limiter.limit)
            await asyncio.sleep(0.005)

    sampler = asyncio.create_task(sample()) if samples is not None else None
    try:
        results = await asyncio.gather(
            *(
                client.chat([{"role": "user", "content": f"hello {i}"}], temperature=0, max_tokens=8)
                for i in range(count)
            )
        )
    finally:
        if sampler:
            sampler.cancel()
        await client.aclose()
    return [result.text for result in results]


def test_backs_off_on_429_and_grows_again():
    with ScriptedOpenAIServer(lambda request: "ok", delay=0.02) as server:
        client = ChatClient(spec_for(server.base_url), ApiKeys({}))

        async def scenario() -> tuple[list[str], float, list[float]]:
            samples: list[float] = []
            task = asyncio.create_task(_calls(client, 400, samples))
            while server.chat_calls < 60:
                await asyncio.sleep(0.005)
            grown, mark = client.endpoints[0].limiter.limit, len(samples)
            server.fail_next(*[429] * 12)
            texts = await task
            return texts, grown, samples[mark:]

        texts, grown, after = asyncio.run(scenario())
    assert texts == ["ok"] * 400
    limiter = client.endpoints[0].limiter
    assert grown > 2, "the limit should have grown from its start before the 429s"
    assert limiter.decreases >= 1
    assert min(after) < grown, "the 429s should have cut the limit"
    assert limiter.limit > min(after), "the limit should grow again once the 429s stop"


def test_calls_are_spread_over_several_base_urls():
    with (
        ScriptedOpenAIServer(lambda request: "a", delay=0.01) as first,
        ScriptedOpenAIServer(lambda request: "b", delay=0.01) as second,
    ):
        client = ChatClient(spec_for(first.base_url, second.base_url), ApiKeys({}))
        texts = asyncio.run(_calls(client, 200))
    assert len(texts) == 200
    assert first.chat_calls >= 60 and second.chat_calls >= 60, (first.chat_calls, second.chat_calls)
    assert first.chat_calls + second.chat_calls == 200


def test_a_failing_base_url_is_taken_out_and_the_work_goes_to_the_other():
    broken = lambda request: ScriptedReply(status=500, content="down")  # noqa: E731 - a one-line script reads best as a lambda
    with ScriptedOpenAIServer(lambda request: "fine") as good, ScriptedOpenAIServer(broken) as bad:
        client = ChatClient(spec_for(bad.base_url, good.base_url, eject_after=2, eject_seconds=30.0), ApiKeys({}))
        texts = asyncio.run(_calls(client, 120))
        report = client.report()
    assert texts == ["fine"] * 120
    bad_report = next(numbers for url, numbers in report.items() if str(bad.base_url).startswith(url))
    assert bad_report["ejections"] >= 1
    # once out, it gets nothing more: only the requests in flight when it failed reached it
    assert bad.chat_calls <= 2 + spec_for().initial_concurrency * 2, bad.chat_calls
    assert good.chat_calls == 120


def test_a_base_url_that_comes_back_gets_work_again():
    state = {"down": True}
    flaky = lambda request: ScriptedReply(status=503) if state["down"] else "back"  # noqa: E731 - a one-line script reads best as a lambda
    with ScriptedOpenAIServer(flaky, delay=0.01) as server:
        client = ChatClient(spec_for(server.base_url, eject_after=1, eject_seconds=0.1, max_retries=20), ApiKeys({}))

        async def scenario() -> list[str]:
            task = asyncio.create_task(_calls(client, 50))
            while client.endpoints[0].ejections == 0:
                await asyncio.sleep(0.005)
            state["down"] = False
            return await task

        texts = asyncio.run(scenario())
    assert texts == ["back"] * 50
    assert client.endpoints[0].ejections == 0  # a success clears the record


def test_an_outage_longer_than_allowed_stops_the_run():
    down = lambda request: ScriptedReply(status=502)  # noqa: E731 - a one-line script reads best as a lambda
    with ScriptedOpenAIServer(down) as server:
        client = ChatClient(
            spec_for(server.base_url, eject_after=1, eject_seconds=0.05, outage_seconds=0.5, max_retries=50),
            ApiKeys({}),
        )
        with pytest.raises(EndpointError, match=r"no endpoint .* answered for"):
            asyncio.run(_calls(client, 5))
