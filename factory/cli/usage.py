"""Usage errors (a missing argument, an unknown option or command, a value of the wrong type) as
one line and exit 2, whichever Typer is installed."""

from __future__ import annotations

import typer


def usage_error_classes() -> tuple[type[Exception], ...]:
    """The usage-error classes of the Typer installed: its own since 0.20 or so (it no longer uses
    Click), Click's before; both when both are there."""
    classes: list[type[Exception]] = [cls for cls in (getattr(typer, "TyperException", None),) if cls is not None]
    try:
        import click

        classes.append(click.exceptions.ClickException)
    except ImportError:
        pass
    return tuple(classes)


def abort_classes() -> tuple[type[BaseException], ...]:
    classes: list[type[BaseException]] = [KeyboardInterrupt, typer.Abort]
    try:
        import click

        classes.append(click.exceptions.Abort)
    except ImportError:
        pass
    return tuple(classes)


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
