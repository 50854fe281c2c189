"""A scripted OpenAI-compatible HTTP server on loopback, for tests and benchmarks.

It speaks the real protocol (``GET /v1/models``, ``POST /v1/chat/completions``,
``POST /v1/embeddings``) so the factory's
``openai`` client, retries and Ray workers are exercised exactly as against a real endpoint.
Replies come from a script: a function of the request body. Faults are injected with
``fail_next``: an HTTP status, ``RESET`` (the connection is dropped without an answer) or
``HANG`` (the answer comes after ``hang_seconds``, past a client's timeout); ``context_words``
makes a prompt longer than that a 400, as a model's context limit does. Every request is recorded
(``keep_requests=False`` only counts them, for long benchmarks). The Files and Batches API
(``/v1/files``, ``/v1/batches``) runs a batch's lines through the same script in the background,
``batch_seconds`` after it is created; ``fail_batch_lines(n)`` makes the next ``n`` lines error
lines, ``expire_next_batch(after=k)`` expires the next batch after ``k`` lines. Usage counts words, or, given
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


def _multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    """The fields of a multipart/form-data body (what the openai client's file upload sends)."""
    boundary = re.search(r"boundary=([^;]+)", content_type)
    if boundary is None:
        return {}
    fields = {}
    for part in body.split(b"--" + boundary.group(1).strip('"').encode()):
        head, _, content = part.partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]+)"', head)
        if name:
            fields[name.group(1).decode()] = content.removesuffix(b"\r\n")
    return fields


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
        self.files: dict[str, tuple[str, bytes]] = {}  # id -> (purpose, content)
        self.batches: dict[str, dict[str, Any]] = {}
        self.batch_seconds = 0.2
        self.batch_lines_answered = 0
        self._failing_lines = 0
        self._expire_after: int | None = None
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

    def fail_batch_lines(self, count: int) -> None:
        """The next ``count`` lines of a batch fail (a 500 in the batch's error file)."""
        with self._lock:
            self._failing_lines += count

    def expire_next_batch(self, after: int) -> None:
        """The next batch expires once ``after`` of its lines are answered (the rest never are)."""
        with self._lock:
            self._expire_after = after

    def _add_file(self, purpose: str, content: bytes) -> dict[str, Any]:
        with self._lock:
            file_id = f"file-{len(self.files) + 1}"
            self.files[file_id] = (purpose, content)
        return {
            "id": file_id, "object": "file", "bytes": len(content), "created_at": int(time.time()),
            "filename": f"{file_id}.jsonl", "purpose": purpose, "status": "processed",
        }  # fmt: skip

    def _create_batch(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if body.get("input_file_id") not in self.files:
            return 400, {"error": {"message": f"no file {body.get('input_file_id')}", "type": "invalid_request_error"}}
        with self._lock:
            batch_id = f"batch_{len(self.batches) + 1}"
            expire_after, self._expire_after = self._expire_after, None
            batch = {
                "id": batch_id, "object": "batch", "endpoint": body.get("endpoint", "/v1/chat/completions"),
                "input_file_id": body["input_file_id"], "completion_window": body.get("completion_window", "24h"),
                "status": "in_progress", "created_at": int(time.time()), "output_file_id": None,
                "error_file_id": None, "request_counts": {"total": 0, "completed": 0, "failed": 0},
            }  # fmt: skip
            self.batches[batch_id] = batch
        threading.Thread(target=self._run_batch, args=(batch, expire_after), daemon=True).start()
        return 200, dict(batch)

    def _run_batch(self, batch: dict[str, Any], expire_after: int | None) -> None:
        time.sleep(self.batch_seconds)
        lines = [json.loads(line) for line in self.files[batch["input_file_id"]][1].decode().splitlines() if line]
        answered, failed = [], []
        for index, line in enumerate(lines):
            if expire_after is not None and index >= expire_after:
                break
            with self._lock:
                failing = self._failing_lines > 0
                self._failing_lines -= failing
                self.batch_lines_answered += 1
            status, payload = (500, {"error": {"message": "injected"}}) if failing else self.answer(line["body"])
            entry = {"id": f"batch_req_{index}", "custom_id": line["custom_id"]}
            if status == 200:
                answered.append(
                    {
                        **entry,
                        "response": {"status_code": 200, "request_id": entry["id"], "body": payload},
                        "error": None,
                    }
                )
            else:
                failed.append(
                    {
                        **entry,
                        "response": {"status_code": status, "request_id": entry["id"], "body": payload},
                        "error": None,
                    }
                )

        def jsonl(rows: list[dict[str, Any]]) -> str | None:
            if not rows:
                return None
            return str(self._add_file("batch_output", "".join(json.dumps(row) + "\n" for row in rows).encode())["id"])

        output_file_id, error_file_id = jsonl(answered), jsonl(failed)
        with self._lock:
            batch.update(
                status="expired" if expire_after is not None and expire_after < len(lines) else "completed",
                output_file_id=output_file_id,
                error_file_id=error_file_id,
                request_counts={"total": len(lines), "completed": len(answered), "failed": len(failed)},
            )

    def answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A chat completion for ``body``, as the script answers it: (status, JSON body)."""
        reply = self._scripted(body)
        if reply.raw is not None:
            return reply.status, {"error": {"message": "not a JSON answer"}}
        return reply.status, self._completion(body, reply) if reply.status == 200 else {
            "error": {"message": reply.content or "scripted error"}
        }

    def _scripted(self, body: dict[str, Any]) -> ScriptedReply:
        """The script's reply, or the 400 a model answers a prompt longer than its context with."""
        words = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        if self.context_words is not None and words > self.context_words:
            return ScriptedReply(
                status=400,
                raw=json.dumps(
                    {
                        "error": {
                            "message": f"This model's maximum context length is {self.context_words} words; "
                            f"the prompt has {words}",
                            "type": "invalid_request_error",
                            "code": "context_length_exceeded",
                        }
                    }
                ).encode(),
            )
        reply = self.script(body)
        return ScriptedReply(content=reply) if isinstance(reply, str) else reply

    def _completion(self, body: dict[str, Any], reply: ScriptedReply) -> dict[str, Any]:
        messages = body.get("messages", [])
        words = sum(len(str(m.get("content", "")).split()) for m in messages)
        prompt_tokens = self.count_prompt(messages) if self.count_prompt else words
        completion_tokens = (self.count_tokens or _word_count)(reply.content)
        return {
            "id": f"chatcmpl-{self.chat_calls}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
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
        }

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
                content = re.search(r"/files/([^/]+)/content$", self.path)
                batch = re.search(r"/batches/([^/?]+)$", self.path)
                if content:
                    found = server.files.get(content.group(1))
                    if found is None:
                        self._send(404, {"error": {"message": "no such file"}})
                        return
                    self._send_raw(ScriptedReply(raw=found[1], content_type="application/octet-stream"))
                    return
                if batch:
                    with server._lock:
                        found_batch = dict(server.batches.get(batch.group(1)) or {})
                    self._send(200, found_batch) if found_batch else self._send(404, {"error": {"message": "no batch"}})
                    return
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
                raw = self.rfile.read(length)
                if self.path.rstrip("/").endswith("/files"):
                    fields = _multipart(self.headers.get("Content-Type", ""), raw)
                    self._send(200, server._add_file(fields.get("purpose", b"").decode(), fields.get("file", b"")))
                    return
                body = json.loads(raw or b"{}")
                if self.path.rstrip("/").endswith("/batches"):
                    self._send(*server._create_batch(body))
                    return
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
                reply = server._scripted(body)
                if reply.raw is not None:
                    self._send_raw(reply)
                elif reply.status != 200:
                    self._send(reply.status, {"error": {"message": reply.content or "scripted error"}}, reply.headers)
                else:
                    self._send(200, server._completion(body, reply), reply.headers)

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
