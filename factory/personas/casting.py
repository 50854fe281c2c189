"""Casting: which personas talk to each other in each dialogue.

Strategies (``casting.strategy``):

- ``random``: speakers drawn from a shuffled deck, refilled when empty, so every persona speaks
  before any speaks twice.
- ``compatible``: after Synthetic-Persona-Chat, a speaker's partners share at least
  ``min_shared_topics`` topics (the queries their statements answer) with them.
- ``contrasting``: partners differ from the first speaker on at least ``min_contrast`` MBTI axes
  (or Big Five traits in opposite bands, for Big Five personas).
- ``quota``: every cell named in ``casting.quota`` (an MBTI type, a Big Five band, a kind, a
  source) is represented; speaker slots go round the cells so they are shared evenly.
- ``user_assistant``: an implicit user profile (the user simulator) talks to an assistant persona.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass

from factory.errors import PipelineError, RecipeError
from factory.recipes.personas import CastingConfig, QuotaCell
from factory.records import PersonaProfile
from factory.traits import BIG_FIVE_BANDS, BIG_FIVE_TRAITS, MBTI_TYPES, coarse_band


@dataclass(frozen=True)
class Cast:
    dialogue_id: str
    speakers: tuple[PersonaProfile, ...]
    seed: int
    roles: tuple[str, ...] = ()


class Deck:
    """Personas drawn without replacement, reshuffled when spent."""

    def __init__(self, personas: list[PersonaProfile], rng: random.Random) -> None:
        self.personas = list(personas)
        self.rng = rng
        self._cards: list[PersonaProfile] = []

    def draw(
        self, exclude: set[str], accept: Callable[[PersonaProfile], bool] = lambda _: True
    ) -> PersonaProfile | None:
        """The next persona not in ``exclude`` that ``accept`` takes; None when there is none."""
        eligible = [p for p in self.personas if p.id not in exclude and accept(p)]
        if not eligible:
            return None
        eligible_ids = {p.id for p in eligible}
        if not any(p.id in eligible_ids for p in self._cards):
            self._cards = list(self.personas)
            self.rng.shuffle(self._cards)
        for position in range(len(self._cards) - 1, -1, -1):
            if self._cards[position].id in eligible_ids:
                return self._cards.pop(position)
        raise PipelineError("the persona deck was refilled and still holds no eligible persona")

    def take(self, exclude: set[str]) -> PersonaProfile:
        """The next persona not in ``exclude``; casting checked beforehand that there is one."""
        persona = self.draw(exclude)
        if persona is None:
            raise PipelineError(f"casting ran out of personas ({len(self.personas)} in the pool, {len(exclude)} taken)")
        return persona


def shared_topics(a: PersonaProfile, b: PersonaProfile) -> int:
    return len(set(a.topics) & set(b.topics))


def contrast(a: PersonaProfile, b: PersonaProfile) -> int | None:
    """Opposite MBTI axes, or Big Five traits in opposite bands; None when not comparable."""
    if a.mbti and b.mbti:
        return sum(x != y for x, y in zip(a.mbti, b.mbti))
    if a.big_five and b.big_five:
        return sum(
            {coarse_band(getattr(a.big_five, t)), coarse_band(getattr(b.big_five, t))} == {"low", "high"}
            for t in BIG_FIVE_TRAITS
        )
    return None


def cell_value(persona: PersonaProfile, by: str) -> str | None:
    if by == "mbti":
        return persona.mbti
    if by == "kind":
        return persona.kind
    if by == "source":
        return persona.source.split(" ")[0] if persona.source else None
    trait = by.split(".", 1)[1]
    return coarse_band(getattr(persona.big_five, trait)) if persona.big_five else None


def quota_cells(quota: list[QuotaCell]) -> list[tuple[str, str]]:
    cells: list[tuple[str, str]] = []
    for spec in quota:
        if spec.values:
            values = [v.upper() if spec.by == "mbti" else v for v in spec.values]
        else:
            values = list(MBTI_TYPES) if spec.by == "mbti" else list(BIG_FIVE_BANDS)
        cells.extend((spec.by, value) for value in values)
    return cells


def _new_cast(
    casts: list[Cast], speakers: list[PersonaProfile], rng: random.Random, prefix: str, roles: tuple[str, ...] = ()
) -> None:
    casts.append(
        Cast(dialogue_id=f"{prefix}-{len(casts):06d}", speakers=tuple(speakers), seed=rng.randrange(2**31), roles=roles)
    )


def _fill(
    deck: Deck, speakers: list[PersonaProfile], size: int, accept: Callable[[PersonaProfile], bool] = lambda _: True
) -> bool:
    while len(speakers) < size:
        persona = deck.draw({p.id for p in speakers}, accept)
        if persona is None:
            return False
        speakers.append(persona)
    return True


def cast_dialogues(
    pool: list[PersonaProfile], casting: CastingConfig, rng: random.Random, *, id_prefix: str
) -> list[Cast]:
    if len(pool) < casting.group_size:
        raise RecipeError(
            f"the persona pool has {len(pool)} persona(s) but a dialogue needs {casting.group_size}",
            field="personas",
        )
    strategy = {
        "random": _random,
        "compatible": _compatible,
        "contrasting": _contrasting,
        "quota": _quota,
        "user_assistant": _user_assistant,
    }[casting.strategy]
    return strategy(pool, casting, rng, id_prefix)


def _random(pool: list[PersonaProfile], casting: CastingConfig, rng: random.Random, prefix: str) -> list[Cast]:
    deck = Deck(pool, rng)
    casts: list[Cast] = []
    for _ in range(casting.dialogues):
        speakers: list[PersonaProfile] = []
        _fill(deck, speakers, casting.group_size)
        _new_cast(casts, speakers, rng, prefix)
    return casts


def _partnered(
    pool: list[PersonaProfile],
    casting: CastingConfig,
    rng: random.Random,
    prefix: str,
    fits: Callable[[PersonaProfile, PersonaProfile], bool],
    rule: str,
) -> list[Cast]:
    """Casts whose later speakers all ``fit`` the first; first speakers with no fitting partners
    are skipped."""
    leads = [p for p in pool if sum(fits(p, q) for q in pool if q.id != p.id) >= casting.group_size - 1]
    if not leads:
        raise RecipeError(
            f"no persona in the pool has {casting.group_size - 1} partner(s) that {rule}", field="casting.strategy"
        )
    lead_deck, partner_deck = Deck(leads, rng), Deck(pool, rng)
    casts: list[Cast] = []
    for _ in range(casting.dialogues):
        lead = lead_deck.take(set())
        speakers = [lead]
        _fill(partner_deck, speakers, casting.group_size, functools.partial(fits, lead))
        _new_cast(casts, speakers, rng, prefix)
    return casts


def _compatible(pool: list[PersonaProfile], casting: CastingConfig, rng: random.Random, prefix: str) -> list[Cast]:
    if not any(p.topics for p in pool):
        raise RecipeError(
            "compatible casting pairs personas by shared topics, and no persona in the pool has topics "
            "(build a bank with an spc_expansion source)",
            field="casting.strategy",
        )
    need = casting.min_shared_topics
    return _partnered(
        pool, casting, rng, prefix, lambda a, b: shared_topics(a, b) >= need, f"share {need} topics with it"
    )


def _contrasting(pool: list[PersonaProfile], casting: CastingConfig, rng: random.Random, prefix: str) -> list[Cast]:
    need = casting.min_contrast

    def fits(a: PersonaProfile, b: PersonaProfile) -> bool:
        score = contrast(a, b)
        return score is not None and score >= need

    return _partnered(pool, casting, rng, prefix, fits, f"differ from it on {need} MBTI axes or Big Five bands")


def _quota(pool: list[PersonaProfile], casting: CastingConfig, rng: random.Random, prefix: str) -> list[Cast]:
    cells = quota_cells(casting.quota)
    empty = [f"{by}={value}" for by, value in cells if not any(cell_value(p, by) == value for p in pool)]
    if empty:
        raise RecipeError(f"no persona in the pool for the cell(s) {', '.join(empty)}", field="casting.quota")
    slots = casting.dialogues * casting.group_size
    if slots < len(cells):
        raise RecipeError(
            f"{casting.dialogues} dialogue(s) of {casting.group_size} speakers have {slots} speaker slots, "
            f"fewer than the {len(cells)} cells to cover; raise casting.dialogues",
            field="casting.dialogues",
        )
    queue = list(cells)
    rng.shuffle(queue)
    decks = {cell: Deck([p for p in pool if cell_value(p, cell[0]) == cell[1]], rng) for cell in queue}
    fallback = Deck(pool, rng)
    casts: list[Cast] = []
    for _ in range(casting.dialogues):
        speakers: list[PersonaProfile] = []
        while len(speakers) < casting.group_size:
            taken = {p.id for p in speakers}
            # The cell longest without a speaker goes first; one whose personas are all in this
            # dialogue already keeps its place for the next.
            persona = None
            for position, cell in enumerate(queue):
                persona = decks[cell].draw(taken)
                if persona is not None:
                    queue.append(queue.pop(position))
                    break
            if persona is None:
                persona = fallback.take(taken)  # the pool holds at least group_size personas
            speakers.append(persona)
        _new_cast(casts, speakers, rng, prefix)
    return casts


def _user_assistant(pool: list[PersonaProfile], casting: CastingConfig, rng: random.Random, prefix: str) -> list[Cast]:
    users = [p for p in pool if p.kind == "implicit"]
    assistants = [p for p in pool if p.kind != "implicit"]
    if not users or not assistants:
        raise RecipeError(
            f"user_assistant casting needs implicit user profiles and other personas as assistants; the pool has "
            f"{len(users)} implicit and {len(assistants)} other",
            field="casting.strategy",
        )
    user_deck, assistant_deck = Deck(users, rng), Deck(assistants, rng)
    casts: list[Cast] = []
    for _ in range(casting.dialogues):
        user, assistant = user_deck.take(set()), assistant_deck.take(set())
        _new_cast(casts, [user, assistant], rng, prefix, roles=("user", "assistant"))
    return casts


@dataclass
class CellTopUp:
    """New casts for the quota cells short of ``casting.accepted_per_cell`` accepted dialogues.

    Each top-up round's casts depend only on the counts of the rounds before it and on the
    recipe's seed, so a resumed run casts exactly what the first attempt did."""

    pool: list[PersonaProfile]
    casting: CastingConfig
    seed: int
    prefix: str
    # with persona-disjoint splits: each persona's split, so a top-up pairs within one as the first casts do
    split_of: Callable[[PersonaProfile], str] | None = None

    @property
    def cells(self) -> list[tuple[str, str]]:
        return quota_cells(self.casting.quota)

    def demand(
        self, cast: dict[tuple[str, str], int], accepted: dict[tuple[str, str], int]
    ) -> dict[tuple[str, str], int]:
        """Dialogues each cell still needs, as far as its attempts allow."""
        wanted = self.casting.accepted_per_cell or 0
        limit = self.casting.attempts_per_cell
        needs = {cell: min(wanted - accepted.get(cell, 0), limit - cast.get(cell, 0)) for cell in self.cells}
        return {cell: need for cell, need in needs.items() if need > 0}

    def _beside(self, first: PersonaProfile) -> Callable[[PersonaProfile], bool]:
        """Who may join ``first``: anyone, or with splits, a persona of its split."""
        split_of = self.split_of
        if split_of is None:
            return lambda _persona: True
        split = split_of(first)
        return lambda persona: split_of(persona) == split

    def casts(self, demand: dict[tuple[str, str], int], iteration: int) -> list[Cast]:
        """One cast per missing dialogue, its first speaker from the short cell and its partners
        from cells already full where there are any: a partner whose own dialogues fail would fail
        this one too, and drag a second cell down with the first."""
        rng = random.Random(f"{self.seed}:top-up:{iteration}")
        decks = {cell: Deck([p for p in self.pool if cell_value(p, cell[0]) == cell[1]], rng) for cell in demand}
        short = {p.id for p in self.pool for cell in demand if cell_value(p, cell[0]) == cell[1]}
        partners = Deck([p for p in self.pool if p.id not in short] or self.pool, rng)
        fallback = Deck(self.pool, rng)
        casts: list[Cast] = []
        for cell, need in demand.items():
            for _ in range(need):
                speakers = [decks[cell].take(set())]
                beside = self._beside(speakers[0])
                while len(speakers) < self.casting.group_size:
                    taken = {p.id for p in speakers}
                    partner = partners.draw(taken, beside) or fallback.draw(taken, beside)
                    if partner is None:  # casting checked that each split holds a dialogue's speakers
                        raise PipelineError(f"no partner for {speakers[0].id} in its split")
                    speakers.append(partner)
                _new_cast(casts, speakers, rng, f"{self.prefix}-r{iteration}")
        return casts


def cells_of(
    speakers: tuple[PersonaProfile, ...] | list[PersonaProfile], cells: list[tuple[str, str]]
) -> set[tuple[str, str]]:
    """The quota cells a dialogue's speakers stand in (a dialogue counts once per cell)."""
    return {cell for cell in cells for persona in speakers if cell_value(persona, cell[0]) == cell[1]}


def cast_within_splits(
    pool: list[PersonaProfile],
    casting: CastingConfig,
    rng: random.Random,
    *,
    id_prefix: str,
    split_of: Callable[[PersonaProfile], str],
) -> list[Cast]:
    """Casts whose speakers all come from one split (``split_of``), so no dialogue is lost to
    persona-disjoint train and test splits: each split is cast by the recipe's strategy on its own
    personas, with a share of the dialogues in proportion to them, and the casts interleaved."""
    groups: dict[str, list[PersonaProfile]] = {}
    for persona in pool:
        groups.setdefault(split_of(persona), []).append(persona)
    for split, personas in sorted(groups.items()):
        if len(personas) < casting.group_size:
            raise RecipeError(
                f"the {split} split holds {len(personas)} of the {len(pool)} personas, fewer than a dialogue's "
                f"{casting.group_size}; add personas or move the split's share",
                field="output.splits",
            )
    placed: list[tuple[float, Cast]] = []
    left, people = casting.dialogues, len(pool)
    for split, personas in sorted(groups.items()):
        count = round(left * len(personas) / people)
        left, people = left - count, people - len(personas)
        try:
            casts = cast_dialogues(
                personas, casting.model_copy(update={"dialogues": count}), rng, id_prefix=f"{id_prefix}-{split}"
            )
        except RecipeError as exc:
            raise RecipeError(f"in the {split} split: {exc.detail}", path=exc.path, field=exc.field) from None
        placed += [((index + 0.5) / len(casts), cast) for index, cast in enumerate(casts)]
    return [cast for _, cast in sorted(placed, key=lambda pair: pair[0])]
