"""Retries, refusals and unreachable endpoints, against a real HTTP server on loopback."""

from __future__ import annotations

import asyncio

import pytest

from factory.errors import EndpointError, LLMCallError
from factory.llm.client import ChatClient, backoff_delay
from factory.llm.endpoint import check_endpoint
from factory.llm.keys import ApiKeys
from factory.llm.spec import EndpointSpec
from tests.openai_server import ScriptedOpenAIServer, ScriptedReply


def spec_for(base_url: str, retries: int = 3) -> EndpointSpec:
    return EndpointSpec(
        base_urls=(base_url,), model="scripted-model", max_retries=retries, backoff_base=0.01, backoff_max=0.05
    )


async def one_call(spec: EndpointSpec) -> tuple[str, int]:
    client = ChatClient(spec, ApiKeys({}))
    try:
        result = await client.chat([{"role": "user", "content": "hi"}], temperature=0, max_tokens=8)
        return result.text, client.attempts
    finally:
        await client.aclose()


def test_retries_429_and_500_then_succeeds():
    with ScriptedOpenAIServer(lambda request: "hello there") as server:
        server.fail_next(429, 500)
        text, attempts = asyncio.run(one_call(spec_for(server.base_url)))
    assert text == "hello there"
    assert attempts == 3
    assert server.chat_calls == 3


def test_gives_up_after_max_retries_with_the_last_error():
    with ScriptedOpenAIServer(lambda request: "never reached") as server:
        server.fail_next(503, 503, 503)
        with pytest.raises(LLMCallError, match="gave up after 3 attempts: InternalServerError"):
            asyncio.run(one_call(spec_for(server.base_url, retries=2)))
        assert server.chat_calls == 3


def test_a_refused_request_is_not_retried():
    with ScriptedOpenAIServer(lambda request: ScriptedReply(status=400, content="prompt is too long")) as server:
        with pytest.raises(LLMCallError, match=r"refused the request \(400\).*prompt is too long"):
            asyncio.run(one_call(spec_for(server.base_url)))
        assert server.chat_calls == 1


def test_concurrency_is_bounded():
    import threading
    import time

    in_flight = 0
    peak = 0
    lock = threading.Lock()

    def slow(request):
        nonlocal in_flight, peak
        with lock:
            in_flight += 1
            peak = max(peak, in_flight)
        time.sleep(0.05)
        with lock:
            in_flight -= 1
        return "ok"

    async def many(spec):
        client = ChatClient(spec, ApiKeys({}))
        try:
            await asyncio.gather(
                *(client.chat([{"role": "user", "content": str(i)}], temperature=0, max_tokens=4) for i in range(20))
            )
        finally:
            await client.aclose()

    with ScriptedOpenAIServer(slow) as server:
        asyncio.run(many(spec_for(server.base_url).model_copy(update={"max_concurrency": 3})))
    assert peak == 3


def test_unreachable_endpoint_names_the_url_and_the_fix():
    with pytest.raises(EndpointError) as error:
        check_endpoint(spec_for("http://127.0.0.1:9/v1"), ApiKeys({}), attempts=1)
    assert "http://127.0.0.1:9/v1" in str(error.value) and "--base-url" in str(error.value)


def test_backoff_grows_exponentially_within_jitter_and_cap():
    import random

    rng = random.Random(0)
    delays = [backoff_delay(attempt, 1.0, 8.0, rng) for attempt in range(6)]
    for attempt, delay in enumerate(delays):
        step = min(8.0, 2**attempt)
        assert step / 2 <= delay <= step


NOT_A_MODEL = {
    "html": ScriptedReply(raw=b"<!DOCTYPE html><html><body>Welcome to nginx!</body></html>", content_type="text/html"),
    "plain text": ScriptedReply(raw=b"Service temporarily moved", content_type="text/plain"),
    "no choices": ScriptedReply(raw=b'{"id": "x", "object": "chat.completion", "choices": []}'),
    "cut-off JSON": ScriptedReply(raw=b'{"id": "x", "choices": [{"message": {"content": "Hel'),
}


@pytest.mark.parametrize("answer", list(NOT_A_MODEL), ids=list(NOT_A_MODEL))
def test_an_endpoint_that_is_not_a_model_fails_its_row_then_stops_the_run(answer):
    from factory.errors import NotAChatCompletion
    from factory.llm.client import PROTOCOL_FAILURES_TO_STOP

    async def calls(spec: EndpointSpec, n: int) -> list[BaseException | None]:
        client = ChatClient(spec, ApiKeys({}))
        outcomes: list[BaseException | None] = []
        try:
            for _ in range(n):
                try:
                    await client.chat([{"role": "user", "content": "hi"}], temperature=0, max_tokens=8)
                    outcomes.append(None)
                except (LLMCallError, EndpointError) as exc:
                    outcomes.append(exc)
        finally:
            await client.aclose()
        return outcomes

    with ScriptedOpenAIServer(lambda request: NOT_A_MODEL[answer]) as server:
        outcomes = asyncio.run(calls(spec_for(server.base_url), PROTOCOL_FAILURES_TO_STOP))
        assert server.chat_calls == PROTOCOL_FAILURES_TO_STOP  # a reply that came is not retried
    assert all(isinstance(o, NotAChatCompletion) for o in outcomes[:-1])
    last = outcomes[-1]
    assert (
        isinstance(last, EndpointError)
        and server.base_url in str(last)
        and "not answering as an OpenAI-compatible server" in str(last)
    )
    shown = {
        "html": "an HTML page",
        "plain text": "plain text",
        "no choices": "JSON without choices",
        "cut-off JSON": "not JSON",
    }
    assert shown[answer] in str(last)


def test_html_from_models_is_caught_at_the_endpoint_check():
    with ScriptedOpenAIServer() as server:
        server.models_reply = ScriptedReply(raw=b"<html><body>Login required</body></html>", content_type="text/html")
        with pytest.raises(EndpointError, match="answered /models with an HTML page"):
            check_endpoint(spec_for(server.base_url), ApiKeys({}))


def test_a_server_that_refuses_json_schema_is_asked_with_json_object_from_then_on():
    def llama_cpp_python(request):
        form = (request.get("response_format") or {}).get("type")
        if form == "json_schema":
            return ScriptedReply(status=500, content="'json_schema' is not supported")
        return '{"ok": true}' if form == "json_object" else "plain"

    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}

    async def calls(spec: EndpointSpec):
        client = ChatClient(spec, ApiKeys({}))
        try:
            texts = [
                (
                    await client.chat(
                        [{"role": "user", "content": f"q{n}"}],
                        temperature=0,
                        max_tokens=8,
                        response_format=spec.response_format("answer", schema),
                    )
                ).text
                for n in range(3)
            ]
            return texts, client.report()
        finally:
            await client.aclose()

    with ScriptedOpenAIServer(llama_cpp_python) as server:
        texts, report = asyncio.run(calls(spec_for(server.base_url)))
        forms = [r["response_format"]["type"] for r in server.requests]
    assert texts == ['{"ok": true}'] * 3
    assert forms == ["json_schema", "json_object", "json_object", "json_object"]  # refused once, then never asked again
    assert server.requests[1]["response_format"]["schema"] == schema
    assert report[server.base_url]["json_schema_refused"] == 1 and report[server.base_url]["failures"] == 0


def stand_in_server(log: str, serve: str) -> type:
    """An EmbeddedServer whose process is a tiny HTTP server answering 200 (``s`` in ``serve``),
    which logs each request with ``log``: what the supervisor watches, without a model."""
    import sys

    from factory.llm.embedded import EmbeddedServer

    program = (
        "import http.server, sys\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(200); self.end_headers(); self.wfile.write(b'{}')\n"
        f"    def log_message(self, *a): {log}\n"
        f"s = http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H); {serve}\n"
    )

    class StandIn(EmbeddedServer):
        def command(self) -> list[str]:
            return [sys.executable, "-c", program, str(self.port)]

    return StandIn


def test_an_embedded_server_that_dies_under_a_run_is_an_error_not_a_version():
    import time

    from factory.errors import EmbeddedServerError
    from factory.llm.embedded import check_running_servers

    DiesAfterStarting = stand_in_server(
        log="print('served /v1/models', flush=True)",
        serve="s.handle_request(); sys.exit(3)",  # answers its health check once, then exits
    )

    # the supervisor starts it again each time it dies, then tells the main thread, whatever it waits on
    started = time.monotonic()
    server = DiesAfterStarting()
    server.max_restarts = 2
    with (
        pytest.raises(EmbeddedServerError, match=r"exited with code 3, after 2 restart\(s\).*served /v1/models"),
        server,
    ):
        time.sleep(60)
    assert time.monotonic() - started < 60 and server.restarts == 2
    check_running_servers()  # a stopped server is no longer checked


def test_a_server_stopped_by_its_run_is_not_started_again(capfd):

    Serves = stand_in_server(log="pass", serve="s.serve_forever()")

    for _ in range(3):
        with Serves() as server:
            pass
        assert server.restarts == 0 and server.failure is None
    assert "starting it again" not in capfd.readouterr().err


def test_a_call_that_fails_once_the_embedded_server_is_given_up_raises_why(tmp_path):
    """The supervisor's word reaches the main thread as an exception raised wherever it is; inside a
    request the OpenAI client turns it into a connection error to retry, and the run would go on
    failing every dialogue. The next failed connection must say the server is gone instead."""
    import contextlib
    import time

    from factory.errors import EmbeddedServerError

    DiesAfterStarting = stand_in_server(log="pass", serve="s.handle_request(); sys.exit(3)")
    server = DiesAfterStarting()
    server.max_restarts = 0
    with server:
        with contextlib.suppress(EmbeddedServerError):  # swallowed, as a request in flight does
            time.sleep(60)
        started = time.monotonic()
        with pytest.raises(EmbeddedServerError, match=r"exited with code 3, after 0 restart\(s\)"):
            asyncio.run(one_call(spec_for(server.base_url, retries=50)))
    assert server.failure is not None and time.monotonic() - started < 10
