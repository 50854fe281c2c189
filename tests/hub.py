"""A local stand-in for the Hugging Face Hub's HTTP API, for tests: the Hub is a hosted service.

It speaks the part of the protocol that ``huggingface_hub.HfApi`` and ``datasets`` use for
dataset repositories: create repo, repo info by revision, preupload (every file "regular"), NDJSON
commits (optionally as a pull request), refs, branches, tags, pull request details, merge and
status, tree listing, paths-info, and file download by revision (with ranges). Commits are
atomic: a commit that fails applies nothing. ``fail_next(path_part, status)`` injects failures.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Commit:
    oid: str
    files: dict[str, bytes]
    parent: str | None
    message: str


@dataclass
class PullRequest:
    num: int
    title: str
    head: str  # commit oid
    base: str = "main"
    status: str = "open"
    events: list[dict[str, Any]] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    pulls: dict[int, PullRequest] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        revision = unquote(revision)
        pr = re.fullmatch(r"refs/pr/(\d+)", revision)
        if pr:
            pull = self.pulls.get(int(pr.group(1)))
            return pull.head if pull else None
        for table in (self.branches, self.tags):
            if revision in table:
                return table[revision]
        return revision if revision in self.commits else None


def validate_card(content: str) -> list[str]:
    """The Hub's checks of a dataset card's YAML that matter here: it parses to a mapping, and
    each config names itself and its data files."""
    import yaml

    match = re.match(r"^---\n(.*?)\n---", content, re.S)
    if not match:
        return []
    try:
        metadata = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        return [f"invalid YAML: {exc}"]
    if not isinstance(metadata, dict):
        return ["metadata must be a mapping"]
    errors = []
    for config in metadata.get("configs", []) or []:
        if not isinstance(config, dict) or "config_name" not in config or "data_files" not in config:
            errors.append(f"config {config!r} needs config_name and data_files")
    if "license" in metadata and not isinstance(metadata["license"], (str, list)):
        errors.append("license must be a string")
    return errors


def _oid(files: dict[str, bytes], parent: str | None, message: str) -> str:
    digest = hashlib.sha1()
    for path in sorted(files):
        digest.update(path.encode() + hashlib.sha1(files[path]).digest())
    digest.update((parent or "").encode() + message.encode() + str(time.time_ns()).encode())
    return digest.hexdigest()


class HubServer:
    def __init__(self, token: str | None = None) -> None:
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.seen_authorization: list[str | None] = []
        self._failures: list[list[Any]] = []  # [path part, status, requests to let through first]
        self._lock = threading.RLock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def fail_next(self, path_part: str, status: int = 500, after: int = 0) -> None:
        """Refuse the next request whose path has ``path_part``, once ``after`` such requests went through."""
        with self._lock:
            self._failures.append([path_part, status, after])

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- repository operations ------------------------------------------------------------------
    def _commit(self, repo: Repo, revision: str, lines: list[dict[str, Any]], create_pr: bool) -> dict[str, Any]:
        base = repo.resolve(revision) if repo.commits else None
        if repo.commits and base is None:
            raise KeyError(f"unknown revision {revision}")
        files = dict(repo.commits[base].files) if base else {}
        message = ""
        for line in lines:
            if line["key"] == "header":
                message = line["value"].get("summary", "")
            elif line["key"] == "file":
                files[line["value"]["path"]] = base64.b64decode(line["value"]["content"])
            elif line["key"] == "deletedFile":
                files.pop(line["value"]["path"], None)
            elif line["key"] == "deletedFolder":
                prefix = line["value"]["path"].rstrip("/") + "/"
                files = {p: c for p, c in files.items() if not p.startswith(prefix)}
            else:
                raise ValueError(f"unsupported commit line {line['key']}")
        commit = Commit(_oid(files, base, message), files, base, message)
        repo.commits[commit.oid] = commit
        pr_url = None
        target_pr = re.fullmatch(r"refs/pr/(\d+)", unquote(revision))
        if target_pr and not create_pr:  # a commit pushed onto an open pull request
            repo.pulls[int(target_pr.group(1))].head = commit.oid
        elif create_pr:
            num = max(repo.pulls, default=0) + 1
            repo.pulls[num] = PullRequest(num=num, title=message, head=commit.oid, base=unquote(revision))
            pr_url = f"{self.endpoint}/datasets/{repo.repo_id}/discussions/{num}"
        else:
            repo.branches[unquote(revision)] = commit.oid
        return {
            "commitUrl": f"{self.endpoint}/datasets/{repo.repo_id}/commit/{commit.oid}",
            "commitOid": commit.oid,
            "pullRequestUrl": pr_url,
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _reply(
                self, status: int, body: Any = None, headers: dict[str, str] | None = None, raw: bytes | None = None
            ) -> None:
                payload = raw if raw is not None else json.dumps(body if body is not None else {}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream" if raw is not None else "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            def _error(self, status: int, message: str) -> None:
                self._reply(status, {"error": message}, {"X-Error-Message": message})

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))

            def _dispatch(self) -> None:
                url = urlsplit(self.path)
                path, query = url.path, parse_qs(url.query)
                body = self._body() if self.command == "POST" else b""
                with hub._lock:
                    hub.requests.append((self.command, path))
                    hub.seen_authorization.append(self.headers.get("Authorization"))
                    for index, (part, status, after) in enumerate(hub._failures):
                        if part in path and after:
                            hub._failures[index][2] -= 1
                            break
                        if part in path:
                            hub._failures.pop(index)
                            self._error(status, f"injected {status}")
                            return
                if hub.token and self.headers.get("Authorization") != f"Bearer {hub.token}":
                    self._error(401, "Invalid credentials in Authorization header")
                    return
                try:
                    self._route(path, query, body)
                except KeyError as exc:
                    self._error(404, str(exc))

            do_GET = do_POST = do_HEAD = _dispatch

            def _repo(self, repo_id: str) -> Repo:
                repo = hub.repos.get(repo_id)
                if repo is None:
                    raise KeyError(f"Repository {repo_id} not found")
                return repo

            def _route(self, path: str, query: dict[str, list[str]], body: bytes) -> None:
                with hub._lock:
                    if path == "/api/repos/create":
                        data = json.loads(body)
                        repo_id = f"{data['organization']}/{data['name']}" if data.get("organization") else data["name"]
                        if repo_id in hub.repos:
                            self._reply(
                                409,
                                {
                                    "error": "You already created this dataset repo",
                                    "url": f"{hub.endpoint}/datasets/{repo_id}",
                                },
                            )
                            return
                        private = data.get("visibility") == "private" or bool(data.get("private"))
                        hub.repos[repo_id] = Repo(repo_id, private)
                        self._reply(200, {"url": f"{hub.endpoint}/datasets/{repo_id}", "name": repo_id})
                        return
                    if path == "/api/validate-yaml":
                        errors = validate_card(json.loads(body)["content"])
                        self._reply(
                            400 if errors else 200, {"errors": [{"message": e} for e in errors], "warnings": []}
                        )
                        return
                    match = re.match(r"^/api/datasets/([^/]+/[^/]+)(?:/(.*))?$", path)
                    if match:
                        self._api(self._repo(match.group(1)), match.group(2) or "", query, body)
                        return
                    match = re.match(r"^/datasets/([^/]+/[^/]+)/resolve/(.+)$", path)
                    if match:
                        self._resolve(self._repo(match.group(1)), match.group(2))
                        return
                raise KeyError(f"no route {path}")

            def _split_revision(self, rest: str) -> tuple[str, str]:
                """'refs%2Fpr%2F1/data/x' or 'main/data/x' -> (revision, path)."""
                rest = rest.lstrip("/")
                pr = re.match(r"^(refs(?:%2F|/)pr(?:%2F|/)\d+)/?(.*)$", rest)
                if pr:
                    return unquote(pr.group(1)), pr.group(2)
                revision, _, tail = rest.partition("/")
                return unquote(revision), tail

            def _api(self, repo: Repo, action: str, query: dict[str, list[str]], body: bytes) -> None:
                if action == "" or action.startswith("revision/"):
                    revision = unquote(action[len("revision/") :]) if action else "main"
                    oid = repo.resolve(revision)
                    if oid is None:
                        raise KeyError(f"Revision Not Found: {revision}")
                    files = repo.commits[oid].files
                    self._reply(
                        200,
                        {
                            "id": repo.repo_id,
                            "_id": repo.repo_id,
                            "sha": oid,
                            "private": repo.private,
                            "siblings": [{"rfilename": p} for p in sorted(files)],
                            "tags": [],
                            "downloads": 0,
                            "lastModified": "2026-01-01T00:00:00.000Z",
                            "disabled": False,
                            "gated": False,
                        },
                    )
                    return
                if action.startswith("preupload/"):
                    files = json.loads(body)["files"]
                    self._reply(
                        200,
                        {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]},
                    )
                    return
                if action.startswith("commit/"):
                    revision = action[len("commit/") :]
                    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                    self._reply(200, hub._commit(repo, revision, lines, query.get("create_pr") == ["1"]))
                    return
                if action == "refs":

                    def ref(name: str, full: str, oid: str) -> dict[str, str]:
                        return {"name": name, "ref": full, "targetCommit": oid}

                    self._reply(
                        200,
                        {
                            "branches": [ref(n, f"refs/heads/{n}", o) for n, o in repo.branches.items()],
                            "tags": [ref(n, f"refs/tags/{n}", o) for n, o in repo.tags.items()],
                            "converts": [],
                            "pullRequests": [
                                ref(f"refs/pr/{p.num}", f"refs/pr/{p.num}", p.head) for p in repo.pulls.values()
                            ]
                            if query.get("include_prs")
                            else [],
                        },
                    )
                    return
                if action.startswith("tag/"):
                    data = json.loads(body or b"{}")
                    oid = repo.resolve(action[len("tag/") :])
                    if oid is None:
                        raise KeyError("Revision Not Found")
                    if data["tag"] in repo.tags:
                        self._error(409, "Tag already exists")
                        return
                    repo.tags[data["tag"]] = oid
                    self._reply(200, {})
                    return
                if action.startswith("branch/"):
                    data = json.loads(body or b"{}")
                    oid = repo.resolve(data.get("startingPoint") or "main")
                    if oid is None:
                        raise KeyError("Revision Not Found")
                    repo.branches[unquote(action[len("branch/") :])] = oid
                    self._reply(200, {})
                    return
                match = re.fullmatch(r"discussions/(\d+)(?:/(merge|status))?", action)
                if match:
                    pull = repo.pulls.get(int(match.group(1)))
                    if pull is None:
                        raise KeyError("Discussion not found")
                    if match.group(2) == "merge":
                        pull.status = "merged"
                        repo.branches[pull.base] = pull.head
                    elif match.group(2) == "status":
                        data = json.loads(body or b"{}")
                        pull.status = data["status"]
                        pull.events.append(
                            {
                                "id": f"event-{len(pull.events) + 1}",
                                "type": "status-change",
                                "createdAt": "2026-01-01T00:00:00.000Z",
                                "author": {"name": "reviewer"},
                                "data": {"status": data["status"]},
                            }
                        )
                        pull.comments.append(data.get("comment") or "")
                        self._reply(200, {"newStatus": pull.events[-1]})
                        return
                    self._reply(200, self._discussion(repo, pull))
                    return
                if action.startswith("tree/"):
                    revision, prefix = self._split_revision(action[len("tree/") :])
                    oid = repo.resolve(revision)
                    if oid is None:
                        raise KeyError(f"Revision Not Found: {revision}")
                    self._reply(
                        200,
                        self._entries(
                            repo.commits[oid].files, prefix, query.get("recursive") in (["1"], ["true"], ["True"])
                        ),
                    )
                    return
                if action.startswith("paths-info/"):
                    revision, _ = self._split_revision(action[len("paths-info/") :])
                    oid = repo.resolve(revision)
                    if oid is None:
                        raise KeyError(f"Revision Not Found: {revision}")
                    try:
                        paths = json.loads(body).get("paths", [])
                    except json.JSONDecodeError:
                        paths = parse_qs(body.decode()).get("paths", [])
                    files = repo.commits[oid].files
                    entries = []
                    for wanted in paths:
                        wanted = wanted.strip("/")
                        if wanted in files:
                            entries.append(self._file_entry(wanted, files[wanted]))
                        elif any(p.startswith(wanted + "/") for p in files):
                            entries.append(
                                {"type": "directory", "path": wanted, "oid": hashlib.sha1(wanted.encode()).hexdigest()}
                            )
                    self._reply(200, entries)
                    return
                raise KeyError(f"no API route {action}")

            def _file_entry(self, path: str, content: bytes) -> dict[str, Any]:
                # the Hub's oid of a file is its git blob id
                blob = hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
                return {"type": "file", "path": path, "size": len(content), "oid": blob}

            def _entries(self, files: dict[str, bytes], prefix: str, recursive: bool) -> list[dict[str, Any]]:
                prefix = prefix.strip("/")
                entries, folders = [], set()
                for path in sorted(files):
                    if prefix and not path.startswith(prefix + "/"):
                        continue
                    rest = path[len(prefix) + 1 :] if prefix else path
                    if "/" in rest and not recursive:
                        folders.add((prefix + "/" if prefix else "") + rest.split("/", 1)[0])
                        continue
                    if recursive:
                        parts = rest.split("/")[:-1]
                        for depth in range(1, len(parts) + 1):
                            folders.add((prefix + "/" if prefix else "") + "/".join(parts[:depth]))
                    entries.append(self._file_entry(path, files[path]))
                return [
                    {"type": "directory", "path": f, "oid": hashlib.sha1(f.encode()).hexdigest()}
                    for f in sorted(folders)
                ] + entries

            def _discussion(self, repo: Repo, pull: PullRequest) -> dict[str, Any]:
                return {
                    "num": pull.num,
                    "title": pull.title,
                    "status": pull.status,
                    "isPullRequest": True,
                    "createdAt": "2026-01-01T00:00:00.000Z",
                    "author": {"name": "persona-factory"},
                    "repo": {"name": repo.repo_id, "type": "dataset"},
                    "pinned": False,
                    "events": pull.events,
                    "filesWithConflicts": [],
                    "changes": {"base": pull.base},
                    "diff": "",
                }

            def _resolve(self, repo: Repo, rest: str) -> None:
                revision, file_path = self._split_revision(rest)
                oid = repo.resolve(revision)
                if oid is None:
                    self._error(404, f"Revision Not Found: {revision}")
                    return
                files = repo.commits[oid].files
                file_path = unquote(file_path)
                if file_path not in files:
                    self._reply(
                        404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": oid}
                    )
                    return
                content = files[file_path]
                headers = {
                    "X-Repo-Commit": oid,
                    "ETag": f'"{hashlib.sha1(content).hexdigest()}"',
                    "Accept-Ranges": "bytes",
                }
                byte_range = self.headers.get("Range")
                if byte_range:
                    start_text, _, end_text = byte_range.removeprefix("bytes=").partition("-")
                    start = int(start_text or 0)
                    end = min(int(end_text) if end_text else len(content) - 1, len(content) - 1)
                    headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
                    self._reply(206, raw=content[start : end + 1], headers=headers)
                    return
                self._reply(200, raw=content, headers=headers)

        return Handler
