"""A small Hugging Face hub on 127.0.0.1, enough of its HTTP API for the real ``huggingface_hub`` client.

Serves model repositories made from folders the tests save (``add_repo``) and plain files
(``add_file``, for ultralytics' and EasyOCR's downloaders):

- ``GET /api/models/{id}[/revision/{rev}]`` (``model_info``/``repo_info``; ``?blobs=true`` adds sizes and LFS data)
- ``GET /api/models/{id}/tree/{rev}[/{path}]`` (``list_repo_tree``, used by ``snapshot_download``)
- ``HEAD``/``GET /{id}/resolve/{rev}/{file}`` (``hf_hub_download``: ``X-Repo-Commit``, ``ETag``/``X-Linked-Etag``,
  ``X-Linked-Size``; ``Range`` requests answered with 206)
- ``HEAD``/``GET /files/{name}`` (plain files, with ``Range``)

Unknown repositories answer 404 with ``X-Error-Code: RepoNotFound`` like the hub. Faults make a
download fail the way networks do: ``drop(name, at)`` sends ``at`` bytes of a file and closes the
connection (for the next ``times`` GETs); ``stall(name, at)`` sends ``at`` bytes and then waits
until ``release()`` (so a test can kill the downloading process mid-file); ``throttle(name, rate)``
sends it at ``rate`` bytes per second. Every request is logged.

:class:`SilentHub` is the hub that hangs: it accepts every connection and never answers (or, with
``trickle``, sends the first bytes of a status line one at a time, so that no read ever times out).
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".onnx", ".zip", ".msgpack")


@dataclass
class Repo:
    files: dict[str, bytes]
    sha: str

    def entry(self, name: str, blobs: bool = True) -> dict[str, Any]:
        data = self.files[name]
        out: dict[str, Any] = {"rfilename": name}
        if blobs:
            out.update(size=len(data), blobId=git_blob_id(data))
            if name.endswith(LFS_SUFFIXES):
                out["lfs"] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}
        return out


@dataclass
class Fault:
    kind: str  # "drop", "stall" or "throttle"
    at: int  # throttle: bytes per second
    times: int = 1


@dataclass
class Request:
    method: str
    path: str
    range: str | None


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    faults: dict[str, Fault] = field(default_factory=dict)
    log: list[Request] = field(default_factory=list)
    stalled: threading.Event = field(default_factory=threading.Event)
    _release: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None

    # -- content --------------------------------------------------------------------------
    def add_repo(self, repo_id: str, folder: Path | None = None, extra: dict[str, bytes] | None = None) -> str:
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
                 if p.is_file()} if folder else {}
        files.update(extra or {})
        sha = hashlib.sha1(json.dumps(sorted((k, git_blob_id(v)) for k, v in files.items())).encode()).hexdigest()
        self.repos[repo_id] = Repo(files, sha)
        return sha

    def add_file(self, name: str, data: bytes) -> str:
        self.files[name] = data
        return f"{self.url}/files/{name}"

    def drop(self, name: str, at: int, times: int = 1) -> None:
        self.faults[name] = Fault("drop", at, times)

    def stall(self, name: str, at: int) -> None:
        self.faults[name] = Fault("stall", at, 1)

    def throttle(self, name: str, rate: int) -> None:
        """Send ``name`` at ``rate`` bytes per second (a slow link that keeps moving), for the next GET."""
        self.faults[name] = Fault("throttle", rate, 1)

    def release(self) -> None:
        self.faults.clear()
        self._release.set()

    def downloads(self) -> list[str]:
        """File names fetched with GET (repository files and plain files)."""
        return [r.path.rsplit("/", 1)[-1] for r in self.log
                if r.method == "GET" and ("/resolve/" in r.path or r.path.startswith("/files/"))]

    # -- server ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None, "start() the hub first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            owner = hub

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self._release.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Server(ThreadingHTTPServer):
    # socketserver's default backlog of 5 drops connections when a loaded machine accepts slowly;
    # a dropped SYN costs the client a 1 s retransmit, which would look like an unreachable hub
    request_queue_size = 128


class _Handler(BaseHTTPRequestHandler):
    owner: FakeHub

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_HEAD(self) -> None:  # noqa: N802
        self._route(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._route(head=False)

    # -- routing ----------------------------------------------------------------------------
    def _route(self, head: bool) -> None:
        hub = self.owner
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        hub.log.append(Request(self.command, path, self.headers.get("Range")))
        query = parse_qs(parts.query)
        segs = [s for s in path.split("/") if s]
        if path.startswith("/files/"):
            name = path[len("/files/"):]
            if name not in hub.files:
                return self._json(404, {"error": "not found"}, head)
            return self._send_file(name, hub.files[name], head, {})
        if segs[:2] == ["api", "models"] and len(segs) >= 4:
            repo_id = "/".join(segs[2:4])
            repo = hub.repos.get(repo_id)
            if repo is None:
                return self._json(404, {"error": "Repository not found"}, head, {"X-Error-Code": "RepoNotFound"})
            rest = segs[4:]
            if not rest or rest[0] == "revision":
                blobs = query.get("blobs", ["false"])[0].lower() == "true"
                info = {"id": repo_id, "modelId": repo_id, "sha": repo.sha, "private": False, "disabled": False,
                        "siblings": [repo.entry(n, blobs) for n in sorted(repo.files)]}
                return self._json(200, info, head)
            if rest[0] == "tree":
                prefix = "/".join(rest[2:])
                entries = []
                for name in sorted(repo.files):
                    if prefix and not name.startswith(prefix + "/"):
                        continue
                    e = repo.entry(name)
                    item = {"type": "file", "oid": e["blobId"], "size": e["size"], "path": name}
                    if "lfs" in e:
                        item["lfs"] = {"oid": e["lfs"]["sha256"], "size": e["size"], "pointerSize": 134}
                    entries.append(item)
                return self._json(200, entries, head)
        if len(segs) >= 5 and segs[2] == "resolve":
            repo_id = "/".join(segs[:2])
            repo = hub.repos.get(repo_id)
            if repo is None:
                return self._json(404, {"error": "Repository not found"}, head, {"X-Error-Code": "RepoNotFound"})
            revision, name = segs[3], "/".join(segs[4:])
            if revision not in ("main", repo.sha):
                return self._json(404, {"error": "Invalid rev id"}, head, {"X-Error-Code": "RevisionNotFound"})
            if name not in repo.files:
                return self._json(404, {"error": "Entry not found"}, head,
                                  {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": repo.sha})
            data = repo.files[name]
            extra = {"X-Repo-Commit": repo.sha, "ETag": f'"{git_blob_id(data)}"'}
            if name.endswith(LFS_SUFFIXES):
                extra.update({"X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"',
                              "X-Linked-Size": str(len(data))})
            return self._send_file(name, data, head, extra)
        return self._json(404, {"error": "unknown route"}, head)

    # -- answers ----------------------------------------------------------------------------
    def _json(self, code: int, body: Any, head: bool, headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(raw)

    def _send_file(self, name: str, data: bytes, head: bool, headers: dict[str, str]) -> None:
        start = 0
        wanted = self.headers.get("Range")
        if wanted and wanted.startswith("bytes=") and not head:
            first = wanted[len("bytes="):].split("-")[0]
            start = int(first) if first.isdigit() else 0
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        if head:
            return
        fault = self.owner.faults.get(name)
        if fault is None or fault.times <= 0:
            self.wfile.write(body)
            return
        fault.times -= 1
        if fault.kind == "throttle":
            piece = max(1, fault.at // 10)
            for i in range(0, len(body), piece):
                self.wfile.write(body[i:i + piece])
                self.wfile.flush()
                if self.owner._release.wait(0.1):
                    piece = len(body)
            return
        cut = max(0, fault.at - start)
        self.wfile.write(body[:cut])
        self.wfile.flush()
        if fault.kind == "stall":
            self.owner.stalled.set()
            self.owner._release.wait(120)
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class SilentHub:
    """A server on 127.0.0.1 that accepts connections and never answers, until :meth:`stop`.

    ``trickle``: send ``HTTP/1.1 200`` one byte every ``trickle`` seconds (never a whole header), so a
    client's per-read timeout never fires either; a client bounded only by such a timeout waits forever.
    """

    def __init__(self, trickle: float | None = None) -> None:
        self.trickle = trickle
        self.accepted = 0
        self._stop = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self._conns: list[socket.socket] = []
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"

    def start(self) -> SilentHub:
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self.accepted += 1
            self._conns.append(conn)
            if self.trickle:
                threading.Thread(target=self._drip, args=(conn,), daemon=True).start()

    def _drip(self, conn: socket.socket) -> None:
        line = b"HTTP/1.1 200"
        i = 0
        while not self._stop.wait(self.trickle):
            try:
                conn.sendall(line[i % len(line):i % len(line) + 1] if i < len(line) else b" ")
            except OSError:
                return
            i += 1

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()
        for conn in self._conns:
            try:
                conn.close()
            except OSError:
                pass

    def __enter__(self) -> SilentHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
