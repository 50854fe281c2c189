"""Names and circumstances for sampled personas (MBTI, Big Five), which have no source text."""

from __future__ import annotations

import random

from factory.records import Demographics

FIRST_NAMES = (
    "Amara",
    "Bruno",
    "Chen",
    "Dalia",
    "Elias",
    "Fatima",
    "Gustavo",
    "Hana",
    "Ivan",
    "Jasmine",
    "Kenji",
    "Leila",
    "Mateo",
    "Nadia",
    "Oskar",
    "Priya",
    "Quentin",
    "Rosa",
    "Samir",
    "Tove",
    "Umar",
    "Valeria",
    "Wen",
    "Ximena",
    "Yusuf",
    "Zofia",
)
GENDERS = ("woman", "man", "non-binary")
OCCUPATIONS = (
    "nurse",
    "software developer",
    "teacher",
    "electrician",
    "accountant",
    "chef",
    "student",
    "farmer",
    "graphic designer",
    "bus driver",
    "pharmacist",
    "journalist",
    "retired engineer",
    "shop owner",
    "musician",
    "social worker",
)
LOCATIONS = (
    "Lisbon",
    "Nairobi",
    "Toronto",
    "Osaka",
    "Melbourne",
    "Bogotá",
    "Kraków",
    "Chennai",
    "Glasgow",
    "Austin",
    "Marseille",
    "Seoul",
)


def sample_demographics(rng: random.Random) -> tuple[str, Demographics]:
    name = rng.choice(FIRST_NAMES)
    return name, Demographics(
        age=rng.randint(18, 75),
        gender=rng.choice(GENDERS),
        occupation=rng.choice(OCCUPATIONS),
        location=rng.choice(LOCATIONS),
    )
