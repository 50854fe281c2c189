"""Every error the factory raises on purpose.

Each class carries the context a user needs to fix the problem (the file, the row, the field,
the flag) and also subclasses the built-in exception it refines, so callers that catch
``ValueError`` or ``ConnectionError`` keep working.
"""

from __future__ import annotations

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


class PersonaFileError(InputError):
    """A persona file with a missing column or a malformed row."""


class EndpointError(FactoryError, ConnectionError):
    """The LLM endpoint cannot be used at all (unreachable, wrong model, bad key)."""


class EmbeddedServerError(FactoryError, RuntimeError):
    """The embedded llama.cpp server could not be started or did not become healthy."""


class OutputError(FactoryError, RuntimeError):
    """The output folder cannot take a new version (not a dataset folder, locked, dirty)."""


class PipelineError(FactoryError, RuntimeError):
    """A run failed as a whole (not one row: those are rejected, not raised)."""


class HubError(FactoryError):
    """The Hub refused or failed a request; the message says which and why (never the token)."""
