"""The learned critic in the cascade: a trained critic's calibrated probability against its threshold.

Its reason names what pulled the score down: the detector surest the dialogue is not a real conversation.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from factory.critics.base import JudgeContext, no_turns
from factory.critics.learned.features import features
from factory.critics.learned.model import SHIPPED, LearnedCritic, load_critic, record_parts
from factory.llm.embeddings import Embedder, shared_minilm
from factory.recipes.critics import LearnedCriticConfig
from factory.recipes.extensions import CriticSpec
from factory.records import DialogueRecord, Verdict

CRITIC_NAME = "learned"

# what a detector that finds a dialogue unreal says about it, for the verdict's reason
WHY = {
    "persona_swapped": "a speaker's lines do not fit their own persona",
    "speakers_exchanged": "the speakers' lines fit each other's personas better than their own",
    "turns_shuffled": "the turns do not follow from one another",
    "turns_truncated": "turns are cut off mid-sentence",
    "own_lines_repeated": "a speaker repeats their own lines",
    "boilerplate_inserted": "a line reads as an assistant's, not a speaker's",
    "reviewed": "it is like the dialogues the reviewers found out of character",
    "judged": "it is like the dialogues the judge found unfaithful",
}
_loading = threading.Lock()


def critic_folder(model: str) -> Path:
    return SHIPPED if model == "shipped" else Path(model).expanduser()


@lru_cache(maxsize=4)
def critic_at(folder: Path) -> LearnedCritic:
    return load_critic(folder)


def embedder_for_critics() -> Embedder:
    """The packaged all-MiniLM-L6-v2 the trained critics were trained on: the process's shared one."""
    return shared_minilm()


def loaded(config: LearnedCriticConfig) -> LearnedCritic:
    with _loading:  # judges run on threads: one load
        return critic_at(critic_folder(config.model))


def weakest(critic: LearnedCritic, row: np.ndarray) -> str:
    """What the detector surest the dialogue is not real says."""
    detector = critic.head.detectors[int(np.argmin(critic.head.each(row[None, :])[0]))]
    return WHY.get(detector, f"it is like the {detector} dialogues")


def verdict(
    critic: LearnedCritic, row: np.ndarray, threshold: float, band: tuple[float, float] | None = None
) -> Verdict:
    """Passed at the threshold; with an uncertain band, passed from the band's low end (in the band
    the LLM critics after it decide)."""
    probability = float(critic.head.probabilities(row[None, :])[0])
    bar, against = (
        (threshold, f"threshold {threshold:.2f}") if band is None else (band[0], f"band {band[0]:.2f}-{band[1]:.2f}")
    )
    passed = probability >= bar
    if not passed:
        reason = f"{weakest(critic, row)} (p={probability:.2f}, {against})"
    elif band is not None and probability <= band[1]:
        reason = f"unsure: in the uncertain band, for the judges to decide (p={probability:.2f}, {against})"
    else:
        reason = f"reads as a real conversation (p={probability:.2f}, {against})"
    return Verdict(critic=CRITIC_NAME, passed=passed, score=round(probability, 4), reason=reason, judge=critic.name)


def audited(record_id: str, share: float) -> bool:
    """Whether a dialogue above the band is still sent to the judges: fixed by its id."""
    return int(hashlib.sha256(record_id.encode()).hexdigest()[:8], 16) / 16**8 < share


def decided_for(record: DialogueRecord, name: str, config: LearnedCriticConfig) -> Verdict | None:
    """The verdict of LLM critic ``name`` when the learned critic's score is above its uncertain band
    (and the dialogue is not audited): passed, on the learned critic's word, with no call made."""
    band = config.uncertain_band
    if band is None or not config.enabled:
        return None
    learned = next((v for v in record.verdicts if v.critic == CRITIC_NAME and v.answered), None)
    if learned is None or learned.score is None or learned.score <= band[1] or audited(record.id, config.audit_share):
        return None
    return Verdict(
        critic=name,
        passed=True,
        score=None,
        reason=f"not asked: the learned critic is sure (p={learned.score:.2f}, above the band's {band[1]:.2f})",
        decided_by=CRITIC_NAME,
    )


async def judge(record: DialogueRecord, config: LearnedCriticConfig, context: JudgeContext) -> Verdict:
    if not record.turns:
        return no_turns(CRITIC_NAME)
    critic = await asyncio.to_thread(loaded, config)
    embedder = await asyncio.to_thread(embedder_for_critics)
    profiles, lines = record_parts(record)
    vectors = await asyncio.to_thread(critic.vectors, profiles, lines, embedder)  # off the loop
    threshold = critic.threshold if config.threshold is None else config.threshold
    return verdict(critic, features(vectors, critic.probes), threshold, config.uncertain_band)


SPEC = CriticSpec(
    CRITIC_NAME,
    LearnedCriticConfig,
    judge,
    "The trained critic: does it read as a real persona conversation? (sentence embeddings, a small head)",
)
