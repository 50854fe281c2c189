"""A persona a source could not make, and why: published in the bank's manifest and card."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Dropped:
    source: str
    item: str
    reason: str
