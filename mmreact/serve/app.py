"""The app factory: one FastAPI app, reused by ``mmreact serve``, the demo and Ray Serve.

Routes: ``POST /v1/chat/completions``, ``GET /v1/models``, ``GET /health``.

Order of checks on a chat request (each answers before any response header of a run is sent):
401 bad key (constant-time compare) -> 503 starting/draining -> 413 body too large (on
``Content-Length``, then while reading; the rest of an oversized body is read and dropped, up to a
bound, so the client reliably gets the 413) -> 400 bad JSON -> 404 unknown model -> 400 bad
messages or parameters -> 429 queue full (``Retry-After``) -> 504 no run slot before the deadline -> 400 bad image. Then a
run streams (SSE) or answers once; an LLM failure is 502 with the partial trace, a run past the
deadline 504. Once a stream has started, failures arrive as an ``error`` event (the ``openai``
SDK raises ``APIError`` on it).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..agent import Agent
from ..errors import LLMError, one_line
from ..images import MB, ImagePolicy, megabytes, size_over
from ..result import Result
from . import _response as resp
from ._admission import Admission
from ._errors import APIError, bad_request
from ._image_urls import ImageFetcher
from ._request import ChatRequest, parse_request
from ._runner import Event, LoopRun
from .config import ServeConfig

log = logging.getLogger("mmreact.serve")
AgentSource = Agent | Callable[[], Agent]
#: After a 413, at most this many more body bytes are read and dropped (then the connection closes).
DISCARD_LIMIT = 64 * MB
DISCARD_SECONDS = 5.0


class ServerState:
    """Everything one app instance shares: settings, the agent, admission, the runs in flight."""

    def __init__(self, source: AgentSource, config: ServeConfig, fetcher: ImageFetcher | None) -> None:
        self.source = source
        self.config = config
        self.agent: Agent | None = source if isinstance(source, Agent) else None
        self.fetcher = fetcher
        if fetcher is None and config.allow_image_urls:
            self.fetcher = ImageFetcher(max_bytes=config.url_max_bytes, timeout=config.url_timeout)
        self.policy = ImagePolicy(max_bytes=config.max_image_bytes, max_pixels=config.max_image_pixels)
        self.admission = Admission(config.max_concurrency, config.max_queue)
        self.runs: set[LoopRun] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        #: set once the agent is ready or has failed to load
        self.settled: asyncio.Event | None = None
        self.started = time.time()
        #: HTTP requests being answered right now (a stream counts until its last byte is sent)
        self.inflight = 0

    @property
    def drained(self) -> bool:
        """No run queued or running and no response still being sent."""
        return self.admission.idle and self.inflight == 0

    # -- lifecycle -----------------------------------------------------------------------
    def start_loading(self) -> None:
        """Build and load the agent in a thread; requests get 503 until it is ready."""
        loop = asyncio.get_running_loop()
        self.loop = loop
        self.settled = asyncio.Event()
        self.admission = Admission(self.config.max_concurrency, self.config.max_queue)

        def load() -> None:
            try:
                agent = self.agent if self.agent is not None else self.source()  # type: ignore[operator]
                timings = agent.load()
                log.info("agent ready: llm %s, tools %s (%s)", agent.llm.name, [t.name for t in agent.tools],
                         ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
            except Exception as exc:  # noqa: BLE001 - reported by /health and as 503
                message = one_line(exc)
                log.error("the agent failed to load: %s", message)
                loop.call_soon_threadsafe(self._set_failed, message)
                return
            loop.call_soon_threadsafe(self._set_ready, agent)

        threading.Thread(target=load, name="mmreact-serve-load", daemon=True).start()

    def _set_ready(self, agent: Agent) -> None:
        self.agent = agent
        if self.admission.status == "starting":
            self.admission.status = "ready"
        if self.settled is not None:
            self.settled.set()

    def _set_failed(self, message: str) -> None:
        self.admission.failure = message
        if self.admission.status == "starting":
            self.admission.status = "failed"
        if self.settled is not None:
            self.settled.set()

    def start_draining(self) -> None:
        """Refuse new requests with 503; runs in flight go on (see :mod:`mmreact.serve.server`)."""
        self.admission.status = "draining"

    def cancel_all(self) -> None:
        for run in list(self.runs):
            run.cancel()

    # -- checks --------------------------------------------------------------------------
    def check_key(self, request: Request) -> None:
        keys = self.config.api_keys
        if not keys:
            return
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        ok = False
        for key in keys:  # every key compared, in constant time each
            ok |= hmac.compare_digest(given.strip().encode(), key.encode())
        if not ok or scheme.lower() != "bearer":
            raise APIError(401, "Incorrect or missing API key; send 'Authorization: Bearer <key>'.",
                           code="invalid_api_key")


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) past ``limit`` bytes before it is read whole."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise bad_request("The Content-Length header is not a number.")
        if int(declared) > limit:
            await _discard(request)
            raise _too_large(int(declared), limit)
    parts: list[bytes] = []
    size = 0
    while True:
        message = await request.receive()
        if message["type"] != "http.request":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            await _discard(request)
            raise _too_large(None, limit)
        parts.append(chunk)
        if not message.get("more_body", False):
            return b"".join(parts)


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


def _too_large(size: int | None, limit: int) -> APIError:
    what = size_over(size, limit) if size is not None else "over the limit"
    return APIError(413, f"The request body is {what}; the limit is {megabytes(limit)}.", code="request_too_large")


async def _discard(request: Request) -> None:
    """Read and drop the rest of a refused body (bounded in bytes and time), so the client is not
    reset mid-upload and does read the 413 (what nginx's lingering close does)."""
    dropped = 0
    try:
        async with asyncio.timeout(DISCARD_SECONDS):
            while dropped <= DISCARD_LIMIT:
                message = await request.receive()
                if message["type"] != "http.request":
                    return
                dropped += len(message.get("body", b""))
                if not message.get("more_body", False):
                    return
    except TimeoutError:
        pass


async def _wait_disconnect(request: Request) -> None:
    """Return when the client disconnects (call only after the body has been read)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _unless_gone(awaitable: Any, watcher: asyncio.Task[None], undo: Callable[[], None]) -> Any:
    """Await ``awaitable`` unless the client disconnects first (then cancel it, ``undo`` a late
    success, and raise :class:`ClientGone`). When the request itself is cancelled (Ray Serve cancels
    a request whose client left), ``awaitable`` is cancelled too: left running, a queued request's
    wait would take a run slot later that nothing ever gives back."""
    task = asyncio.ensure_future(awaitable)
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        task.add_done_callback(lambda t: undo() if not t.cancelled() and t.exception() is None else None)
        raise
    if task.done():
        return task.result()
    task.cancel()
    try:
        await task
    except (asyncio.CancelledError, TimeoutError):
        pass
    else:
        undo()
    raise ClientGone()


class _CountInflight:
    """ASGI middleware: counts HTTP requests until their response is completely sent."""

    def __init__(self, app: Any, state: ServerState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.state.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.state.inflight -= 1


def _error_response(exc: APIError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers())


def _sse(data: dict[str, Any] | str) -> dict[str, str]:
    return {"data": data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}


def _llm_error(exc: LLMError) -> APIError:
    extra = {"trace": resp.trace_data(exc.trace)} if exc.trace is not None else None
    return APIError(502, f"The LLM failed: {exc}", code="llm_error", extra=extra)


def _timeout(config: ServeConfig, run: LoopRun | None) -> APIError:
    extra = {"steps": [s.model_dump(mode="json") for s in run.steps]} if run is not None else None
    return APIError(504, f"The request took longer than {config.request_timeout:g} s.", code="timeout", extra=extra)


def create_app(agent: AgentSource | None = None, config: ServeConfig | None = None, *,
               fetcher: ImageFetcher | None = None, ready_before_serving: bool = False) -> FastAPI:
    """The OpenAI-compatible app.

    Args:
        agent: an :class:`~mmreact.Agent` (shared by every request; each request gets a fresh
            ``agent.chat()``), or a function that builds one (called in a thread at startup, so the
            server answers 503 "starting" meanwhile). ``None``: ``Agent()``, the embedded default.
        config: limits and security settings (:class:`ServeConfig`).
        fetcher: the remote-image fetcher (tests inject one with their own resolver); built from
            ``config`` when ``config.allow_image_urls`` is set.
        ready_before_serving: finish loading the agent (or failing to) before the app's startup
            ends. Off for ``mmreact serve``, which answers /health and 503 "starting" meanwhile; on
            for Ray Serve, whose replica takes traffic once the app has started, so a replica still
            loading would answer every request it is sent with 503.
    """
    config = config or ServeConfig()
    state = ServerState(agent if agent is not None else Agent, config, fetcher)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.start_loading()
        if ready_before_serving and state.settled is not None:
            await state.settled.wait()
        yield
        state.cancel_all()

    app = FastAPI(title="mmreact", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.mmreact = state
    app.add_middleware(_CountInflight, state=state)

    @app.exception_handler(APIError)
    async def api_error(request: Request, exc: APIError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = {404: "No such route.", 405: "Method not allowed."}.get(exc.status_code, str(exc.detail))
        return _error_response(APIError(exc.status_code, message))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error_response(bad_request("The request is malformed."))

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        """Status, queue and limits for anyone (probes send no key); the LLM and tools only with a key."""
        body = state.admission.health()
        try:
            state.check_key(request)
            authorised = True
        except APIError:
            authorised = False
        if state.agent is not None and authorised:
            body["llm"] = state.agent.llm.name
            body["tools"] = [t.name for t in state.agent.tools]
        body["model"] = config.model_name
        return JSONResponse(body, status_code=200 if state.admission.status == "ready" else 503)

    @app.get("/v1/models")
    async def models(request: Request) -> JSONResponse:
        state.check_key(request)
        return JSONResponse({"object": "list", "data": [
            {"id": config.model_name, "object": "model", "created": int(state.started), "owned_by": "mmreact"}]})

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        deadline = time.monotonic() + config.request_timeout
        state.check_key(request)
        state.admission.check_available()
        try:
            raw = await read_body(request, config.max_body_bytes)
        except ClientGone:
            return Response(status_code=499)
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
            raise bad_request(f"The request body is not valid JSON{where}.") from None
        except RecursionError:
            raise bad_request("The request body is nested too deeply.") from None
        del raw
        chat = parse_request(body, model_name=config.model_name, max_images=config.max_images)
        del body
        admission = state.admission
        admission.admit()
        watcher = asyncio.create_task(_wait_disconnect(request))
        try:
            try:
                await _unless_gone(admission.wait_slot(deadline - time.monotonic()), watcher,
                                   undo=lambda: admission.release(None, "cancelled"))
            except TimeoutError:
                raise _timeout(config, None) from None
            run = _start_run(state, chat)
            watcher.add_done_callback(lambda t: None if t.cancelled() else run.cancel())
            await _first_event(run, deadline, config)
            if chat.stream:
                from sse_starlette import EventSourceResponse

                watcher.cancel()  # from here sse-starlette listens for the disconnect
                return EventSourceResponse(_stream(run, chat, deadline, config), ping=15,
                                           headers={"X-Request-Id": run.id})
            return await _collect(run, chat, deadline, config)
        except ClientGone:
            return Response(status_code=499)
        finally:
            watcher.cancel()

    return app


def _start_run(state: ServerState, chat: ChatRequest) -> LoopRun:
    assert state.agent is not None and state.loop is not None
    admission = state.admission
    config = state.config

    def finished(seconds: float, outcome: str) -> None:
        state.runs.discard(run)
        admission.release(seconds, outcome)

    run = LoopRun(state.agent, chat, loop=state.loop, policy=state.policy, fetcher=state.fetcher,
                   history_turns=config.history_turns, history_chars=config.history_chars, on_finish=finished)
    state.runs.add(run)
    try:
        run.start()
    except BaseException:
        state.runs.discard(run)
        admission.release(None, "failed")
        raise
    return run


async def _first_event(run: LoopRun, deadline: float, config: ServeConfig) -> Event:
    """Wait until the images are loaded: a bad image is still a 400 (no header sent yet)."""
    try:
        event = await run.next(deadline - time.monotonic())
    except TimeoutError:
        run.cancel()
        raise _timeout(config, run) from None
    except asyncio.CancelledError:
        run.cancel()
        raise
    if event.kind == "bad_image":
        raise bad_request(str(event.value), code="invalid_image")
    if event.kind == "error":
        raise APIError(500, str(event.value), code="server_error")
    return event


async def _collect(run: LoopRun, chat: ChatRequest, deadline: float, config: ServeConfig) -> JSONResponse:
    try:
        while True:
            try:
                event = await run.next(deadline - time.monotonic())
            except TimeoutError:
                run.cancel()
                raise _timeout(config, run) from None
            if event.kind == "result":
                result: Result = event.value
                await _until_end(run)  # the counters of /health add up once the client has its answer
                return JSONResponse(resp.completion(result, model=chat.model, cid=run.id))
            if event.kind == "llm_error":
                raise _llm_error(event.value)
            if event.kind == "error":
                raise APIError(500, str(event.value), code="server_error")
            if event.kind in ("cancelled", "end"):
                raise APIError(503, "The run was cancelled (the server is shutting down or the client left).",
                               code="cancelled")
    finally:
        run.cancel()  # no-op when the run has finished


async def _until_end(run: LoopRun, timeout: float = 5.0) -> None:
    """Wait for the run's thread to finish after its result (it only closes the stream by then); its
    release reaches the loop before the "end" event, so it has been counted when this returns."""
    try:
        while (await run.next(timeout)).kind != "end":
            pass
    except TimeoutError:
        pass


async def _stream(run: LoopRun, chat: ChatRequest, deadline: float,
                  config: ServeConfig) -> AsyncIterator[dict[str, str]]:
    chunks = resp.Chunks(chat.model, cid=run.id)
    text_streamed = False
    try:
        yield _sse(chunks.role())
        while True:
            try:
                event = await run.next(deadline - time.monotonic())
            except TimeoutError:
                run.cancel()
                yield _sse(_timeout(config, run).body())
                break
            if event.kind == "text":
                text_streamed = True
                yield _sse(chunks.text(event.value))
            elif event.kind == "step":
                yield _sse(chunks.step(event.value, text_streamed=text_streamed))
                text_streamed = False
            elif event.kind == "result":
                result: Result = event.value
                yield _sse(chunks.answer(result))
                yield _sse(chunks.finish(result))
                if chat.include_usage:
                    yield _sse(chunks.usage(result.trace.steps))
                break
            elif event.kind == "llm_error":
                yield _sse(_llm_error(event.value).body())
                break
            elif event.kind == "error":
                yield _sse(APIError(500, str(event.value), code="server_error").body())
                break
            elif event.kind in ("cancelled", "end"):
                yield _sse(APIError(503, "The run was cancelled (the server is shutting down).",
                                    code="cancelled").body())
                break
        yield _sse("[DONE]")
    finally:
        run.cancel()
