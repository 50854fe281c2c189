"""persona-factory: synthetic persona-grounded dialogue datasets.

The package is built in layers. A module may import from its own unit and from units in layers
below its own, never from a unit beside it or above it; ``tests/unit/test_layers.py`` holds the
code to this order, and the README's Development section draws it.
"""

__version__ = "0.1.0"

# Bottom to top. A unit is a top-level module or subpackage of ``factory``.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "failpoints"),  # every error; fault injection for tests of crashes
    ("traits",),  # MBTI types, Big Five traits and bands
    ("records", "settings", "jsonl"),  # the published models; the environment; reading JSONL
    ("listening", "near_duplicates"),  # the addresses our servers take; near-duplicate texts by MinHash
    ("recipes",),  # the recipe schemas and loading
    ("llm",),  # chat client, limiter, ask_json, endpoints, embedded server, embeddings
    ("dataset",),  # a version: folder, shards, stats, cards, review section, changelog
    ("hub",),  # the Hub client: push, repository ids, Hub errors
    ("review",),  # review targets (a local folder, a Hub repository) and their status changes
    ("personas",),  # persona sources, the pool, casting
    ("generation",),  # writers: SPC in one call, role-play turn by turn
    ("critics",),  # the critic registry, each critic, dedup, acceptance, evaluation
    ("engine",),  # rounds, the dialogue coroutine, local and Ray runners, journal, resume
    ("plan",),  # a run's calls, tokens and cost, told before it starts
    ("run", "bank", "rejudge", "calibrate"),  # a dialogue run; a bank build; judging again; critics against labels
    ("model_eval",),  # a chat model on a version's held-out personas, judged by the critics
    ("distilabel",),  # the factory's parts as distilabel steps; a whole recipe as one
    ("api",),  # the public Python API: what scripts and bench/ use
    ("cli",),  # flags -> one library call -> print
)
