"""Publishing a local version (dialogue dataset or persona bank) to the Hugging Face Hub.

A version goes up for review, not straight to ``main``: one commit with every file of the version
(data shards, card, recipe, manifest), opened as a pull request, with the card's
``persona_factory.review_status`` set to ``in_review``. The commit is atomic on the Hub, so a push
that fails leaves the repository as it was and can simply be run again; pushing a version that is
already in review or released changes nothing. ``HF_ENDPOINT`` and ``HF_TOKEN`` are honoured; the
token is only ever sent in the Authorization header.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from factory.dataset.card import with_use_section
from factory.dataset.folder import DatasetFolder
from factory.dataset.review_section import with_review_status
from factory.errors import InputError, OutputError, hub_errors
from factory.settings import environment

# How a command is told that a target is a Hub repository and not a local folder.
HUB_PREFIX = "hf://"
_REPO_ID = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?/[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")


def looks_like_repo_id(text: str) -> bool:
    return bool(_REPO_ID.match(text)) and ".." not in text


def repo_id(text: str, *, field: str = "--repo") -> str:
    """``org/name`` (``hf://`` in front is allowed), checked here so that a malformed id is one
    line and no request is made."""
    repo = text[len(HUB_PREFIX) :] if text.startswith(HUB_PREFIX) else text
    if not looks_like_repo_id(repo) or len(repo) > 96:
        raise InputError(
            f"{text!r} is not a Hub repository id; write org/name (letters, digits, '-', '_', '.')", field=field
        )
    return repo


@dataclass
class PushResult:
    repo: str
    version: str
    state: str  # "opened", "resumed" (an interrupted push finished), "in_review" (already), "released" (already)
    pr_num: int | None
    commit: str | None


REVIEW_TITLE_SUFFIX = ": review"


def review_title(version: str) -> str:
    """The title of the pull request that holds a version in review: ``vX.Y.Z: review``."""
    return f"{version}{REVIEW_TITLE_SUFFIX}"


def version_under_review(title: str) -> str | None:
    """The version a review pull request's title names, or None for any other pull request."""
    return title[: -len(REVIEW_TITLE_SUFFIX)] if title.endswith(REVIEW_TITLE_SUFFIX) else None


@dataclass(frozen=True)
class ReviewPull:
    number: int
    status: str  # open, closed, merged
    commit: str | None


def review_pulls(api: Any, repo: str, refs: Any = None) -> dict[str, ReviewPull]:
    """The review pull requests of a repository, by the version they hold."""
    refs = refs or api.list_repo_refs(repo, repo_type="dataset", include_pull_requests=True)
    found: dict[str, ReviewPull] = {}
    for pull in refs.pull_requests:
        number = int(pull.name.rsplit("/", 1)[1])
        details = api.get_discussion_details(repo, number, repo_type="dataset")
        version = version_under_review(details.title)
        if version is not None and (version not in found or found[version].status != "open"):
            found[version] = ReviewPull(number, details.status, pull.target_commit)
    return found


def hub_api() -> Any:
    from huggingface_hub import HfApi

    env = environment()
    return HfApi(endpoint=env.hf_endpoint, token=env.hf_token)


# A version goes up in commits of at most this many files (or bytes), the first opening its review
# pull request and the card last: an interrupted push leaves a pull request without a card, which
# the next push of the version finishes, uploading only what did not arrive.
FILES_PER_COMMIT = 50
BYTES_PER_COMMIT = 1 << 30


def push_version(
    path: str | Path, repo: str, *, version: str | None = None, private: bool = False,
    files_per_commit: int = FILES_PER_COMMIT,
) -> PushResult:  # fmt: skip
    repo = repo_id(repo)
    folder = DatasetFolder(path)
    if not folder.is_repository():
        raise OutputError(f"{folder.path} is not a persona-factory dataset folder")
    version = version or folder.current_version()
    if version is None:
        raise OutputError(f"{folder.path} has no version to push yet")
    files = folder.published_files(version)
    if "README.md" not in files:
        raise OutputError(f"{version} of {folder.path} has no dataset card")
    card = with_review_status(files["README.md"].decode("utf-8"), "in_review")
    files["README.md"] = with_use_section(card, repo).encode("utf-8")

    api = hub_api()
    with hub_errors(f"the push of {version} to", repo):
        api.create_repo(repo, repo_type="dataset", private=private, exist_ok=True)
        refs = api.list_repo_refs(repo, repo_type="dataset", include_pull_requests=True)
        if any(tag.name == version for tag in refs.tags):
            return PushResult(repo, version, "released", None, None)
        pull = review_pulls(api, repo, refs).get(version)
        if pull is not None and pull.status == "open":
            missing = _not_arrived(api, repo, f"refs/pr/{pull.number}", files)
            if not missing:
                return PushResult(repo, version, "in_review", pull.number, pull.commit)
            parts = _parts(missing, files_per_commit)
            commit = _commit_parts(api, repo, version, parts, pull.number)
            return PushResult(repo, version, "resumed", pull.number, commit)
        first, *rest = _parts(files, files_per_commit)
        info = api.create_commit(
            repo,
            _operations(first),
            commit_message=review_title(version),
            repo_type="dataset",
            create_pr=True,
            commit_description=f"persona-factory {version}, for review before release.",
        )
        commit = _commit_parts(api, repo, version, rest, info.pr_num) if rest else info.oid
    return PushResult(repo, version, "opened", info.pr_num, commit)


def _operations(files: dict[str, bytes]) -> list[Any]:
    from huggingface_hub import CommitOperationAdd

    return [CommitOperationAdd(path_in_repo=name, path_or_fileobj=content) for name, content in files.items()]


def _parts(files: dict[str, bytes], most_files: int) -> list[dict[str, bytes]]:
    """The files in commits of at most ``most_files`` files and BYTES_PER_COMMIT bytes, the card last."""
    parts: list[dict[str, bytes]] = [{}]
    for name in sorted(files, key=lambda name: (name == "README.md", name)):
        size = sum(len(content) for content in parts[-1].values())
        if parts[-1] and (len(parts[-1]) >= most_files or size + len(files[name]) > BYTES_PER_COMMIT):
            parts.append({})
        parts[-1][name] = files[name]
    return parts


def _commit_parts(api: Any, repo: str, version: str, parts: list[dict[str, bytes]], pr_num: int) -> str:
    """Each part as a commit onto the review pull request; the last commit's id."""
    oid = ""
    for number, part in enumerate(parts, start=1):
        info = api.create_commit(
            repo, _operations(part), commit_message=f"{version}: files, part {number} of {len(parts)}",
            repo_type="dataset", revision=f"refs/pr/{pr_num}",
        )  # fmt: skip
        oid = info.oid
    return oid


def _not_arrived(api: Any, repo: str, revision: str, files: dict[str, bytes]) -> dict[str, bytes]:
    """The files the revision does not hold as they are here (compared by the Hub's own ids)."""
    there = {
        entry.path: entry
        for entry in api.list_repo_tree(repo, revision=revision, recursive=True, repo_type="dataset")
        if hasattr(entry, "blob_id")
    }

    def arrived(name: str, content: bytes) -> bool:
        entry = there.get(name)
        if entry is None:
            return False
        if entry.lfs is not None:
            return bool(entry.lfs.sha256 == hashlib.sha256(content).hexdigest())
        return bool(entry.blob_id == hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest())

    return {name: content for name, content in files.items() if not arrived(name, content)}
