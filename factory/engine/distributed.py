"""Ray: join the cluster the user named, or start a fresh local one, and ship the code with it.

Worker nodes get the ``factory`` package through Ray's runtime environment (``py_modules``), so a
cluster needs Ray and the dependencies, not persona-factory installed on every node. The API key
is not part of the runtime environment (Ray logs its ``env_vars``): the engine hands it to its
workers as an actor argument (see :mod:`factory.llm.keys`).
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import factory
from factory.errors import PipelineError

# How long joining a cluster may take before the run gives up: a wrong address must fail, not hang.
CONNECT_TIMEOUT_SECONDS = 20.0


def runtime_env() -> dict[str, Any]:
    return {"py_modules": [str(Path(factory.__file__).parent)]}


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_SECONDS) -> None:
    """A ``host:port`` address must answer on TCP before Ray is asked to join it: Ray itself
    retries an unreachable cluster for minutes."""
    if address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise PipelineError(f"the Ray address {address!r} is not host:port (check --ray-address or RAY_ADDRESS)")
    hint = "check --ray-address (or RAY_ADDRESS), or leave it out to start a local Ray"
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise PipelineError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or type(exc).__name__}); {hint}"
        ) from None
    # Something listens; a Ray head's GCS is a gRPC server, which an HTTP or other server is not.
    import grpc

    channel = grpc.insecure_channel(address)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        raise PipelineError(
            f"{address} answers, but not as a Ray cluster (no GCS there within {timeout:.0f} s); {hint}"
        ) from None
    finally:
        channel.close()


# Ray's switch for "this machine is no cluster": its node address becomes the loopback one, and
# since Ray 2.5x every server of a node (GCS, raylet, workers, object manager, agents) binds the
# node's address instead of every interface.
_NO_CLUSTER = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextmanager
def loopback_only() -> Iterator[None]:
    """While a local Ray starts: its node address is 127.0.0.1, so nothing of it listens beyond this
    machine (Ray has no authentication of its own: whoever reaches a port can submit code). The
    processes it starts inherit the setting; this process has it back afterwards."""
    from ray._private import ray_constants

    before_env, before_flag = os.environ.get(_NO_CLUSTER), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_NO_CLUSTER] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = before_flag
        if before_env is None:
            os.environ.pop(_NO_CLUSTER, None)
        else:
            os.environ[_NO_CLUSTER] = before_env


# Run as ``python -c _REAPER DRIVER_PID``: every half second it notes the driver's descendants (the
# local Ray's GCS, raylet, agents and workers); once the driver is gone, however it ended (kill -9
# included), it ends those still alive, then itself.
_REAPER = """
import os, sys, time
import psutil
try:
    driver = psutil.Process(int(sys.argv[1]))
except psutil.NoSuchProcess:
    sys.exit(0)
seen = {}
while driver.is_running() and driver.status() != psutil.STATUS_ZOMBIE:
    try:
        for child in driver.children(recursive=True):
            if child.pid != os.getpid():
                seen.setdefault(child.pid, child)
    except psutil.NoSuchProcess:
        break
    time.sleep(0.5)
left = [p for p in seen.values() if p.is_running()]
for process in left:
    try:
        left += [c for c in process.children(recursive=True) if c not in left]
    except psutil.NoSuchProcess:
        pass
for process in left:
    try:
        process.kill()
    except psutil.NoSuchProcess:
        pass
"""


def start_reaper() -> subprocess.Popen[bytes]:
    """The watcher that ends a local Ray's processes when the run's process is gone (see _REAPER);
    Ray's own agents otherwise live on for minutes after a kill -9 of the driver."""
    return subprocess.Popen(
        [sys.executable, "-c", _REAPER, str(os.getpid())],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip


@contextmanager
def ray_session(address: str | None) -> Iterator[str]:
    """Yields where Ray runs (``local`` or the address). Shuts down only what it started.

    A bare ``ray.init()`` joins whatever cluster Ray's temp dir last recorded, and hangs when that
    cluster is gone; with no address we always start a fresh local one (``address="local"``).
    """
    import ray

    if ray.is_initialized():
        # Inside `ray job submit`, or a caller that already connected: use that session as it is.
        yield address or "existing session"
        return
    if address:
        check_reachable(address)
    # A new local Ray turns token authentication on and says so on every start, in the middle of
    # the progress bar; it is the safe setting, and nothing the user has to act on.
    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    on_sigterm = signal.getsignal(signal.SIGTERM)
    try:
        with nullcontext() if address else loopback_only():
            ray.init(
                address=address or "local",
                runtime_env=runtime_env(),
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=True,
                configure_logging=True,
            )
    except (ConnectionError, TimeoutError, RuntimeError) as exc:
        raise PipelineError(
            f"cannot join the Ray cluster at {address or 'local'}: {str(exc).splitlines()[0]}"
        ) from None
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) != on_sigterm:
        # Ray's core installs its own SIGTERM handler, which aborts the process with a C++ stack;
        # the run's own handler unwinds it (the journal closed, exit 143 with the interrupted line)
        signal.signal(signal.SIGTERM, on_sigterm)
    reaper = None if address else start_reaper()
    try:
        yield address or "local"
    finally:
        ray.shutdown()
        if reaper is not None:
            reaper.terminate()
            reaper.wait(timeout=10)
