"""Fuzzing the parser and the loop, hung tools, huge replies, and many runs at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmreact import Agent, Image, LLMError, ScriptedLLM, tool
from mmreact.protocol import ParseError, parse

FRAGMENTS = st.sampled_from([
    "Thought: ", "Action: ", "Action 2: ", "Action Input: ", "Final Answer: ", "Observation: ", "\n", "(", ")",
    "image_1", "image_9", "probe", "probe(image_1)", "probe(image=image_1, n=3)", "nope(image_1)", ",", "=",
    "'", '"', "{", "}", "[", "]", "`", "*", "**", "os.system('x')", "__import__('os')", "1e309", "-",
])
REPLIES = st.one_of(st.text(max_size=200), st.lists(FRAGMENTS, max_size=25).map("".join))


@given(REPLIES)
@settings(max_examples=400, deadline=None)
def test_parser_returns_or_raises_parse_error_only(text):
    try:
        parsed = parse(text)
    except ParseError as exc:
        assert str(exc)
    else:
        assert bool(parsed.calls) != (parsed.final_answer is not None)


@tool
def probe(image: Image, n: int = 1) -> str:
    """Describe the image."""
    return f"{image.width}x{image.height} n={n}"


@given(st.lists(REPLIES, min_size=1, max_size=12), st.integers(min_value=1, max_value=6),
       st.integers(min_value=1, max_value=3))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_loop_never_crashes_and_respects_the_step_limit(replies, max_steps, max_errors):
    agent = Agent(ScriptedLLM(replies), tools=[probe], max_steps=max_steps, max_errors=max_errors)
    try:
        result = agent.run("q", [np.zeros((4, 5, 3), np.uint8)])
    except LLMError as exc:  # the script ran out: a typed error with the partial trace
        assert "ran out of replies" in str(exc) and exc.trace is not None
        assert len(exc.trace.steps) <= max_steps
        return
    assert len(result.trace.steps) <= max_steps
    assert (result.answer is not None) == (result.status == "answered")
    if result.answer is None:
        assert result.message


def test_hung_tool_times_out_as_an_observation():
    release = threading.Event()

    @tool
    def hang(image: Image) -> str:
        """Never returns in time."""
        release.wait(30)
        return "late"

    llm = ScriptedLLM(["Action: hang(image_1)", "Final Answer: gave up on it"])
    try:
        result = Agent(llm, tools=[hang], tool_timeout=0.2).run("q", [np.zeros((2, 2, 3), np.uint8)])
    finally:
        release.set()
    call = result.trace.steps[0].calls[0]
    assert call.error and "timed out after 0.2 s" in call.text
    assert result.answer == "gave up on it"


def test_enormous_and_empty_replies_are_survived():
    huge = "Thought: " + "blah " * 200_000
    llm = ScriptedLLM([huge, "", "Final Answer: ok"])
    result = Agent(llm, tools=[probe]).run("q", [np.zeros((2, 2, 3), np.uint8)])
    assert result.answer == "ok"
    assert len(result.trace.steps[0].llm_text) <= 20_000
    assert result.trace.steps[1].error


def test_fifty_simultaneous_runs_have_no_crosstalk():
    calls = []

    @tool
    def size(image: Image) -> str:
        """Image size."""
        calls.append(1)
        time.sleep(0.01)
        return f"{image.width}x{image.height}"

    def one(i: int) -> tuple[str | None, str]:
        llm = ScriptedLLM(["Action: size(image_1)",  # the answer echoes the observation's text
                           lambda req: "Final Answer: " + req.messages[-1].content.splitlines()[1]])
        chat = Agent(llm, tools=[size]).chat()
        result = chat.ask("size?", [np.zeros((i + 1, 100 - i, 3), np.uint8)])
        return result.answer, f"{100 - i}x{i + 1}"

    with ThreadPoolExecutor(50) as pool:
        results = list(pool.map(one, range(50)))
    for answer, expected in results:
        assert answer == expected
    assert len(calls) == 50
