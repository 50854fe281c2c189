"""Named points where a test can have the process killed outright, to prove that a run resumes
from anywhere: ``PERSONA_FACTORY_FAILPOINT=name`` or ``name:N`` (the N-th time it is reached).

The process gets SIGKILL, as from the OOM killer or a lost machine: no cleanup, no ``finally``.
Unset (always, outside tests), a failpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import threading

ENV = "PERSONA_FACTORY_FAILPOINT"
_reached: dict[str, int] = {}
_lock = threading.Lock()


def failpoint(name: str) -> None:
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, count = wanted.partition(":")
    if point != name:
        return
    with _lock:
        _reached[name] = _reached.get(name, 0) + 1
        if _reached[name] >= int(count or 1):
            os.kill(os.getpid(), signal.SIGKILL)
