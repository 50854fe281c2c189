"""Every chat reply kept on disk, keyed by what determines it, so that no question is paid for twice.

The key is the model, the messages, the temperature, the token limit, the seed and the response
format: a rerun of the same plan (after a crash, or with only a critic's settings changed) asks the
same questions and gets its answers from here, without a request. A call at a temperature above
zero is kept too: the same plan asks it again with the same seed. One SQLite file in WAL mode, so
the processes and Ray workers of one machine read and write it at once; a cluster gives each node
its own, or a shared path.
"""

from __future__ import annotations

import hashlib
import json
import random
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

from factory.llm.port import ChatResult
from factory.recipes.llm import ReplyCacheConfig
from factory.records import TokenUsage
from factory.settings import environment

FILE_NAME = "replies.sqlite3"
DEFAULT_DIRECTORY = Path("~/.cache/persona-factory/replies")


OPEN_SECONDS = 60.0


def cache_directory(config: ReplyCacheConfig) -> str | None:
    """Where the run's replies are kept: the recipe's path, PERSONA_FACTORY_CACHE, or the default;
    None when the cache is off."""
    if not config.enabled:
        return None
    return str(Path(config.path or environment().reply_cache or DEFAULT_DIRECTORY).expanduser())


def usable_cache_directory(config: ReplyCacheConfig) -> str | None:
    """``cache_directory``, checked once by the driver before any worker opens it. A cache is only a
    cache: a corrupt file is set aside (renamed beside itself, named in one warning) and a fresh one
    begins; a cache that cannot be opened at all is warned of once and the run goes on without it."""
    directory = cache_directory(config)
    if directory is None:
        return None
    path = Path(directory) / FILE_NAME
    try:
        _check(directory)
        return directory
    except sqlite3.DatabaseError as exc:
        if not _corrupt(exc):
            _warn(f"the reply cache {path} cannot be opened ({exc}); running without it")
            return None
    aside = path.with_name(f"{FILE_NAME}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
    path.rename(aside)
    for suffix in ("-wal", "-shm"):  # SQLite's side files belong to the corrupt database
        path.with_name(FILE_NAME + suffix).unlink(missing_ok=True)
    _warn(f"the reply cache {path} was corrupt; set aside as {aside.name}, starting a fresh one")
    try:
        _check(directory)
    except sqlite3.DatabaseError as exc:
        _warn(f"the reply cache {path} cannot be opened ({exc}); running without it")
        return None
    return directory


def _check(directory: str) -> None:
    """Open the cache and read every page's structure; an OSError (a file where the folder should
    be, no permission) is SQLite's "unable to open" too."""
    try:
        cache = ReplyCache(directory)
    except OSError as exc:
        raise sqlite3.OperationalError(f"unable to open database file: {exc.strerror or exc}") from exc
    try:
        (result,) = cache._db.execute("PRAGMA quick_check").fetchone()
        if result != "ok":
            raise sqlite3.DatabaseError(f"database disk image is malformed: {result}")
    finally:
        cache.close()


def _corrupt(exc: sqlite3.DatabaseError) -> bool:
    return "not a database" in str(exc) or "malformed" in str(exc)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr, flush=True)


def reply_key(model: str, body: dict[str, Any]) -> str:
    """What determines an answer: the model and the request's messages and sampling settings."""
    determining = {
        "model": model,
        "messages": body.get("messages"),
        "temperature": body.get("temperature"),
        "max_tokens": body.get("max_tokens"),
        "seed": body.get("seed"),
        "response_format": body.get("response_format"),
    }
    return hashlib.sha256(json.dumps(determining, sort_keys=True).encode()).hexdigest()


class ReplyCache:
    """``get`` / ``put`` chat results by key. Opened per process; safe across processes."""

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory).expanduser() / FILE_NAME
        self.broken = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None, check_same_thread=False)
        # Turning WAL on takes the file for a moment, and SQLite answers "locked" at once to the
        # others (no busy wait for a journal-mode change): processes that open a new cache together
        # (Ray workers starting on one node) wait their turn instead of failing.
        deadline = time.monotonic() + OPEN_SECONDS
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, text TEXT NOT NULL, prompt_tokens "
                    "INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, finish_reason TEXT, stored REAL)"
                )
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.005, 0.05))

    def get(self, key: str) -> ChatResult | None:
        if self.broken:
            return None
        try:
            row = self._db.execute(
                "SELECT text, prompt_tokens, completion_tokens, finish_reason FROM replies WHERE key = ?", (key,)
            ).fetchone()
        except sqlite3.DatabaseError as exc:
            self._break(exc)
            return None
        if row is None:
            return None
        text, prompt_tokens, completion_tokens, finish_reason = row
        return ChatResult(
            text, TokenUsage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens), finish_reason
        )

    def put(self, key: str, result: ChatResult) -> None:
        if self.broken:
            return
        try:
            self._db.execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?, ?, ?)",
                (key, result.text, result.usage.prompt_tokens, result.usage.completion_tokens, result.finish_reason,
                 time.time()),
            )  # fmt: skip
        except sqlite3.DatabaseError as exc:
            self._break(exc)

    def _break(self, exc: sqlite3.DatabaseError) -> None:
        """A cache that fails mid-run (the disk full, the file damaged by another process) costs the
        run its answers from disk, not the run: one warning, then every question goes to the model."""
        self.broken = True
        _warn(f"the reply cache {self.path} failed ({exc}); going on without it")

    def close(self) -> None:
        self._db.close()
