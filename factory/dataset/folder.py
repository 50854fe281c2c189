"""A versioned dataset folder: the Hub's layout, kept as a git repository.

Every run writes its version into a staging folder beside the data; only a finished version is
moved in and committed, on its own branch ``review/vX.Y.Z`` started from ``main``: the version
is in review. Approving it merges it into ``main`` and tags it ``vX.Y.Z``; ``main`` and the tags
are what is released. A run that fails or is killed before the commit leaves the folder exactly as
it was; one killed while moving files in is rolled back by the next run (the ``publishing`` marker
says a move was under way, and from which branch).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from factory.dataset.manifest import Manifest, manifest_of
from factory.errors import OutputError

STATE_DIR = ".persona-factory"
REVIEW_PREFIX = "review/"
PUBLISHED_ENTRIES = ("data", "charts", "README.md", "recipe.yaml", "manifest.json", "pipeline.yaml")
_VERSION = re.compile(r"^v(\d+)\.(\d+)\.(\d+)$")
_GIT_IDENTITY = ["-c", "user.name=persona-factory", "-c", "user.email=persona-factory@localhost"]


def parse_version(tag: str) -> tuple[int, int, int] | None:
    match = _VERSION.match(tag)
    if match is None:
        return None
    major, minor, patch = (int(part) for part in match.groups())
    return major, minor, patch


def version_order(tag: str) -> tuple[int, int, int]:
    """A sort key: versions in order, anything else first."""
    return parse_version(tag) or (-1, -1, -1)


class DatasetFolder:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).resolve()
        self.state = self.path / STATE_DIR

    # -- git ---------------------------------------------------------------------------------
    def _git(self, *args: str) -> subprocess.CompletedProcess[bytes]:
        """Every git command the folder runs goes through here."""
        try:
            return subprocess.run(["git", *_GIT_IDENTITY, *args], cwd=self.path, capture_output=True, check=False)
        except FileNotFoundError as exc:
            raise OutputError("git is needed to version dataset folders; install git") from exc

    def git(self, *args: str, check: bool = True) -> str:
        completed = self._git(*args)
        if check and completed.returncode != 0:
            raise OutputError(f"git {' '.join(args)} failed in {self.path}: {completed.stderr.decode().strip()}")
        return completed.stdout.decode("utf-8", "surrogateescape")

    def is_initialised(self) -> bool:
        return (self.path / ".git").is_dir() and self.state.is_dir()

    def is_repository(self) -> bool:
        return (self.path / ".git").is_dir()

    def released_versions(self) -> list[str]:
        """Approved versions: the tags."""
        if not self.is_repository():
            return []
        tags = [tag for tag in self.git("tag", "--list", "v*").split() if parse_version(tag)]
        return sorted(tags, key=version_order)

    def review_versions(self) -> list[str]:
        """Versions with a review branch (in review, approved or rejected)."""
        if not self.is_repository():
            return []
        names = self.git("for-each-ref", "--format=%(refname:short)", f"refs/heads/{REVIEW_PREFIX}").split()
        return [name[len(REVIEW_PREFIX) :] for name in names if parse_version(name[len(REVIEW_PREFIX) :])]

    def versions(self) -> list[str]:
        """Every version ever made here, released or not (numbers are never reused)."""
        return sorted(set(self.released_versions()) | set(self.review_versions()), key=version_order)

    def current_release(self) -> str | None:
        released = self.released_versions()
        return released[-1] if released else None

    def ref_for(self, version: str) -> str:
        """The ref that holds a version: its tag once released, its review branch before."""
        return version if version in self.released_versions() else f"{REVIEW_PREFIX}{version}"

    def current_version(self) -> str | None:
        versions = self.versions()
        return versions[-1] if versions else None

    def next_version(self) -> str:
        """The first run is v1.0.0; each later run adds a minor version."""
        current = self.current_version()
        if current is None:
            return "v1.0.0"
        major, minor, _ = version_order(current)
        return f"v{major}.{minor + 1}.0"

    # -- lifecycle ---------------------------------------------------------------------------
    def check_usable(self) -> None:
        """Say why the folder cannot take a new version, writing nothing: not a folder, someone
        else's files, or another command using it right now."""
        self.check_usable_contents()
        if (self.state / "lock").is_file():
            with (self.state / "lock").open("a") as handle:
                try:
                    fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                except BlockingIOError as exc:
                    raise OutputError(self._busy()) from exc
                fcntl.flock(handle, fcntl.LOCK_UN)

    def check_usable_contents(self) -> None:
        if self.path.exists() and not self.path.is_dir():
            raise OutputError(f"{self.path} exists and is not a folder")
        if self.path.is_dir() and not self.is_initialised():
            foreign = [entry.name for entry in self.path.iterdir() if entry.name != STATE_DIR]
            if foreign:
                raise OutputError(
                    f"{self.path} is not empty and is not a persona-factory dataset folder "
                    f"(it holds {', '.join(sorted(foreign)[:5])}); choose a new or empty --out"
                )

    def _busy(self) -> str:
        return f"another persona-factory command is using {self.path}; wait for it to finish"

    def prepare(self) -> None:
        """Make the folder ready for a new version, or say why it cannot take one. Call it holding
        :meth:`locked`: it rolls back what a dead run left, which must never be a live run's work."""
        self.check_usable_contents()
        if not self.is_initialised():
            self.path.mkdir(parents=True, exist_ok=True)
            self.state.mkdir(exist_ok=True)
            self.git("init", "-q", "-b", "main")
            (self.path / ".gitignore").write_text(f"{STATE_DIR}/\n", encoding="utf-8")
            self.git("add", ".gitignore")
            self.git("commit", "-q", "-m", "Start a persona-factory dataset folder")
        self._recover()

    def _recover(self) -> None:
        marker = self.state / "publishing"
        if marker.exists():
            # A run died while moving its version in: the last commit is the truth, and a review
            # branch without its version's commit is removed.
            started = json.loads(marker.read_text(encoding="utf-8") or "{}")
            self.git("reset", "-q", "--hard", "HEAD")
            self.git("clean", "-q", "-fd", "-e", STATE_DIR)
            version, origin = started.get("version"), started.get("from")
            if version and origin:
                branch = f"{REVIEW_PREFIX}{version}"
                unfinished = self.git("rev-parse", branch, check=False).strip() == self.git("rev-parse", "main").strip()
                self.git("checkout", "-q", origin)
                if unfinished:
                    self.git("branch", "-q", "-D", branch, check=False)
            marker.unlink()
        elif self.git("status", "--porcelain").strip():
            raise OutputError(
                f"{self.path} has changes that are not part of any version; commit them "
                f"(git -C {self.path} commit -am ...) or discard them (git -C {self.path} checkout -- .) first"
            )
        staging_root = self.state / "staging"
        if staging_root.is_dir():
            for stale in staging_root.iterdir():
                shutil.rmtree(stale, ignore_errors=True)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """The folder for this process alone (runs, bank builds, review steps), until the block ends."""
        self.check_usable_contents()
        self.state.mkdir(parents=True, exist_ok=True)
        with (self.state / "lock").open("a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise OutputError(self._busy()) from exc
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def new_staging(self) -> Path:
        staging = self.state / "staging" / uuid.uuid4().hex[:12]
        staging.mkdir(parents=True)
        return staging

    def branch(self) -> str:
        return self.git("rev-parse", "--abbrev-ref", "HEAD").strip()

    def publish(self, staging: Path, version: str, message: str) -> None:
        """Move a finished version in and commit it on its review branch, started from main."""
        marker = self.state / "publishing"
        marker.write_text(
            json.dumps({"version": version, "staging": staging.name, "from": self.branch()}), encoding="utf-8"
        )
        self.git("checkout", "-q", "-B", f"{REVIEW_PREFIX}{version}", "main")
        for name in PUBLISHED_ENTRIES:
            target = self.path / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            if (staging / name).exists():
                os.replace(staging / name, target)
        # an entry a kind of folder does not have (a bank has no pipeline.yaml) is no pathspec for git
        tracked = set(self.git("ls-files", "--", *PUBLISHED_ENTRIES).split())
        entries = [
            n for n in PUBLISHED_ENTRIES if (self.path / n).exists() or any(t.split("/")[0] == n for t in tracked)
        ]
        self.git("add", "-A", "--", *entries)
        self.git("commit", "-q", "-m", message)
        marker.unlink()
        shutil.rmtree(staging, ignore_errors=True)

    def commit_card(self, version: str, card: str, message: str) -> None:
        """A new card for a version in review, committed on its review branch."""
        self.git("checkout", "-q", f"{REVIEW_PREFIX}{version}")
        (self.path / "README.md").write_text(card, encoding="utf-8")
        self.git("add", "README.md")
        if self._git("diff", "--cached", "--quiet").returncode != 0:  # the same card again is no new commit
            self.git("commit", "-q", "-m", message)

    def release(self, version: str, card: str, message: str) -> None:
        """Merge an approved review into main with its final card, and tag it."""
        self.commit_card(version, card, message)
        branch = f"{REVIEW_PREFIX}{version}"
        self.git("checkout", "-q", "main")
        # main becomes exactly the reviewed tree (whatever was released before), with the merge in history
        self.git("merge", "-q", "--no-ff", "--no-commit", "-s", "ours", branch)
        self.git("read-tree", "--reset", "-u", branch)
        self.git("commit", "-q", "-m", message)
        self.git("tag", "-a", version, "-m", message)

    def resolve(self, revision: str) -> str:
        """The commit a version (released or in review) or any git revision names."""
        for candidate in (revision, f"{REVIEW_PREFIX}{revision}"):
            completed = self._git("rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}")
            if completed.returncode == 0:
                return completed.stdout.decode().strip()
        known = ", ".join(self.versions()) or "none"
        raise OutputError(f"{self.path} has no revision {revision!r} (versions: {known})")

    def read_bytes(self, revision: str, name: str) -> bytes:
        """A published file as it was at ``revision``."""
        completed = self._git("show", f"{revision}:{name}")
        if completed.returncode != 0:
            raise OutputError(f"{self.path} has no {name} at {revision}: {completed.stderr.decode().strip()}")
        return completed.stdout

    def published_files(self, version: str) -> dict[str, bytes]:
        """The published files of a version, read from its commit (not from the working tree)."""
        commit = self.resolve(version)
        listing = self.git("ls-tree", "-r", "--name-only", commit).split()
        wanted = [name for name in listing if name.split("/", 1)[0] in PUBLISHED_ENTRIES]
        return {name: self.read_bytes(commit, name) for name in wanted}

    def read_manifest(self, version: str | None = None) -> Manifest | None:
        """The manifest of ``version`` (of the checked-out one when unset), None when it has none."""
        if version is None:
            path = self.path / "manifest.json"
            return manifest_of(path.read_bytes(), str(path)) if path.is_file() else None
        text = self.git("show", f"{self.ref_for(version)}:manifest.json", check=False)
        return manifest_of(text, f"{self.path} {version}: manifest.json") if text.strip() else None
