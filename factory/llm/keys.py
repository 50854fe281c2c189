"""API keys, each sent only to the endpoint it is for.

An endpoint (``llm``, ``critics.llm``, a role-play agent, ``embeddings``) names the environment
variable its key is read from (``api_key_env``, ``OPENAI_API_KEY`` unless set), so a judge at
another provider never receives the generator's key. No key is written to any file: the run hands
the keys its endpoints name to its Ray workers as an actor argument, which Ray keeps in memory (a
runtime environment's ``env_vars`` would do, but Ray writes those into its logs).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Protocol

from factory.recipes.llm import DEFAULT_KEY_ENV

__all__ = ["DEFAULT_KEY_ENV", "ApiKeys"]


class NamesItsKey(Protocol):
    @property
    def api_key_env(self) -> str: ...


class ApiKeys:
    """The keys of a run's endpoints by variable name: read from this process's environment when
    asked, or (``only``) the values of the variables named, to travel to another process."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values = dict(values) if values is not None else None

    def get(self, name: str) -> str | None:
        if self._values is None:
            return os.environ.get(name) or None
        return self._values.get(name)

    def for_endpoint(self, endpoint: NamesItsKey) -> str | None:
        return self.get(endpoint.api_key_env)

    def only(self, names: Iterable[str]) -> ApiKeys:
        """The keys of these variables alone, as values: what a worker elsewhere needs."""
        return ApiKeys({name: key for name in sorted(set(names)) if (key := self.get(name)) is not None})

    def __repr__(self) -> str:  # never print a secret
        shown = "environment" if self._values is None else ", ".join(f"{name}=***" for name in sorted(self._values))
        return f"ApiKeys({shown})"
