"""Experts that work while the LLM thinks (mmreact.prefetch) and the shared in-flight result cache.

Synchronised with events, not sleeps: each test makes the interleaving it checks happen.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from mmreact import Agent, Image, Observation, ScriptedLLM, tool
from mmreact.llms import LLMRequest
from mmreact.cache import ResultCache, configure
from mmreact.errors import ConfigError
from mmreact.prefetch import choose, prefetchable

RED = np.full((12, 16, 3), (255, 0, 0), dtype=np.uint8)
BLUE = np.full((12, 16, 3), (0, 0, 255), dtype=np.uint8)


@pytest.fixture(autouse=True)
def fresh_cache():
    configure()
    yield
    configure()


def counting_tools(gate: threading.Event | None = None, started: threading.Event | None = None):
    runs: dict[str, int] = {"look": 0, "read": 0}

    @tool(cacheable=True)
    def look(image: Image) -> str:
        """Describe the image."""
        runs["look"] += 1
        if started is not None:
            started.set()
        if gate is not None:
            assert gate.wait(10)
        return f"{image.width}x{image.height} look"

    @tool(cacheable=True)
    def read(image: Image) -> str:
        """Read the image."""
        runs["read"] += 1
        runs[image.sha256] = runs.get(image.sha256, 0) + 1
        return "no text"

    return look, read, runs


def waits_for(event: threading.Event, reply: str):
    """A scripted reply written only once ``event`` is set (the LLM 'thinks' until then)."""
    def write(request: LLMRequest) -> str:
        assert event.wait(10)
        return reply
    return write


def test_a_prefetched_call_runs_once_and_the_model_waits_for_it():
    gate, started = threading.Event(), threading.Event()
    look, read, runs = counting_tools(gate, started)

    def release_then_call(request: LLMRequest) -> str:
        assert started.wait(10)  # the expert is already working while the model 'thinks'
        gate.set()
        return "Action: look(image_1)"

    llm = ScriptedLLM([release_then_call, "Final Answer: red"])
    result = Agent(llm, tools=[look, read], prefetch=["look"]).run("What is it?", [RED])
    call = result.trace.steps[0].calls[0]
    assert call.reused == "prefetch" and call.text == "16x12 look"
    assert runs["look"] == 1 and runs["read"] == 0
    (record,) = result.trace.prefetched
    assert record.call == "look(image_1)" and record.used and record.seconds is not None and record.error is None


def test_unused_prefetch_is_reported_and_counted():
    look, read, runs = counting_tools()
    llm = ScriptedLLM(["Action: read(image_1)", "Final Answer: none"])
    result = Agent(llm, tools=[look, read], prefetch="all").run("Any text?", [RED, BLUE])
    records = {r.call: r for r in result.trace.prefetched}
    assert set(records) == {"look(image_1)", "read(image_1)", "look(image_2)", "read(image_2)"}
    assert records["read(image_1)"].used
    assert not records["look(image_1)"].used and not records["look(image_2)"].used
    from mmreact.images import load_image

    assert runs[load_image(RED).sha256] == 1  # the model's call did not run the prefetched read again
    again = Agent(ScriptedLLM(["Action: look(image_2)", "Final Answer: x"]), tools=[look, read],
                  prefetch="none").run("q", [RED, BLUE])
    assert again.trace.prefetched == ()


def test_a_failed_prefetch_is_just_a_cache_miss():
    attempts = {"n": 0}
    failed = threading.Event()

    @tool(cacheable=True)
    def flaky(image: Image) -> str:
        """Fails the first time."""
        attempts["n"] += 1
        if attempts["n"] == 1:
            failed.set()
            raise RuntimeError("GPU busy")
        return "fine"

    llm = ScriptedLLM([waits_for(failed, "Action: flaky(image_1)"), "Final Answer: fine"])
    result = Agent(llm, tools=[flaky], prefetch=["flaky"]).run("q", [RED])
    call = result.trace.steps[0].calls[0]
    assert call.text == "fine" and call.reused is None and not call.error
    assert attempts["n"] == 2
    (record,) = result.trace.prefetched
    assert record.used and "GPU busy" in (record.error or "")


def test_a_slow_prefetch_and_a_tool_timeout():
    """The model's call may time out while the prefetch job still runs: the job fills the cache,
    and the same call in the next turn is answered from it."""
    gate, started = threading.Event(), threading.Event()
    look, _, runs = counting_tools(gate, started)
    llm = ScriptedLLM([waits_for(started, "Action: look(image_1)"), "Final Answer: unknown",
                       "Action: look(image_1)", "Final Answer: 16x12"])
    chat = Agent(llm, tools=[look], prefetch=["look"], tool_timeout=0.2).chat()
    first = chat.ask("q", [RED])
    assert first.trace.steps[0].calls[0].error and "timed out" in first.trace.steps[0].calls[0].text
    gate.set()
    second = chat.ask("and now?")
    assert second.trace.steps[0].calls[0].text == "16x12 look" and runs["look"] == 1
    assert second.trace.prefetched == ()  # no new image, nothing started


def test_chat_turns_prefetch_only_their_new_images():
    look, read, runs = counting_tools()
    llm = ScriptedLLM(["Final Answer: a", "Final Answer: b", "Final Answer: c"])
    chat = Agent(llm, tools=[look, read], prefetch=["look"]).chat()
    first = chat.ask("q", [RED])
    second = chat.ask("q", [RED, BLUE])  # RED again: same handle; only BLUE is new
    third = chat.ask("q")
    assert [r.call for r in first.trace.prefetched] == ["look(image_1)"]
    assert [r.call for r in second.trace.prefetched] == ["look(image_2)"]
    assert third.trace.prefetched == ()
    for r in (*first.trace.prefetched, *second.trace.prefetched):
        assert not r.used


def test_concurrent_runs_with_prefetch_have_no_crosstalk():
    look, read, runs = counting_tools()
    images = [np.full((i + 2, 20, 3), i * 9, dtype=np.uint8) for i in range(20)]

    def one(i: int) -> tuple[str | None, str]:
        llm = ScriptedLLM(["Action: look(image_1)",
                           lambda r: "Final Answer: " + r.messages[-1].content.splitlines()[1]])
        result = Agent(llm, tools=[look, read], prefetch="all").run("size?", [images[i]])
        return result.answer, f"20x{i + 2} look"

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(one, range(20)))
    assert all(answer == expected for answer, expected in results)
    assert runs["look"] == 20 and runs["read"] <= 20  # each expert at most once per image, never twice


def test_the_shared_cache_computes_once_and_failures_are_misses():
    cache = ResultCache()
    gate = threading.Event()
    calls = {"n": 0}

    def produce() -> Observation:
        calls["n"] += 1
        assert gate.wait(10)
        return Observation(text="done")

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(cache.compute, "k", produce) for _ in range(4)]
        while cache.running() == 0:
            pass
        gate.set()
        sources = sorted(f.result()[1] for f in futures)
    assert calls["n"] == 1 and sources.count("computed") == 1 and set(sources) <= {"computed", "waited", "cache"}
    assert cache.compute("k", produce) == (Observation(text="done"), "cache")

    def fails() -> Observation:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cache.compute("other", fails)
    assert cache.running() == 0
    assert cache.compute("other", lambda: Observation(text="second try"))[1] == "computed"
    assert cache.compute("bad", lambda: Observation.failure("no"))[1] == "computed"
    assert cache.get("bad") is None  # failures are never stored


def test_policies_are_checked_and_auto_follows_the_rules(monkeypatch):
    look, read, _ = counting_tools()

    @tool
    def plain(image: Image) -> str:
        """Not cacheable."""
        return "x"

    @tool(cacheable=True)
    def two(image: Image, word: str) -> str:
        """Needs a word too."""
        return "x"

    assert prefetchable(look) and not prefetchable(plain) and not prefetchable(two)
    with pytest.raises(ConfigError, match="no such tool"):
        Agent(ScriptedLLM(["x"]), tools=[look], prefetch=["nope"])
    with pytest.raises(ConfigError, match="only cacheable tools"):
        Agent(ScriptedLLM(["x"]), tools=[look, plain], prefetch=["plain"])
    assert Agent(ScriptedLLM(["x"]), tools=[look, read], prefetch="look,read").prefetch == ["look", "read"]

    import mmreact.prefetch as prefetch_module

    monkeypatch.setattr(prefetch_module, "_gpu", lambda: False)

    class Local(ScriptedLLM):
        runs_locally = True
        first_step_acts = True

    remote = ScriptedLLM(["x"])
    assert choose("auto", [look, read, plain], remote) == (look, read)  # the CPU is idle while a remote LLM thinks
    assert choose("auto", [look], Local(["x"])) == (look,)  # the only call the first step can make
    assert choose("auto", [look, read], Local(["x"])) == ()  # a local LLM on the CPU: no competition
    monkeypatch.setattr(prefetch_module, "_gpu", lambda: True)
    assert choose("auto", [look, read], Local(["x"])) == (look, read)
    assert choose("none", [look], remote) == () and choose(None, [look], remote) == ()


def test_agent_load_loads_the_llm_alongside_the_tools():
    """The LLM's load and a tool's load overlap: each waits for the other to have started."""
    llm_started, tool_started = threading.Event(), threading.Event()

    class SlowLoad(ScriptedLLM):
        def load(self) -> None:
            llm_started.set()
            assert tool_started.wait(10), "the tool did not load while the LLM was loading"

    look, _, _ = counting_tools()
    original = look.setup

    def setup() -> None:
        tool_started.set()
        assert llm_started.wait(10), "the LLM did not load while the tool was loading"
        original()

    look.setup = setup  # type: ignore[method-assign]
    timings = Agent(SlowLoad(["x"]), tools=[look], prefetch="none").load()
    assert set(timings) == {"llm", "look"}


def test_a_guess_never_starts_a_download(monkeypatch, tmp_path):
    """``auto`` and ``all`` skip experts whose weights are not on this machine (a first-use download
    of a model the LLM may never call would be a surprise); naming the tool asks for it."""
    from mmreact.experts.caption import CaptionTool

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    missing = CaptionTool(model="mmreact-test/not-downloaded")
    assert missing.resolved_weights() is None
    look, _, _ = counting_tools()
    remote = ScriptedLLM(["x"])
    assert choose("auto", [look, missing], remote) == (look,)
    assert choose("all", [look, missing], remote) == (look,)
    assert choose(["caption"], [look, missing], remote) == (missing,)


def test_the_first_turn_loads_the_llm_while_the_experts_run():
    """The LLM's load starts with the turn, alongside prefetched experts, not after them."""
    loading = threading.Event()
    seen: list[bool] = []

    class SlowToLoad(ScriptedLLM):
        loads = 0

        def load(self) -> None:
            SlowToLoad.loads += 1
            loading.set()

    @tool(cacheable=True)
    def look(image: Image) -> str:
        """Describe the image."""
        seen.append(loading.wait(10))  # the expert runs while the LLM loads
        return "a red square"

    llm = SlowToLoad([waits_for(loading, "Action: look(image_1)"), "Final Answer: red", "Final Answer: blue"])
    agent = Agent(llm, tools=[look], prefetch=["look"])
    result = agent.run("What colour?", RED)
    assert result.answer == "red" and seen == [True]
    agent.run("And now?", BLUE)
    assert SlowToLoad.loads == 1  # once per agent


# -- a prefetch never holds the user up ---------------------------------------------------------------
def test_the_turn_end_cancels_jobs_that_have_not_started(monkeypatch):
    """With one prefetch thread busy, the other jobs wait; when the model answers, they are
    cancelled (never run, marked in the trace) and the running one is abandoned."""
    import mmreact.prefetch as prefetch_module

    monkeypatch.setattr(prefetch_module, "_pool", prefetch_module.DaemonPool(1, "test-prefetch"))
    gate, started = threading.Event(), threading.Event()
    look, read, runs = counting_tools(gate, started)
    llm = ScriptedLLM([waits_for(started, "Final Answer: nothing needed")])
    result = Agent(llm, tools=[look, read], prefetch="all").run("Say hi", [RED, BLUE])
    records = {r.call: r for r in result.trace.prefetched}
    assert set(records) == {"look(image_1)", "read(image_1)", "look(image_2)", "read(image_2)"}
    running = records.pop("look(image_1)")
    assert running.seconds is None and running.error is None and not running.used  # abandoned while it ran
    assert all(r.error == "cancelled: the turn ended before it started" for r in records.values())
    gate.set()
    done = prefetch_module.pool().submit(lambda: "after")  # the one thread takes this after the abandoned job
    assert done.result(timeout=10) == "after"
    assert runs["look"] == 1 and runs["read"] == 0  # the cancelled jobs never ran


SLOW_PLUGIN = '''
import os, threading
from pathlib import Path
from mmreact import Image, tool

STARTED = Path(os.environ["MMREACT_TEST_STARTED"])

@tool(cacheable=True)
def slow_look(image: Image) -> str:
    """An expert that never finishes (a model that takes minutes)."""
    STARTED.write_text("started")
    threading.Event().wait()
    return "never"

@tool
def wait_for_prefetch(image: Image) -> str:
    """Returns once slow_look's prefetch job is running."""
    for _ in range(1000):
        if STARTED.exists():
            return "it runs"
        threading.Event().wait(0.01)
    return "it never started"
'''


def _slow_plugin(tmp_path):
    import os

    folder = tmp_path / "plugin"
    folder.mkdir()
    (folder / "mmreact_slow_plugin.py").write_text(SLOW_PLUGIN)
    info = folder / "mmreact_slow_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mmreact_slow_plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mmreact.tools]\nslow = mmreact_slow_plugin:slow_look\n"
                                           "wait = mmreact_slow_plugin:wait_for_prefetch\n")
    env = dict(os.environ, MMREACT_TEST_STARTED=str(tmp_path / "started"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(folder), env.get("PYTHONPATH", "")) if p)
    return env


def _image(tmp_path):
    from PIL import Image as PILImage

    path = tmp_path / "red.png"
    PILImage.fromarray(RED).save(path)
    return str(path)


def test_the_cli_exits_without_waiting_for_an_unused_prefetch(tmp_path):
    """``mmreact ask`` with a remote-like model (scripted) prefetches the slow expert by default;
    the model never calls it, and the process exits once it has printed the answer (it used to
    wait for every unused job: here, forever)."""
    import json
    import subprocess
    import sys

    env = _slow_plugin(tmp_path)
    replies = tmp_path / "replies.json"
    replies.write_text(json.dumps(["Action: wait_for_prefetch(image_1)", "Final Answer: hi"]))
    proc = subprocess.run([sys.executable, "-m", "mmreact", "ask", _image(tmp_path), "Say hi", "--llm",
                           f"scripted:{replies}", "--tools", "slow_look,wait_for_prefetch"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert (proc.returncode, proc.stdout) == (0, "hi\n"), proc.stderr
    assert (tmp_path / "started").exists()  # the prefetch job was running when the process exited


def test_a_python_script_exits_without_waiting_for_an_unused_prefetch(tmp_path):
    import subprocess
    import sys

    env = _slow_plugin(tmp_path)
    code = ("import sys; from mmreact import Agent, ScriptedLLM; "
            "llm = ScriptedLLM(['Action: wait_for_prefetch(image_1)', 'Final Answer: hi']); "
            "r = Agent(llm, tools=['slow_look', 'wait_for_prefetch']).run('Say hi', [sys.argv[1]]); "
            "print(r.answer, [(p.call, p.used, p.seconds) for p in r.trace.prefetched])")
    proc = subprocess.run([sys.executable, "-c", code, _image(tmp_path)], capture_output=True, text=True, env=env,
                          timeout=60)
    assert (proc.returncode, proc.stdout) == (0, "hi [('slow_look(image_1)', False, None)]\n"), proc.stderr


def test_a_server_on_this_machine_counts_as_local(monkeypatch):
    """``auto`` prefetches every expert for a model elsewhere, none beside a local server on a CPU."""
    import mmreact.prefetch as prefetch_module
    from mmreact.llms.base import on_this_machine
    from mmreact.llms.openai import OpenAILLM

    monkeypatch.setattr(prefetch_module, "_gpu", lambda: False)
    look, read, _ = counting_tools()
    for url in ("http://127.0.0.1:8000/v1", "http://localhost:8000/v1", "http://[::1]:8000/v1",
                "http://127.0.1.1:8000/v1", "http://0.0.0.0:8000/v1"):
        assert on_this_machine(url) and OpenAILLM("m", base_url=url).runs_locally, url
        assert choose("auto", [look, read], OpenAILLM("m", base_url=url)) == ()
    for url in ("http://10.1.2.3:8000/v1", "http://gpu-box:8000/v1", "https://api.example.com/v1"):
        assert not on_this_machine(url) and not OpenAILLM("m", base_url=url).runs_locally, url
        assert choose("auto", [look, read], OpenAILLM("m", base_url=url)) == (look, read)
    monkeypatch.setattr(prefetch_module, "_gpu", lambda: True)  # the experts run on the GPU: no competition
    assert choose("auto", [look, read], OpenAILLM("m", base_url="http://127.0.0.1:8000/v1")) == (look, read)


def test_a_langchain_model_on_this_machine_counts_as_local():
    from langchain_openai import ChatOpenAI

    from mmreact.llms.langchain import LangChainLLM

    near = ChatOpenAI(model="m", base_url="http://127.0.0.1:8000/v1", api_key="x")
    far = ChatOpenAI(model="m", base_url="https://api.example.com/v1", api_key="x")
    assert LangChainLLM(near).runs_locally and not LangChainLLM(far).runs_locally
