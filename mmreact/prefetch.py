"""Experts that work while the LLM thinks: start likely tool calls the moment images arrive.

When images enter a run or a chat turn, the agent may start some ready experts on them in the
background, into the shared result cache, while the LLM reads the question and decides. When the
model then calls one, the call waits for the running job or hits the cache, and never runs twice
(:meth:`mmreact.cache.ResultCache.compute`); its trace record says ``reused="prefetch"``. A prefetch
job that fails or is still running is just a cache miss for the model's own call. Jobs the model
never used are listed in the trace (:attr:`Trace.prefetched`, ``used=False``), so their cost shows.

Which experts (``Agent(prefetch=...)``, ``mmreact ask --prefetch``):

* ``"none"``: no prefetching.
* ``"all"``: every prefetchable tool (cacheable, one image argument, nothing else required)
  whose weights are already on this machine: a guess never starts a first-use download.
* a list of tool names: those (downloading their weights first when they may be).
* ``"auto"`` (the default), chosen by measurement (``python tools/bench_latency.py``; the README
  quotes the run):

  - when the first step can only call one tool (one prefetchable tool offered, a backend whose
    first step must act), that tool: the call is certain, so prefetching costs nothing extra;
  - when the LLM does not run on this machine (a server on another host, LangChain models, the
    scripted LLM: ``LLM.runs_locally`` is false) or a GPU is present, every prefetchable tool:
    the CPU or GPU would otherwise sit idle during the LLM's step;
  - otherwise (a local LLM on the CPU with several tools) none: the experts and the LLM would
    share the same cores, and the model's step slows down by as much as the prefetch saves. A
    server on a loopback address (``openai:MODEL@http://127.0.0.1:8000/v1``) is this machine.

A prefetch never holds the user up. Jobs run on their own daemon threads (:func:`pool`): when the
turn ends (an answer, a step limit, an error), jobs not started yet are cancelled and running ones
are abandoned: they finish into the cache if the process lives on (a chat, a server), and the
interpreter exits without waiting for them (Python joins a ``ThreadPoolExecutor``'s threads at
exit: a CLI run whose model answered at once used to wait for every unused expert). A running
expert cannot be stopped midway (torch and llama.cpp have no cancellation), so an abandoned job
still uses its cores until it ends or the process exits.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .errors import ConfigError, one_line
from .trace import PrefetchRecord

if TYPE_CHECKING:
    from .images import ImageTable
    from .llms.base import LLM
    from .tools import Tool

Policy = Literal["auto", "none", "all"] | Sequence[str] | None
#: How long a label waits for a finishing job to say where its result came from (it has the result
#: in hand, so this is a bound for a descheduled thread, not a wait for work).
SETTLE_SECONDS = 2.0


def prefetchable(tool: Tool) -> bool:
    """Whether a tool can be started ahead: cacheable, one image argument, nothing else required."""
    required = [p for p in tool.params if p.required]
    return tool.cacheable and len(tool.image_params) == 1 and len(required) == 1


def weights_here(tool: Tool) -> bool:
    """Whether a tool needs no weights or has them locally (the tool says: :meth:`Tool.weights_here`;
    no network is touched)."""
    try:
        return tool.weights_here()
    except Exception:  # noqa: BLE001 - a tool whose weights cannot even be located is not started ahead
        return False


def validate(policy: Policy, tools: Sequence[Tool]) -> Policy:
    """Check a policy when the agent is created (one sentence on a mistake)."""
    if policy is None or policy in ("auto", "none", "all"):
        return policy
    if isinstance(policy, str):
        policy = [n.strip() for n in policy.split(",") if n.strip()]
    names = {t.name: t for t in tools}
    for name in policy:
        tool = names.get(name)
        if tool is None:
            raise ConfigError(f"Cannot prefetch '{name}': the agent has no such tool (its tools: "
                              f"{', '.join(names) or 'none'}).")
        if not prefetchable(tool):
            raise ConfigError(f"Cannot prefetch '{name}': only cacheable tools that take one image and nothing "
                              "else required can start before the model asks.")
    return list(policy)


def _gpu() -> bool:
    """Whether the experts run on a GPU here (the device they select, ``MMREACT_DEVICE`` included)."""
    from .loading import select_device

    return select_device().startswith("cuda")


def choose(policy: Policy, tools: Sequence[Tool], llm: LLM) -> tuple[Tool, ...]:
    """The tools to start on new images under ``policy`` (see the module docstring)."""
    if policy is None or policy == "none":
        return ()
    if policy not in ("auto", "all"):
        wanted = set(policy)
        return tuple(t for t in tools if prefetchable(t) and t.name in wanted)
    candidates = [t for t in tools if prefetchable(t) and weights_here(t)]
    if policy == "all":
        return tuple(candidates)
    image_tools = [t for t in tools if t.image_params]
    if len(image_tools) == 1 and candidates == image_tools and getattr(llm, "first_step_acts", False):
        return tuple(candidates)
    if not getattr(llm, "runs_locally", False) or _gpu():
        return tuple(candidates)
    return ()


class DaemonPool:
    """Up to ``workers`` daemon threads that run submitted calls: an interpreter exits without
    waiting for them (unlike ``ThreadPoolExecutor``, whose threads it joins). Threads start as
    calls arrive and stay for later ones; a call whose future was cancelled before it started
    never runs."""

    def __init__(self, workers: int, name: str) -> None:
        self.workers = workers
        self.name = name
        self._queue: queue.SimpleQueue[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            self._queue.put((future, fn, args))
            if self._idle:
                self._idle -= 1
            elif self._threads < self.workers:
                self._threads += 1
                threading.Thread(target=self._work, name=f"{self.name}-{self._threads}", daemon=True).start()
        return future

    def _work(self) -> None:
        while True:
            future, fn, args = self._queue.get()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as exc:  # noqa: BLE001 - handed to the future, as an executor does
                    future.set_exception(exc)
            with self._lock:
                self._idle += 1


_pool: DaemonPool | None = None
_pool_lock = threading.Lock()


def pool() -> DaemonPool:
    """The process's prefetch threads (16 at most, as the agent's tool pool)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = DaemonPool(16, "mmreact-prefetch")
        return _pool


@dataclass
class Job:
    tool: str
    call: str
    future: Future[Any]
    started: float
    ended: float | None = None
    error: str | None = None
    #: Where the job's result came from (``"computed"`` means the job did the work).
    source: str | None = None


@dataclass
class Prefetch:
    """The jobs started for one chat turn."""

    jobs: dict[str, Job] = field(default_factory=dict)

    def start(self, tools: Sequence[Tool], handles: Sequence[str], images: ImageTable,
              threads: DaemonPool | None = None) -> None:
        threads = threads or pool()
        for handle in handles:
            image = images.get(handle)
            if image is None:
                continue
            for tool in tools:
                pname = tool.image_params[0]
                bound = tool.bind((), {pname: handle})
                call = tool.canonical(bound)
                if call in self.jobs:
                    continue
                resolved = {**bound, pname: image}
                job = Job(tool.name, call, None, time.perf_counter())  # type: ignore[arg-type]
                job.future = threads.submit(self._run, tool, resolved, job)
                self.jobs[call] = job

    @staticmethod
    def _run(tool: Tool, arguments: dict[str, Any], job: Job) -> None:
        try:
            obs, job.source = tool.invoke_shared(arguments)
            if obs.error:
                job.error = obs.text
        except Exception as exc:  # noqa: BLE001 - a failed prefetch is just a cache miss
            job.error = one_line(exc)
        finally:
            job.ended = time.perf_counter()

    def end(self) -> None:
        """The turn is over: cancel the jobs that have not started (a running one is abandoned:
        it finishes into the cache, or dies with the process)."""
        for job in self.jobs.values():
            if job.future.cancel():
                job.error = "cancelled: the turn ended before it started"

    def answered(self, call: str, source: str) -> bool:
        """Whether the model's ``call``, which got its result from ``source`` (``"cache"`` or
        ``"waited"``), was answered by this turn's job: the job computed the result.

        A job still running when the call has its result is finishing: it computed that result and
        has not returned yet, or it waited for the same computation as the call (another chat's)
        and woke with it. Which one is read from the job once it ends (a brief wait), not guessed
        from ``source``: both cases give the call ``"waited"`` or ``"cache"``. A job not started
        yet computed nothing."""
        job = self.jobs.get(call)
        if job is None:
            return False
        if job.source is None and job.future is not None and job.future.running():
            with contextlib.suppress(Exception):
                job.future.result(timeout=SETTLE_SECONDS)
        return job.source == "computed"

    def records(self, used: set[str]) -> tuple[PrefetchRecord, ...]:
        return tuple(PrefetchRecord(tool=j.tool, call=j.call, used=j.call in used,
                                    seconds=None if j.ended is None else j.ended - j.started, error=j.error)
                     for j in self.jobs.values())
