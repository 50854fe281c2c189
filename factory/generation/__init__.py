"""Writing dialogues. Each generation mode is a module with a :class:`Writer`, registered here."""

from __future__ import annotations

from factory.generation.role_play import RolePlayWriter
from factory.generation.spc import SPCWriter
from factory.generation.writer import Writer

WRITERS: dict[str, Writer] = {
    "spc": SPCWriter(),
    "role_play": RolePlayWriter(),
}
