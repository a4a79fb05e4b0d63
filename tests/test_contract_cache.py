"""What the prefetch jobs and the shared result cache promise (issue 25): a call answered by another
chat's computation is labelled "cache", not "prefetch"; an error observation computed concurrently
never answers the calls waiting for it; a full cache evicts the least recently used entry and keeps
the newest; and threads asking for the same result at the same moment run the tool once.

Interleavings are made to happen (events, a barrier, and a look at where a thread is blocked), not
waited for with sleeps."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from mmreact import Agent, Image, Observation, ScriptedLLM, tool
from mmreact.llms import LLMRequest
from mmreact.cache import ResultCache, configure
from mmreact.images import load_image
from mmreact.prefetch import Job


@pytest.fixture(autouse=True)
def fresh_cache():
    configure()
    yield
    configure()


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(12, 16, 3), dtype=np.uint8)


def stack_of(thread: threading.Thread) -> list[str]:
    """The functions ``thread`` is in right now, innermost first (``module.py:function``)."""
    frame = sys._current_frames().get(thread.ident or -1)
    names = []
    while frame is not None:
        names.append(f"{frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.f_code.co_name}")
        frame = frame.f_back
    return names


def blocked_on_a_future(thread: threading.Thread) -> bool:
    """Whether ``thread`` is inside ``Future.result`` (waiting for work another thread does)."""
    return "_base.py:result" in stack_of(thread)


def waiting_outside_the_cache(thread: threading.Thread) -> bool:
    """Whether ``thread`` waits for a future, but not for a computation in the result cache."""
    stack = stack_of(thread)
    return "_base.py:result" in stack and "cache.py:compute" not in stack


def wait_until(predicate, timeout: float = 10.0) -> bool:
    done = threading.Event()
    for _ in range(int(timeout / 0.005)):
        if predicate():
            return True
        done.wait(0.005)
    return predicate()


# -- prefetch labels -----------------------------------------------------------------------------
def test_a_call_answered_by_another_chats_computation_is_labelled_cache():
    """Chat A computes look(image) (slowly); chat B, on the same pixels, prefetches it: its job waits for
    A's computation instead of running the tool. B's model call is then answered by A's result:
    "cache", and the tool ran once."""
    gate, started = threading.Event(), threading.Event()
    runs: list[str] = []

    @tool(cacheable=True)
    def look(image: Image) -> str:
        """Describe the image."""
        runs.append(image.sha256)
        started.set()
        assert gate.wait(10)
        return f"{image.width}x{image.height} look"

    pixels = image(1)
    first = Agent(ScriptedLLM(["Action: look(image_1)", "Final Answer: a"]), tools=[look], prefetch="none")
    a = threading.Thread(target=lambda: first.run("What is it?", [pixels]))
    a.start()
    try:
        assert started.wait(10)
        holder: dict[str, object] = {}

        def after_the_job(request: LLMRequest) -> str:
            chat = holder["chat"]
            jobs = list(chat.prefetch.jobs.values())  # type: ignore[attr-defined]
            assert [j.call for j in jobs] == ["look(image_1)"]
            assert wait_until(lambda: any(blocked_on_a_future(t) for t in threading.enumerate()
                                          if t.name.startswith("mmreact-prefetch")))  # the job waits for A
            gate.set()  # A finishes; B's job, which waited for it, ends
            assert wait_until(lambda: jobs[0].ended is not None)
            return "Action: look(image_1)"

        second = Agent(ScriptedLLM([after_the_job, "Final Answer: b"]), tools=[look], prefetch=["look"])
        chat = holder["chat"] = second.chat()
        result = chat.ask("What is it?", [pixels])
    finally:
        gate.set()
        a.join(10)
    (call,) = result.trace.steps[0].calls
    assert call.text == "16x12 look" and not call.error
    assert call.reused == "cache"
    assert runs == [load_image(pixels).sha256]  # A's run only


def test_a_call_the_prefetch_job_computed_is_labelled_prefetch():
    """The other side of the label: this chat's own job computed the result."""
    ran = threading.Event()

    @tool(cacheable=True)
    def look(image: Image) -> str:
        """Describe the image."""
        ran.set()
        return f"{image.width}x{image.height} look"

    def after_the_job(request: LLMRequest) -> str:
        assert ran.wait(10)
        return "Action: look(image_1)"

    result = Agent(ScriptedLLM([after_the_job, "Final Answer: b"]), tools=[look], prefetch=["look"]).run(
        "What is it?", [image(2)])
    assert result.trace.steps[0].calls[0].reused == "prefetch"


class LateJob(Job):
    """A prefetch job whose thread is held up right before it records where its result came from (the
    moment a busy machine may deschedule it), until the model's call has been labelled or waits for
    the job to end (at most 5 s)."""

    model_call: threading.Thread
    recording = threading.Event()  # the job is about to record where its result came from
    labelled = threading.Event()  # the model's call is labelled: the model is asked again

    @classmethod
    def reset(cls, model_call: threading.Thread | None = None) -> None:
        cls.recording.clear()
        cls.labelled.clear()
        if model_call is not None:
            cls.model_call = model_call

    @classmethod
    def then_answer(cls, request: LLMRequest) -> str:
        cls.labelled.set()
        return "Final Answer: b"

    def __setattr__(self, name: str, value: object) -> None:
        if name == "source" and value is not None:
            LateJob.recording.set()
            wait_until(lambda: LateJob.labelled.is_set() or waiting_outside_the_cache(LateJob.model_call), timeout=5)
        super().__setattr__(name, value)


def test_the_label_does_not_depend_on_when_the_job_records_its_source():
    """B's job and B's model call both wait for chat A's computation and wake together; B's job is
    slow to record that it only waited. The call was answered by A's computation: "cache"."""
    gate, started = threading.Event(), threading.Event()

    @tool(cacheable=True)
    def look(image: Image) -> str:
        """Describe the image."""
        started.set()
        assert gate.wait(10)
        return f"{image.width}x{image.height} look"

    pixels = image(3)
    first = Agent(ScriptedLLM(["Action: look(image_1)", "Final Answer: a"]), tools=[look], prefetch="none")
    a = threading.Thread(target=lambda: first.run("What is it?", [pixels]))
    a.start()
    holder: dict[str, object] = {}
    LateJob.reset()

    def both_wait(request: LLMRequest) -> str:
        (job,) = holder["chat"].prefetch.jobs.values()  # type: ignore[attr-defined]
        job.__class__ = LateJob
        LateJob.model_call = me = threading.current_thread()
        assert wait_until(lambda: any(blocked_on_a_future(t) for t in threading.enumerate()
                                      if t.name.startswith("mmreact-prefetch")))  # the job waits for A

        def open_when_the_call_waits() -> None:
            wait_until(lambda: blocked_on_a_future(me))
            gate.set()

        threading.Thread(target=open_when_the_call_waits, daemon=True).start()
        return "Action: look(image_1)"

    try:
        assert started.wait(10)
        second = Agent(ScriptedLLM([both_wait, LateJob.then_answer]), tools=[look], prefetch=["look"])
        chat = holder["chat"] = second.chat()
        result = chat.ask("What is it?", [pixels])
    finally:
        gate.set()
        a.join(10)
    assert LateJob.recording.is_set()
    assert result.trace.steps[0].calls[0].reused == "cache"


def test_a_result_the_job_computed_is_prefetch_even_before_the_job_has_returned():
    """B's job computes the result and stores it, then is slow to return; the model's call finds the
    result in the cache meanwhile. The job computed it: "prefetch"."""
    holder: dict[str, object] = {}

    @tool(cacheable=True)
    def look(image: Image) -> str:
        """Describe the image."""
        jobs = holder["chat"].prefetch.jobs  # type: ignore[attr-defined]
        assert wait_until(lambda: len(jobs) == 1)  # this runs in the job's thread, as soon as it exists
        next(iter(jobs.values())).__class__ = LateJob
        return f"{image.width}x{image.height} look"

    def after_the_store(request: LLMRequest) -> str:
        assert LateJob.recording.wait(10)  # the job has computed and stored the result, and not returned
        return "Action: look(image_1)"

    LateJob.reset(model_call=threading.current_thread())
    agent = Agent(ScriptedLLM([after_the_store, LateJob.then_answer]), tools=[look], prefetch=["look"])
    chat = holder["chat"] = agent.chat()
    result = chat.ask("What is it?", [image(4)])
    assert LateJob.recording.is_set()
    assert result.trace.steps[0].calls[0].reused == "prefetch"


# -- failures are not shared ---------------------------------------------------------------------
def test_an_error_computed_concurrently_does_not_answer_its_waiters():
    cache = ResultCache()
    gate = threading.Event()

    def fails_gently() -> Observation:
        assert gate.wait(10)
        return Observation.failure("look could not run: the weights are still downloading.")

    mine: list[object] = []
    first = threading.Thread(target=lambda: mine.append(cache.compute("k", fails_gently)))
    first.start()
    assert wait_until(lambda: cache.running() == 1)
    second_runs: list[int] = []

    def succeeds() -> Observation:
        second_runs.append(1)
        return Observation(text="a red square")

    theirs: list[object] = []
    second = threading.Thread(target=lambda: theirs.append(cache.compute("k", succeeds)))
    second.start()
    try:
        assert wait_until(lambda: blocked_on_a_future(second))  # waiting for the first computation
    finally:
        gate.set()
        first.join(10)
        second.join(10)
    (obs, source), = mine
    assert obs.error and source == "computed"
    assert theirs == [(Observation(text="a red square"), "computed")]  # ran the tool itself, once
    assert second_runs == [1]
    assert cache.get("k") == Observation(text="a red square") and cache.running() == 0


# -- eviction ------------------------------------------------------------------------------------------
def test_a_full_cache_evicts_the_least_recently_used_entry_and_keeps_the_newest():
    cache = ResultCache(max_entries=3)
    for key in ("a", "b", "c"):
        cache.put(key, Observation(text=key))
    assert cache.get("a") is not None  # a is used again: b is now the oldest
    cache.put("d", Observation(text="d"))
    assert len(cache) == 3
    assert cache.get("b") is None
    assert [cache.get(k) for k in ("a", "c", "d")] == [Observation(text=k) for k in ("a", "c", "d")]
    for key in ("e", "f", "g"):  # the newest entry is always kept, whatever came before
        cache.put(key, Observation(text=key))
        assert cache.get(key) == Observation(text=key) and len(cache) == 3
    computed, _ = cache.compute("h", lambda: Observation(text="h"))
    assert cache.get("h") == computed and cache.get("e") is None


# -- one computation for many askers -------------------------------------------------------------------
def test_threads_asking_for_the_same_result_at_once_run_the_tool_once():
    runs: Counter[str] = Counter()
    lock = threading.Lock()

    @tool(cacheable=True)
    def measure(image: Image) -> str:
        """The image's mean brightness."""
        with lock:
            runs[image.sha256] += 1
        return f"mean {image.to_numpy().mean():.2f}"

    threads = 8
    images = [load_image(image(100 + i)) for i in range(25)]
    for img in images:
        barrier = threading.Barrier(threads)

        def ask(_: int, img=img, barrier=barrier) -> tuple[Observation, str]:
            barrier.wait(10)  # every thread asks at the same moment
            return measure.invoke_shared({"image": img})

        with ThreadPoolExecutor(threads) as pool:
            answers = list(pool.map(ask, range(threads)))
        assert {obs.text for obs, _ in answers} == {f"mean {img.to_numpy().mean():.2f}"}
        assert [source for _, source in answers].count("computed") == 1
    assert runs == Counter({img.sha256: 1 for img in images})


class SlowToStore(ResultCache):
    """A result cache whose computing thread is held up right before it stores a result (the moment a
    busy machine may deschedule it), until ``release`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.storing = threading.Event()
        self.release = threading.Event()

    def put(self, key: str, obs: Observation) -> None:
        self.storing.set()
        assert self.release.wait(10)
        super().put(key, obs)


def test_a_caller_arriving_while_the_result_is_being_stored_does_not_run_the_tool_again():
    cache = SlowToStore()
    runs: list[str] = []

    def produce(who: str) -> Observation:
        runs.append(who)
        return Observation(text="a red square")

    first = threading.Thread(target=lambda: cache.compute("k", lambda: produce("first")))
    first.start()
    assert cache.storing.wait(10)  # computed; not stored yet
    answers: list[tuple[Observation, str]] = []
    second = threading.Thread(target=lambda: answers.append(cache.compute("k", lambda: produce("second"))))
    second.start()
    # it waits for the first computation, or (the bug) has run the tool itself
    assert wait_until(lambda: blocked_on_a_future(second) or len(runs) == 2)
    cache.release.set()
    first.join(10)
    second.join(10)
    assert runs == ["first"]
    assert answers == [(Observation(text="a red square"), "waited")]

