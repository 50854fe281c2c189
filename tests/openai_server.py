"""A scripted OpenAI-compatible HTTP server on loopback, for tests and benchmarks.

It speaks the real protocol (``GET /v1/models``, ``POST /v1/chat/completions``,
``POST /v1/embeddings``) so the factory's
``openai`` client, retries and Ray workers are exercised exactly as against a real endpoint.
Replies come from a script: a function of the request body. Faults are injected with
``fail_next``: an HTTP status, ``RESET`` (the connection is dropped without an answer) or
``HANG`` (the answer comes after ``hang_seconds``, past a client's timeout); ``context_words``
makes a prompt longer than that a 400, as a model's context limit does. Every request is recorded
(``keep_requests=False`` only counts them, for long benchmarks). Usage counts words, or, given
``count_tokens`` (a text's tokens) and ``count_prompt`` (a prompt's), what a tokenizer says.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Script = Callable[[dict[str, Any]], "str | ScriptedReply"]


@dataclass
class ScriptedReply:
    content: str = ""
    status: int = 200
    finish_reason: str = "stop"
    headers: dict[str, str] = field(default_factory=dict)
    # Sent as it is instead of a Chat Completion: what a server that is not a model answers (an
    # HTML page, plain text, JSON cut off), with its content type.
    raw: bytes | None = None
    content_type: str = "application/json"


RESET = "reset"
HANG = "hang"


def echo_script(request: dict[str, Any]) -> str:
    return "User 1: Hello.\nUser 2: Hi."


def _word_count(text: str) -> int:
    return len(text.split())


_TOKEN = re.compile(r"[a-z0-9']+")


def bag_of_words_embedding(text: str, dims: int = 256) -> list[float]:
    """A deterministic embedding: word counts hashed into ``dims`` buckets, L2-normalised. Texts
    that share most words are close, which is what near-duplicate and redundancy checks need."""
    vector = [0.0] * dims
    for word in _TOKEN.findall(text.lower()):
        vector[int(hashlib.md5(word.encode()).hexdigest(), 16) % dims] += 1.0
    norm = math.sqrt(sum(value * value for value in vector)) or 1.0
    return [value / norm for value in vector]


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5; a client with 64 requests in flight on a busy
    # machine then sees its connections reset.
    request_queue_size = 256
    daemon_threads = True


class ScriptedOpenAIServer:
    """``with ScriptedOpenAIServer(script) as server: server.base_url``."""

    def __init__(
        self,
        script: Script = echo_script,
        *,
        model: str = "scripted-model",
        delay: float = 0.0,
        keep_requests: bool = True,
        context_words: int | None = None,
        hang_seconds: float = 30.0,
        count_tokens: Callable[[str], int] | None = None,
        count_prompt: Callable[[list[dict[str, Any]]], int] | None = None,
    ) -> None:
        self.script = script
        self.count_tokens = count_tokens
        self.count_prompt = count_prompt
        self.model = model
        self.delay = delay
        self.keep_requests = keep_requests
        self.context_words = context_words
        self.hang_seconds = hang_seconds
        self.requests: list[dict[str, Any]] = []
        self.models_reply: ScriptedReply | None = None  # set to answer GET /models with something else
        self.api_keys: set[str] = set()  # the bearer tokens chat requests came with
        self.embedding_requests: list[dict[str, Any]] = []
        self.faults_served = 0
        self._calls = 0
        self._failures: list[int | str] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, name="scripted-openai", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def chat_calls(self) -> int:
        with self._lock:
            return self._calls

    def fail_next(self, *faults: int | str) -> None:
        """The next chat requests get these faults (an HTTP status, RESET or HANG), in order,
        before the script answers again."""
        with self._lock:
            self._failures.extend(faults)

    def _next_failure(self) -> int | str | None:
        with self._lock:
            if not self._failures:
                return None
            self.faults_served += 1
            return self._failures.pop(0)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                # the client may be gone (killed, or gave up on a timeout): nobody to answer
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(payload)

            def _embeddings(self, body: dict[str, Any]) -> None:
                with server._lock:
                    server.embedding_requests.append(body)
                texts = body.get("input", [])
                texts = [texts] if isinstance(texts, str) else texts
                self._send(
                    200,
                    {
                        "object": "list",
                        "model": body.get("model", server.model),
                        "data": [
                            {"object": "embedding", "index": index, "embedding": bag_of_words_embedding(text)}
                            for index, text in enumerate(texts)
                        ],
                        "usage": {"prompt_tokens": 0, "total_tokens": 0},
                    },
                )

            def _send_raw(self, reply: ScriptedReply) -> None:
                payload = reply.raw or b""
                self.send_response(reply.status)
                self.send_header("Content-Type", reply.content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models") and server.models_reply is not None:
                    self._send_raw(server.models_reply)
                elif self.path.rstrip("/").endswith("/models"):
                    self._send(
                        200, {"object": "list", "data": [{"id": server.model, "object": "model", "owned_by": "tests"}]}
                    )
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.rstrip("/").endswith("/embeddings"):
                    self._embeddings(body)
                    return
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}})
                    return
                with server._lock:
                    server._calls += 1
                    server.api_keys.add(self.headers.get("Authorization", "").removeprefix("Bearer "))
                    if server.keep_requests:
                        server.requests.append(body)
                if server.delay:
                    time.sleep(server.delay)
                failure = server._next_failure()
                if failure == RESET:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if failure == HANG:
                    time.sleep(server.hang_seconds)
                elif failure is not None:
                    self._send(int(failure), {"error": {"message": f"injected {failure}", "type": "injected"}})
                    return
                words = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
                if server.context_words is not None and words > server.context_words:
                    self._send(
                        400,
                        {
                            "error": {
                                "message": f"This model's maximum context length is {server.context_words} "
                                f"words; the prompt has {words}",
                                "type": "invalid_request_error",
                                "code": "context_length_exceeded",
                            }
                        },
                    )
                    return
                reply = server.script(body)
                if isinstance(reply, str):
                    reply = ScriptedReply(content=reply)
                if reply.raw is not None:
                    self._send_raw(reply)
                    return
                if reply.status != 200:
                    self._send(reply.status, {"error": {"message": reply.content or "scripted error"}}, reply.headers)
                    return
                messages = body.get("messages", [])
                prompt_tokens = server.count_prompt(messages) if server.count_prompt else words
                completion_tokens = (server.count_tokens or _word_count)(reply.content)
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-{server.chat_calls}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", server.model),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": reply.content},
                                "finish_reason": reply.finish_reason,
                            }
                        ],
                        "usage": {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens,
                        },
                    },
                    reply.headers,
                )

        return Handler

    def start(self) -> ScriptedOpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ScriptedOpenAIServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
