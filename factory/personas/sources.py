"""Every persona source, by the tag a recipe names it with (``source: mbti``, ...)."""

from __future__ import annotations

from typing import Any

from factory.errors import RecipeError
from factory.personas.bank import BankRevision
from factory.personas.big_five import BigFiveSampler
from factory.personas.expansion import SPCExpansion
from factory.personas.implicit import ImplicitProfiles
from factory.personas.mbti import MBTISampler
from factory.personas.mbti_bank import MBTIBank
from factory.personas.pool import HubPersonaPool
from factory.personas.source import PersonaSource
from factory.personas.statements import StatementFile

SOURCES: dict[str, PersonaSource] = {
    "mbti": MBTISampler(),
    "big_five": BigFiveSampler(),
    "statements": StatementFile(),
    "bank": BankRevision(),
    "mbti_bank": MBTIBank(),
    "implicit": ImplicitProfiles(),
    "spc_expansion": SPCExpansion(),
    "hub_personas": HubPersonaPool(),
}


def source_for(settings: Any) -> PersonaSource:
    """The source that makes the personas of these recipe settings."""
    try:
        return SOURCES[settings.source]
    except KeyError:
        raise RecipeError(f"no persona source is registered as {settings.source!r}", field="source") from None
