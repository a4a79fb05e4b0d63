"""One agent run in its own thread, reporting to the event loop: the loop never blocks on a run.

The thread first loads the request's images (data URLs decoded, remote URLs fetched when allowed;
a bad image ends the run before any response header is sent), then streams a fresh
:class:`~mmreact.Chat` of the server's shared :class:`~mmreact.Agent`. Each streamed model text
piece, finished step and the result is posted to an ``asyncio.Queue``.

Cancelling (client gone, timeout, drain deadline) sets a flag: the next piece of model text raises
inside the backend's streaming loop, which stops generation, and the step loop is closed after the
step in progress (a tool call already running is not interrupted). A thread is started per run
and ends with it, so the process's thread count returns to its baseline when the server is idle.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..agent import Agent
from ..errors import ImageError, LLMError, MMReactError, one_line
from ..images import Image, ImagePolicy
from ..llms.scripted import ScriptedLLM
from ..result import Result
from ..trace import StepRecord
from ._image_urls import ImageFetcher, decode_data_url, image_from_bytes
from ._request import ChatRequest, ImagePart, compose_question

Kind = Literal["ready", "bad_image", "text", "step", "result", "llm_error", "error", "cancelled", "end"]


@dataclass(frozen=True)
class Event:
    kind: Kind
    value: Any = None


class RunCancelled(Exception):
    """Raised from the model-text callback to stop a cancelled run's generation."""


def load_part(part: ImagePart, policy: ImagePolicy, fetcher: ImageFetcher | None) -> Image:
    """The validated image of one ``image_url`` part."""
    url = part.url
    if url[:5].lower() == "data:":
        data, media = decode_data_url(url, part.label, policy.max_bytes)
        return image_from_bytes(data, part.label, f"<{media} data URL, {part.label}>", policy)
    if fetcher is None:
        raise ImageError(f"The image in {part.label} is a remote URL, which this server does not fetch; "
                         "send it as a data:image/...;base64 URL.")
    data = fetcher.fetch(url, part.label)
    return image_from_bytes(data, part.label, f"<remote image, {part.label}>", policy)


def handles_for(images: list[Image]) -> list[str]:
    """The handle each image gets in a fresh chat: ``image_1..N`` in order, identical pixels shared."""
    seen: dict[str, str] = {}
    return [seen.setdefault(img.sha256, f"image_{len(seen) + 1}") for img in images]


def request_agent(agent: Agent) -> Agent:
    """The agent one request runs on: ``agent`` itself, except that a script that can run out
    (``--llm scripted:FILE``, a stand-in for a model server) is replayed from its start for every
    request, with nothing recorded, as a stateless server answers each conversation; the copy shares
    everything else (tools, caches). A ``repeat_last`` script never runs out and is shared as it is
    (its replies are functions of the request; tests read what it recorded)."""
    llm = agent.llm
    if not isinstance(llm, ScriptedLLM) or llm.repeat_last:
        return agent
    view = copy.copy(agent)
    view.llm = llm.replay()
    return view


class AgentRun:
    """Run ``request`` on ``agent`` in a new thread, handing each :class:`Event` to ``post`` (from
    that thread), then ``on_finish(seconds, outcome)``, then the ``end`` event: whoever reads ``end`` (the
    server's response) knows the run has been counted."""

    def __init__(self, agent: Agent, request: ChatRequest, *, post: Callable[[Event], None],
                 policy: ImagePolicy, fetcher: ImageFetcher | None, history_turns: int, history_chars: int,
                 on_finish: Callable[[float, str], None]) -> None:
        self.agent = agent
        self.request = request
        self.post = post
        self.policy = policy
        self.fetcher = fetcher
        self.history = (history_turns, history_chars)
        self.on_finish = on_finish
        self.id = f"chatcmpl-{uuid.uuid4().hex}"
        self.cancelled = threading.Event()
        self.steps: list[StepRecord] = []
        self._thread = threading.Thread(target=self._main, name="mmreact-serve-run", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self.cancelled.set()

    def _post(self, event: Event) -> None:
        self.post(event)
        # Let the reader run now: otherwise it may wait for the GIL up to the interpreter's switch
        # interval (5 ms) while this thread computes, delaying every streamed event by that much.
        time.sleep(0)

    def _on_text(self, piece: str) -> None:
        if self.cancelled.is_set():
            raise RunCancelled("the client went away")
        if piece:
            self._post(Event("text", piece))

    def _main(self) -> None:
        started = time.perf_counter()
        outcome = "completed"
        try:
            outcome = self._run()
        except BaseException as exc:  # noqa: BLE001 - a bug must still end the response
            outcome = "failed"
            self._post(Event("error", f"The server failed: {one_line(exc)}"))
        finally:
            self.on_finish(time.perf_counter() - started, outcome)
            self._post(Event("end"))

    def _run(self) -> str:
        try:
            images = [load_part(p, self.policy, self.fetcher) for p in self.request.images]
        except ImageError as exc:
            self._post(Event("bad_image", str(exc)))
            return "bad_request"
        turns, chars = self.history
        question = compose_question(self.request, handles_for(images), turns=turns, chars=chars)
        self._post(Event("ready"))
        if self.cancelled.is_set():
            self._post(Event("cancelled"))
            return "cancelled"
        stream = request_agent(self.agent).chat().stream(question, images, on_text=self._on_text)
        try:
            for event in stream:
                if isinstance(event, StepRecord):
                    self.steps.append(event)
                    self._post(Event("step", event))
                elif isinstance(event, Result):
                    self._post(Event("result", event))
                    return "completed"
                if self.cancelled.is_set():
                    self._post(Event("cancelled"))
                    return "cancelled"
        except LLMError as exc:
            if self.cancelled.is_set():
                self._post(Event("cancelled"))
                return "cancelled"
            self._post(Event("llm_error", exc))
            return "llm_error"
        except MMReactError as exc:
            self._post(Event("error", str(exc)))
            return "failed"
        finally:
            stream.close()
        return "completed"  # pragma: no cover - the stream always ends with a Result


class LoopRun(AgentRun):
    """An :class:`AgentRun` read from an asyncio event loop: :meth:`next` awaits the next event."""

    def __init__(self, agent: Agent, request: ChatRequest, *, loop: asyncio.AbstractEventLoop,
                 on_finish: Callable[[float, str], None], **kwargs: Any) -> None:
        self.loop = loop
        self._queue: asyncio.Queue[Event] = asyncio.Queue()
        self._finish = on_finish
        super().__init__(agent, request, post=self._to_loop, on_finish=self._finished_to_loop, **kwargs)

    def _to_loop(self, event: Event) -> None:
        try:
            self.loop.call_soon_threadsafe(self._queue.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    def _finished_to_loop(self, seconds: float, outcome: str) -> None:
        try:
            self.loop.call_soon_threadsafe(self._finish, seconds, outcome)
        except RuntimeError:
            pass

    async def next(self, timeout: float) -> Event:
        """The next event; ``TimeoutError`` after ``timeout`` seconds."""
        async with asyncio.timeout(max(0.0, timeout)):
            return await self._queue.get()
