"""Names and circumstances for sampled personas (MBTI, Big Five), which have no source text."""

from __future__ import annotations

import random

from factory.records import Demographics

# First names by the gender a persona is drawn with, from many languages, so that a persona's name
# never contradicts its gender; non-binary personas take names given to people of any gender.
NAMES_BY_GENDER = {
    "woman": (
        "Amara", "Dalia", "Fatima", "Hana", "Jasmine", "Leila", "Nadia", "Priya", "Rosa", "Tove", "Valeria",
        "Ximena", "Zofia", "Ingrid", "Mei", "Aisha", "Camila", "Yuki", "Olga", "Chiara", "Ngozi", "Sofia",
    ),
    "man": (
        "Bruno", "Elias", "Gustavo", "Ivan", "Kenji", "Mateo", "Oskar", "Quentin", "Samir", "Umar", "Yusuf",
        "Tariq", "Lars", "Diego", "Kwame", "Rahul", "Tomasz", "Hiroshi", "Emeka", "Luca", "Anders", "Farid",
    ),
    "non-binary": (
        "Alex", "Robin", "Sasha", "Kai", "Noa", "Ariel", "Jules", "Sam", "Rowan", "Eden", "Remi", "Avery",
    ),
}  # fmt: skip
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


def sample_demographics(rng: random.Random, taken: set[str] | None = None) -> tuple[str, Demographics]:
    """A gender, then a name given to people of that gender and not yet in ``taken`` (the run's
    pool so far, which it joins): once a gender's names are all used, the same names come back
    with a surname initial ("Priya K.")."""
    gender = rng.choice(GENDERS)
    name = _free_name(NAMES_BY_GENDER[gender], rng, taken if taken is not None else set())
    return name, Demographics(
        age=rng.randint(18, 75),
        gender=gender,
        occupation=rng.choice(OCCUPATIONS),
        location=rng.choice(LOCATIONS),
    )


def _free_name(names: tuple[str, ...], rng: random.Random, taken: set[str]) -> str:
    for initial in ("", *(f" {letter}." for letter in "ABCDEFGHIJKLMNOPRSTVWZ")):
        free = [name + initial for name in names if name + initial not in taken]
        if free:
            name = rng.choice(free)
            taken.add(name)
            return name
    name = f"{rng.choice(names)} {len(taken)}"  # past some 500 names of one gender: numbered, still unique
    taken.add(name)
    return name
