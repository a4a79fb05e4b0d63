"""The ReAct engine driven by the scripted LLM through every path the core promises."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image as PILImage

from mmreact import Agent, Image, LLMError, Observation, ScriptedLLM, Trace, tool
from mmreact.errors import ConfigError, ImageError


def make_tools():
    calls: dict[str, int] = {"mean": 0, "size": 0, "boom": 0}

    @tool
    def mean_colour(image: Image) -> Observation:
        """Average colour of the image."""
        calls["mean"] += 1
        r, g, b = image.to_numpy().reshape(-1, 3).mean(axis=0)
        return Observation(text=f"mean RGB ({r:.0f}, {g:.0f}, {b:.0f})", artifact={"rgb": [r, g, b]})

    @tool
    def size(image: Image, scale: float = 1.0) -> str:
        """Image size in pixels.

        Args:
            scale: multiply the size by this
        """
        calls["size"] += 1
        return f"{image.width * scale:g}x{image.height * scale:g}"

    @tool
    def boom(image: Image) -> str:
        """Always fails."""
        calls["boom"] += 1
        raise RuntimeError("sensor on fire")

    return [mean_colour, size, boom], calls


RED = np.full((20, 30, 3), (255, 0, 0), dtype=np.uint8)
BLUE = PILImage.new("RGB", (40, 10), (0, 0, 255))


def test_single_step_answer_without_tools():
    agent = Agent(ScriptedLLM(["Thought: easy\nFinal Answer: 42"]), tools=[])
    result = agent.run("What is six times seven?")
    assert result.ok and result.answer == "42" and str(result) == "42"
    assert len(result.trace.steps) == 1 and result.trace.steps[0].thought == "easy"


def test_multi_step_run_records_everything():
    tools, calls = make_tools()
    llm = ScriptedLLM(["Thought: look\nAction: mean_colour(image_1)", "Thought: red\nFinal Answer: red"])
    result = Agent(llm, tools=tools).run("What colour?", [RED])
    assert result.answer == "red" and calls["mean"] == 1
    step = result.trace.steps[0]
    assert step.calls[0].call == "mean_colour(image_1)"
    assert step.calls[0].text == "mean RGB (255, 0, 0)"
    assert step.calls[0].artifact == {"rgb": [255.0, 0.0, 0.0]}
    assert step.tool_seconds >= step.calls[0].seconds >= 0
    # the observation reached the model, delimited, and the raw source never did
    second_prompt = "\n".join(m.content for m in llm.requests[1].messages)
    assert '<observation call="mean_colour(image_1)">' in second_prompt
    assert "image_1 (30x20)" in second_prompt
    assert "numpy" not in second_prompt


def test_image_paths_never_reach_the_prompt(tiny_png):
    tools, _ = make_tools()
    llm = ScriptedLLM(["Action: size(image_1)", "Final Answer: small"])
    Agent(llm, tools=tools).run("How big?", [str(tiny_png)])
    prompt = "\n".join(m.content for r in llm.requests for m in r.messages)
    assert str(tiny_png) not in prompt and "tiny.png" not in prompt


def test_several_calls_in_one_step_run_concurrently():
    barrier = threading.Barrier(2, timeout=10)

    @tool
    def left(image: Image) -> str:
        """Waits for its sibling call."""
        barrier.wait()  # raises BrokenBarrierError if the calls ran one after another
        return "left done"

    @tool
    def right(image: Image) -> str:
        """Waits for its sibling call."""
        barrier.wait()
        return "right done"

    llm = ScriptedLLM(["Thought: both\nAction: left(image_1)\nAction: right(image_1)", "Final Answer: ok"])
    result = Agent(llm, tools=[left, right]).run("q", [RED])
    texts = [c.text for c in result.trace.steps[0].calls]
    assert texts == ["left done", "right done"]


def test_two_images_each_call_names_its_image():
    tools, _ = make_tools()
    llm = ScriptedLLM(["Action: mean_colour(image_1)\nAction: mean_colour(image=image_2)", "Final Answer: red and blue"])
    result = Agent(llm, tools=tools).run("Colours?", [RED, BLUE])
    texts = [c.text for c in result.trace.steps[0].calls]
    assert texts == ["mean RGB (255, 0, 0)", "mean RGB (0, 0, 255)"]
    assert [im.handle for im in result.trace.images] == ["image_1", "image_2"]
    assert result.images["image_2"].size == (40, 10)


def test_three_turn_chat_reuses_observations_and_adds_images():
    tools, calls = make_tools()
    llm = ScriptedLLM([
        "Action: mean_colour(image_1)", "Final Answer: red",
        "Thought: I already looked.\nAction: mean_colour(image_1)", "Final Answer: still red",
        "Action: mean_colour(image_2)", "Final Answer: blue",
    ])
    chat = Agent(llm, tools=tools).chat()
    assert chat.ask("What colour?", [RED]).answer == "red"
    second = chat.ask("And what colour is it now?")
    assert second.answer == "still red"
    assert second.trace.steps[0].calls[0].reused == "repeat"
    assert calls["mean"] == 1  # the follow-up re-ran no tool
    third = chat.ask("And this one?", [BLUE])
    assert third.answer == "blue" and calls["mean"] == 2
    assert [im.handle for im in third.trace.images] == ["image_1", "image_2"]
    # earlier turns stay in context
    last_prompt = "\n".join(m.content for m in llm.requests[-1].messages)
    assert "What colour?" in last_prompt and "And what colour is it now?" in last_prompt
    assert "Images: image_2 (40x10)" in last_prompt
    assert len(chat.turns) == 3


def test_unparseable_reply_goes_back_to_the_model():
    tools, _ = make_tools()
    llm = ScriptedLLM(["I think it is red!", "Final Answer: red"])
    result = Agent(llm, tools=tools).run("Colour?", [RED])
    assert result.answer == "red"
    assert result.trace.steps[0].error and "neither" in result.trace.steps[0].error
    assert "could not be used" in llm.requests[1].messages[-1].content


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Action: teleport(image_1)", "there is no tool named 'teleport'"),
        ("Action: size(image_1, scale='huge')", "bad arguments for size"),
        ("Action: size(image_1, zoom=2)", "bad arguments for size"),
        ("Action: size(image_7)", "'image_7' is not an image handle"),
        ("Action: size()", "bad arguments for size"),
        ("Action: boom(image_1)", "boom failed: RuntimeError: sensor on fire"),
    ],
)
def test_bad_calls_become_observations(reply, expected):
    tools, _ = make_tools()
    llm = ScriptedLLM([reply, "Final Answer: done"])
    result = Agent(llm, tools=tools).run("q", [RED])
    call = result.trace.steps[0].calls[0]
    assert call.error and expected in call.text
    assert expected in llm.requests[1].messages[-1].content
    assert result.answer == "done"


def test_repeated_identical_call_reuses_the_observation():
    tools, calls = make_tools()
    llm = ScriptedLLM([
        "Action: size(image_1)", "Action: size(image=image_1, scale=1.0)", "Action: size(image_1, scale=2)",
        "Final Answer: 30x20",
    ])
    result = Agent(llm, tools=tools).run("size?", [RED])
    recs = [s.calls[0] for s in result.trace.steps[:3]]
    assert [r.reused for r in recs] == [None, "repeat", None]
    assert calls["size"] == 2 and recs[1].text == recs[0].text
    assert "same call as before" in llm.requests[2].messages[-1].content


def test_step_limit_ends_with_a_clear_result():
    tools, _ = make_tools()
    llm = ScriptedLLM(["Action: size(image_1, scale=1.5)", "Action: mean_colour(image_1)", "Action: size(image_1, scale=3)"])
    result = Agent(llm, tools=tools, max_steps=3).run("q", [RED])
    assert not result.ok and result.answer is None and result.status == "max_steps"
    assert "3 steps" in result.message and len(result.trace.steps) == 3


def test_too_many_unusable_replies_stop_the_run():
    llm = ScriptedLLM(["nonsense"], repeat_last=True)
    result = Agent(llm, tools=[], max_errors=2, max_steps=20).run("q")
    assert result.status == "too_many_errors" and len(result.trace.steps) == 2


def test_llm_failure_raises_with_partial_trace():
    tools, _ = make_tools()
    llm = ScriptedLLM(["Action: size(image_1)"])  # then runs out
    with pytest.raises(LLMError) as info:
        Agent(llm, tools=tools).run("q", [RED])
    assert "ran out of replies" in str(info.value)
    assert info.value.trace is not None and len(info.value.trace.steps) == 1


def test_backend_bug_is_wrapped_with_trace():
    def broken(request):
        raise ZeroDivisionError("oops")

    with pytest.raises(LLMError, match="ZeroDivisionError: oops") as info:
        Agent(ScriptedLLM([broken]), tools=[]).run("q")
    assert info.value.trace.steps == ()


def test_trace_json_round_trip():
    tools, _ = make_tools()
    llm = ScriptedLLM(["Thought: a\nAction: mean_colour(image_1)\nAction: boom(image_1)", "nope", "Final Answer: red"])
    trace = Agent(llm, tools=tools).run("Colour?", [RED]).trace
    again = Trace.from_json(trace.to_json())
    assert again == trace
    assert again.steps[0].calls[1].error and again.steps[1].error
    text = trace.pretty()
    assert "Step 1" in text and "Answer: red" in text and "mean_colour(image_1)" in text


def test_streaming_yields_steps_then_result():
    from mmreact.agent import Result
    from mmreact.trace import StepRecord

    tools, _ = make_tools()
    llm = ScriptedLLM(["Action: size(image_1)", "Final Answer: 30x20"])
    events = list(Agent(llm, tools=tools).stream("size?", [RED]))
    assert [type(e) for e in events] == [StepRecord, StepRecord, Result]
    chunks: list[str] = []
    Agent(ScriptedLLM(["Final Answer: hi"]), tools=[]).run("q", on_text=chunks.append)
    assert "".join(chunks) == "Final Answer: hi"


def test_bad_images_raise_before_anything_runs(tmp_path):
    tools, calls = make_tools()
    llm = ScriptedLLM(["Final Answer: x"])
    agent = Agent(llm, tools=tools)
    with pytest.raises(ImageError, match="No such image file"):
        agent.run("q", [RED, tmp_path / "missing.png"])
    assert llm.requests == []
    with pytest.raises(ConfigError, match="question is empty"):
        agent.run("   ", [RED])


def test_invalid_agent_settings():
    with pytest.raises(ConfigError):
        Agent(ScriptedLLM(["x"]), tools=[], max_steps=0)
    with pytest.raises(ConfigError, match="Unknown LLM spec"):
        Agent("telepathy:gpt", tools=[])


def test_concurrent_runs_share_tools_without_crosstalk():
    tools, _ = make_tools()
    colours = [(i * 10 % 256, 0, 255 - i * 10 % 256) for i in range(12)]

    def one(i):
        llm = ScriptedLLM(["Action: mean_colour(image_1)", lambda req: "Final Answer: " + req.messages[-1].content])
        arr = np.full((8, 8, 3), colours[i], dtype=np.uint8)
        return Agent(llm, tools=tools).run("c?", [arr]).answer

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(12)))
    for i, answer in enumerate(answers):
        r, g, b = colours[i]
        assert f"mean RGB ({r}, {g}, {b})" in answer


def test_result_cache_hits_are_remembered_for_repeat_detection():
    from mmreact.cache import result_cache

    result_cache().clear()
    runs = {"n": 0}

    @tool(cacheable=True)
    def slow_look(image: Image) -> str:
        """An expensive look at the image."""
        runs["n"] += 1
        return "a red square"

    Agent(ScriptedLLM(["Action: slow_look(image_1)", "Final Answer: x"]), tools=[slow_look]).run("q", [RED])
    chat = Agent(ScriptedLLM(["Action: slow_look(image_1)", "Final Answer: x", "Action: slow_look(image_1)",
                              "Final Answer: y"]), tools=[slow_look]).chat()
    first = chat.ask("q", [RED])
    assert first.trace.steps[0].calls[0].reused == "cache"
    second = chat.ask("again?")
    assert second.trace.steps[0].calls[0].reused == "repeat"
    assert runs["n"] == 1
    assert "slow_look(image_1)" in chat.agent.llm.requests[-1].done_calls
