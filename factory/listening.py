"""Addresses the factory's own servers listen on: checked before a server starts, so a port that is
taken or out of range is one line naming the flag, not the server's log or a traceback."""

from __future__ import annotations

import errno
import ipaddress
import socket

from factory.errors import InputError


def is_loopback(host: str) -> bool:
    """Only this machine can reach the address (``localhost`` and 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_port(host: str, port: int, flag: str = "--port") -> None:
    """Refuse a port outside 1-65535, or one another process holds on ``host``."""
    if not 1 <= port <= 65535:
        raise InputError(f"{port} is not a port: choose one from 1 to 65535", field=flag)
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InputError(
                    f"port {port} on {host} is taken by another process: choose another", field=flag
                ) from None
            raise InputError(f"cannot listen on {host}:{port} ({exc.strerror})", field=flag) from None
