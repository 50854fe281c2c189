"""Every error the factory raises on purpose.

Each class carries the context a user needs to fix the problem (the file, the row, the field,
the flag) and also subclasses the built-in exception it refines, so callers that catch
``ValueError`` or ``ConnectionError`` keep working.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class FactoryError(Exception):
    """Base class of every error the factory raises deliberately."""


class InputError(FactoryError, ValueError):
    """Bad user input: names the file, and the row and field when there is one."""

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        row: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.row = row
        self.field = field
        self.detail = message
        where = []
        if self.path is not None:
            where.append(self.path)
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


class RecipeError(InputError):
    """A recipe that does not validate: unknown key, wrong type, impossible bounds."""


class PluginError(InputError):
    """An installed plugin that does not load, or declares a name already taken."""


class PersonaFileError(InputError):
    """A persona file with a missing column or a malformed row."""


class EndpointError(FactoryError, ConnectionError):
    """The LLM endpoint cannot be used at all (unreachable, wrong model, bad key)."""


class BudgetReached(FactoryError):
    """The run stopped before its budget (--max-tokens, --max-cost) ran out; the journal keeps what it did."""


class EmbeddedServerError(FactoryError, RuntimeError):
    """The embedded llama.cpp server could not be started or did not become healthy."""


class OutputError(FactoryError, RuntimeError):
    """The output folder cannot take a new version (not a dataset folder, locked, dirty)."""


class PipelineError(FactoryError, RuntimeError):
    """A run failed as a whole (not one row: those are rejected, not raised)."""


class HubError(FactoryError):
    """The Hub refused or failed a request; the message says which and why (never the token)."""


class ReviewError(FactoryError):
    """The review cannot take this step (the message says what is missing)."""


class LLMCallError(FactoryError, RuntimeError):
    """One chat call failed for good (retries spent, or an answer no retry can fix): its row fails."""


class NotAChatCompletion(LLMCallError):
    """A 200 whose body is not a Chat Completion (an HTML page, plain text, no choices, cut JSON)."""


@contextmanager
def hub_errors(action: str, repo: str) -> Iterator[None]:
    """The Hub's failures as one line that says what was being done and what went wrong: an HTTP
    error with the Hub's own words, or a Hub that cannot be reached at all."""
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError

    try:
        yield
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else "no answer"
        raise HubError(f"the Hub refused {action} {repo} ({status}): {str(exc).splitlines()[0]}") from exc
    except HFValidationError as exc:
        raise InputError(f"{repo!r}: {str(exc).splitlines()[0]}", field="--repo") from exc
    except _transport_errors() as exc:
        raise HubError(f"the Hub could not be reached for {action} {repo}: {type(exc).__name__}: {exc}") from exc


def _transport_errors() -> tuple[type[BaseException], ...]:
    """A connection that failed (refused, reset, timed out), in whichever HTTP library
    huggingface_hub speaks through (httpx in recent releases, requests in older ones)."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module, name in (("httpx2", "TransportError"), ("httpx", "TransportError"), ("requests", "RequestException")):
        try:
            found.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


class MostlyUnanswered(EndpointError):
    """`critics eval`: the judge answered too few items for a figure to mean anything."""
