"""Ray: join the cluster the user named, or start a fresh local one, and ship the code with it.

Worker nodes get the ``factory`` package through Ray's runtime environment (``py_modules``), so a
cluster needs Ray and the dependencies, not persona-factory installed on every node. The API key
is not part of the runtime environment (Ray logs its ``env_vars``): the engine hands it to its
workers as an actor argument (see :class:`factory.engine.processor.Secret`).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
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
    try:
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
    try:
        yield address or "local"
    finally:
        ray.shutdown()
