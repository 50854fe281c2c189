"""Ray: join the cluster the user named, or start a fresh local one, and ship the code with it.

Worker nodes get the ``factory`` package through Ray's runtime environment (``py_modules``), so a
cluster needs Ray and the dependencies, not persona-factory installed on every node. The API key
travels in the runtime environment's variables, never in a file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import factory

def runtime_env(api_key: str | None) -> dict:
    env_vars: dict[str, str] = {}
    if api_key:
        env_vars["OPENAI_API_KEY"] = api_key
    return {"py_modules": [str(Path(factory.__file__).parent)], "env_vars": env_vars}


@contextmanager
def ray_session(address: str | None, api_key: str | None) -> Iterator[str]:
    """Yields where Ray runs (``local`` or the address). Shuts down only what it started.

    A bare ``ray.init()`` joins whatever cluster Ray's temp dir last recorded, and hangs when that
    cluster is gone; with no address we always start a fresh local one (``address="local"``).
    """
    import ray

    if ray.is_initialized():
        # Inside `ray job submit`, or a caller that already connected: use that session as it is.
        yield address or "existing session"
        return
    ray.init(
        address=address or "local",
        runtime_env=runtime_env(api_key),
        include_dashboard=False,
        logging_level=logging.WARNING,
        log_to_driver=True,
        configure_logging=True,
    )
    try:
        yield address or "local"
    finally:
        ray.shutdown()
