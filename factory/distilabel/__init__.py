"""The factory's parts as distilabel steps, for pipelines built with distilabel.

Importing this package imports distilabel; nothing else in the factory does, so the command line
and the engine never pay for it.
"""

from factory.distilabel.critics import (
    APCCritic,
    AttributionCritic,
    CriticStep,
    FaithfulnessCritic,
    GroundingCritic,
    HeuristicCritic,
    LearnedCritic,
    LLMCriticStep,
    PortrayalCritic,
    ToxicityCritic,
)
from factory.distilabel.port import DistilabelChat

__all__ = [
    "APCCritic",
    "AttributionCritic",
    "CriticStep",
    "DistilabelChat",
    "FaithfulnessCritic",
    "GroundingCritic",
    "HeuristicCritic",
    "LLMCriticStep",
    "LearnedCritic",
    "PortrayalCritic",
    "ToxicityCritic",
]
