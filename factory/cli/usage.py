"""Usage errors (a missing argument, an unknown option or command, a value of the wrong type) as
one line and exit 2, whichever Typer is installed."""

from __future__ import annotations

from types import ModuleType

import typer


def _click() -> ModuleType | None:
    """Click, where an older Typer still uses it (Typer 0.2x carries its own copy instead)."""
    try:
        import click
    except ImportError:
        return None
    return click


def usage_error_classes() -> tuple[type[Exception], ...]:
    """The usage-error classes of the Typer installed: its own since 0.20 or so, Click's before;
    both when both are there."""
    click = _click()
    own = getattr(typer, "TyperException", None)
    return tuple(cls for cls in (own, click.exceptions.ClickException if click else None) if cls is not None)


def abort_classes() -> tuple[type[BaseException], ...]:
    click = _click()
    return (KeyboardInterrupt, typer.Abort, *((click.exceptions.Abort,) if click else ()))


def usage_line(exc: Exception) -> str:
    """A usage error in one line, with where to read the command's help."""
    if type(exc).__name__ == "NoArgsIsHelpError":  # a group called bare: its help is the answer
        return ""
    message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
    context = getattr(exc, "ctx", None)
    message = " ".join(message.split()).rstrip(".")
    if context is None:
        return f"error: {message}"
    where = f"see '{context.command_path} --help'"
    return f"error: {message} {where.capitalize()}" if message.endswith("?") else f"error: {message}; {where}"
