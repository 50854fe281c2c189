"""How an extension is declared: one spec object per critic, found by name, built in or a plugin.

A critic is one module holding one :class:`CriticSpec`: its name, its settings class (a
:class:`factory.recipes.critics.CriticConfig` subclass: its scope, its defaults, whether it asks a
model), its judge, what ``critics eval`` scores it against and how many calls it makes. Everything
else (the recipe's ``critics`` section, ``plan``, the card, the distilabel steps, ``critics
eval``/``judge``/``calibrate`` and ``eval-model``) reads the spec. A package installed beside the
factory adds a critic with one entry point in the ``persona_factory.critics`` group naming its spec
(``my_package.critic:SPEC``); a name already taken is refused.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from pydantic import BaseModel

from factory.errors import PluginError
from factory.records import DialogueRecord, PersonaProfile, Verdict

CRITICS_GROUP = "persona_factory.critics"

# what `critics eval` can score a critic against: a label of the rated data
EVAL_LABELS = ("faithful", "toxic", "well_formed", "portrayed")


def once(speakers: Sequence[PersonaProfile]) -> int:
    return 1


@dataclass(frozen=True)
class CriticSpec:
    """One critic, declared once.

    ``judge(record, settings, context)`` is the async function the engine, ``critics eval`` and the
    distilabel step all run (``context`` is a :class:`factory.critics.base.JudgeContext`).
    ``label``: the rated label ``critics eval`` scores it against, and whether the critic should
    pass when the label is true. ``calls``: a model-asking critic's calls on a dialogue of these
    speakers (what ``plan`` counts). ``embeds``: it needs the run's sentence embedder.
    """

    name: str
    settings: type[BaseModel]
    judge: Callable[[DialogueRecord, Any, Any], Awaitable[Verdict]]
    summary: str
    label: tuple[str, bool] = ("faithful", True)
    calls: Callable[[Sequence[PersonaProfile]], int] = once
    embeds: bool = False

    def __post_init__(self) -> None:
        if not self.name.isidentifier() or not self.name.islower():
            raise PluginError(f"critic name {self.name!r}: a lower-case identifier (it is a recipe key)")
        if self.label[0] not in EVAL_LABELS:
            raise PluginError(f"critic {self.name}: label {self.label[0]!r} is none of {', '.join(EVAL_LABELS)}")


def plugin_objects(group: str) -> list[tuple[str, object]]:
    """The objects the installed packages' entry points in ``group`` name, each with where it came
    from (``distribution: name = module:attr``), in a stable order."""
    found = []
    for point in sorted(entry_points(group=group), key=lambda p: (p.name, p.value)):
        where = f"{point.dist.name if point.dist else '?'}: {point.name} = {point.value}"
        try:
            found.append((where, point.load()))
        except Exception as error:  # a broken plugin is named, whatever it raised
            raise PluginError(f"plugin {where} ({group}) does not load: {type(error).__name__}: {error}") from error
    return found
