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
  - when the LLM does not run on this machine (OpenAI-compatible servers, LangChain models, the
    scripted LLM: ``LLM.runs_locally`` is false) or a GPU is present, every prefetchable tool:
    the CPU or GPU would otherwise sit idle during the LLM's step;
  - otherwise (a local LLM on the CPU with several tools) none: the experts and the LLM would
    share the same cores, and the model's step slows down by as much as the prefetch saves.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from .errors import ConfigError, one_line
from .trace import PrefetchRecord

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

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
    """Whether a tool needs no weights or has them locally (no network is touched)."""
    from .experts.base import ExpertTool

    if not isinstance(tool, ExpertTool):
        return True
    try:
        return tool.weights() is None or tool.resolved_weights() is not None
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
    from .experts.base import select_device

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
              pool: ThreadPoolExecutor) -> None:
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
                job.future = pool.submit(self._run, tool, resolved, job)
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
