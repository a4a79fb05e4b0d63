"""Faults end as observations the model can act on, or as typed errors that keep the partial trace.

* The LLM: a real ``mmreact.Agent`` drives the real ``openai:`` backend against a loopback
  chat-completions server (``tests/servers.py``) that times out, rate-limits, fails with 5xx, answers
  empty or enormous replies, sends broken text, or drops the connection mid-stream; one failure also
  goes through ``python -m mmreact ask`` as a subprocess (one line on stderr, no traceback).
* Tools that return nonsense (objects that are not JSON, ``None``, a huge string, an Observation
  whose text is not a string or whose artifact is not JSON-able, broken Unicode).
* A very large photo: real EasyOCR reports boxes in the original image's coordinates.

Async: :class:`mmreact.Agent` has no async API (``run``, ``stream`` and ``chat`` are synchronous;
concurrency is threads, covered in ``test_robustness.py``), so there is no async variant to test.
Raising and hanging tools are covered in ``test_agent.py`` and ``test_robustness.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from mmreact import Agent, Image, LLMError, Observation, ScriptedLLM, Trace, tool
from mmreact.agent import MAX_REPLY_CHARS
from mmreact.llms.openai import OpenAILLM
from mmreact.prompts import MAX_OBSERVATION_CHARS
from servers import Reply, ScriptedOpenAI

ROOT = Path(__file__).resolve().parents[1]
IMG = np.zeros((4, 6, 3), np.uint8)
IMG[0, 0] = (10, 20, 30)
FAST_RETRY = {"retry-after-ms": "10"}  # the SDK honours it, so retry loops take milliseconds


@tool
def size(image: Image) -> str:
    """Width and height of the image."""
    return f"{image.width}x{image.height}"


@tool
def corner(image: Image) -> str:
    """Colour of the top-left pixel."""
    return str(tuple(image.to_numpy()[0, 0].tolist()))


ACT = Reply(content="Thought: measure it.\nAction: size(image_1)")
ACT2 = Reply(content="Thought: and the corner.\nAction: corner(image_1)")


def one_sentence(text: str) -> bool:
    return "\n" not in text and "Traceback" not in text and text.endswith((".", "?")) and len(text) < 400


def run(replies: list[Reply], *, stream: bool = False, repeat_last: bool = False,
        **llm_kwargs) -> tuple[object, ScriptedOpenAI, list[str]]:
    """Run the agent against a scripted server; return the Result or the LLMError raised."""
    chunks: list[str] = []
    llm_kwargs.setdefault("max_retries", 0)
    with ScriptedOpenAI(replies, repeat_last=repeat_last) as srv:
        llm = OpenAILLM("test-model", base_url=srv.base_url, mode="text", **llm_kwargs)
        try:
            outcome: object = Agent(llm, tools=[size, corner]).run(
                "How big is it?", IMG, **({"on_text": chunks.append} if stream else {}))
        except LLMError as exc:
            outcome = exc
    return outcome, srv, chunks


def partial_trace(outcome: object, steps: int) -> Trace:
    """The checks every LLM failure must pass: typed, one sentence, partial trace kept and saveable."""
    assert isinstance(outcome, LLMError), outcome
    assert one_sentence(str(outcome)), str(outcome)
    trace = outcome.trace
    assert trace is not None and len(trace.steps) == steps
    assert trace.status == "llm_error" and trace.message == str(outcome) and trace.answer is None
    assert Trace.from_json(trace.to_json()) == trace
    return trace


# -- the LLM -----------------------------------------------------------------------------------
def test_llm_timeout_mid_run_is_a_typed_error_with_the_partial_trace() -> None:
    outcome, srv, _ = run([ACT, Reply(content="Final Answer: too late", delay=3)], timeout=0.5)
    trace = partial_trace(outcome, steps=1)
    assert "timed out (0.5 s)" in str(outcome)
    assert [(c.call, c.text) for c in trace.calls] == [("size(image_1)", "6x4")]
    assert len(srv.requests) == 2


def test_429_then_success_is_retried_within_the_step() -> None:
    script = [ACT, Reply.fail(429, "Rate limit reached.", headers=FAST_RETRY), Reply(content="Final Answer: 6x4")]
    result, srv, _ = run(script, max_retries=2)
    assert result.answer == "6x4" and result.status == "answered"  # type: ignore[attr-defined]
    assert len(result.trace.steps) == 2 and len(srv.requests) == 3  # type: ignore[attr-defined]


def test_5xx_forever_keeps_the_earlier_steps() -> None:
    outcome, srv, _ = run([ACT, ACT2, Reply.fail(503, "The engine is overloaded.", headers=FAST_RETRY)],
                          repeat_last=True, max_retries=3)
    trace = partial_trace(outcome, steps=2)
    assert "HTTP 503" in str(outcome) and "3 retries" in str(outcome) and "overloaded" in str(outcome)
    assert [(c.call, c.text) for c in trace.calls] == [("size(image_1)", "6x4"), ("corner(image_1)", "(10, 20, 30)")]
    assert len(srv.requests) == 2 + 4  # two good steps, then the failing one and its 3 retries


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_empty_replies_are_unusable_steps_and_the_run_goes_on(stream: bool) -> None:
    script = [Reply(content=""), Reply(content=None), ACT, Reply(content="Final Answer: 6x4")]
    result, srv, _ = run(script, stream=stream)
    trace = result.trace  # type: ignore[attr-defined]
    assert trace.answer == "6x4" and len(trace.steps) == 4
    assert [bool(s.error) for s in trace.steps] == [True, True, False, False]
    third = srv.requests[2].body["messages"]
    assert third[-1]["role"] == "user" and "could not be used" in third[-1]["content"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_an_enormous_reply_is_cut_and_the_run_goes_on(stream: bool) -> None:
    huge = "Thought: " + "x" * 1_000_000  # 1 MB; streamed as a single 1 MB chunk
    result, srv, chunks = run([Reply(content=huge), ACT, Reply(content="Final Answer: 6x4")], stream=stream)
    trace = result.trace  # type: ignore[attr-defined]
    assert trace.answer == "6x4"
    assert len(trace.steps[0].llm_text) <= MAX_REPLY_CHARS and trace.steps[0].error
    later = json.dumps(srv.requests[1].body)
    assert len(later) < 50_000  # the megabyte is not sent back to the model
    if stream:
        assert sum(map(len, chunks)) >= 1_000_000  # the live view still got every character


@pytest.mark.parametrize("quietly", [False, True], ids=["reset", "orderly-close"])
def test_a_stream_that_breaks_off_is_a_typed_error_with_the_partial_trace(quietly: bool) -> None:
    cut = Reply(content="Thought: the total is seven dollars\nFinal Answer: 7.75", drop_after_chunks=4,
                drop_quietly=quietly)
    outcome, srv, chunks = run([ACT, cut], stream=True, max_retries=2)
    trace = partial_trace(outcome, steps=1)
    assert ("broke off mid-reply" if not quietly else "ended mid-reply") in str(outcome)
    assert trace.calls[0].text == "6x4"
    streamed = "".join(chunks)
    assert streamed.endswith("Thought: the total") and "7.75" not in streamed  # live view saw the start only
    assert all("7.75" not in s.llm_text for s in trace.steps)  # no truncated reply was taken as a step
    assert len(srv.requests) == 2  # not replayed: the start was already streamed to the caller


def test_broken_unicode_from_the_server_and_a_tool_is_repaired() -> None:
    @tool
    def label(image: Image) -> str:
        """Read the label."""
        return b"caf\xe9 \xff".decode("utf-8", "surrogateescape")  # lone surrogates

    script = [Reply(content="Thought: odd \ud800 text\nAction: label(image_1)"), Reply(content="Final Answer: ok")]
    with ScriptedOpenAI(script) as srv:
        llm = OpenAILLM("test-model", base_url=srv.base_url, mode="text", max_retries=0)
        result = Agent(llm, tools=[label]).run("What does it say?", IMG)
    assert result.answer == "ok" and len(srv.requests) == 2
    assert result.trace.steps[0].thought == "odd ? text" and result.trace.calls[0].text == "caf? ?"
    assert "caf? ?" in srv.requests[1].body["messages"][-1]["content"]
    assert Trace.from_json(result.trace.to_json()) == result.trace


def test_a_chat_session_survives_a_failed_turn() -> None:
    script = [ACT, Reply.fail(400, "Bad request, try again."), ACT, Reply(content="Final Answer: 6x4")]
    with ScriptedOpenAI(script) as srv:
        chat = Agent(OpenAILLM("test-model", base_url=srv.base_url, mode="text", max_retries=0), tools=[size]).chat()
        with pytest.raises(LLMError) as info:
            chat.ask("How big is it?", IMG)
        assert len(info.value.trace.steps) == 1
        assert chat.images.handles == []  # the failed turn's image went with it
        again = chat.ask("How big is it, then?", IMG)
    assert again.answer == "6x4" and chat.images.handles == ["image_1"]
    assert again.trace.calls[0].text == "6x4"
    roles = [m["role"] for m in srv.requests[-1].body["messages"]]
    assert roles == ["system", "user", "assistant", "user"]  # the failed turn left nothing behind


def test_cli_llm_failure_is_one_line_and_keeps_the_partial_trace(tmp_path: Path) -> None:
    image = tmp_path / "photo.png"
    PILImage.new("RGB", (6, 4), (10, 20, 30)).save(image)
    script = [Reply(content="Thought: zoom first.\nAction: zoom(image_1)"),
              Reply.fail(503, "The engine is overloaded.", headers=FAST_RETRY)]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with ScriptedOpenAI(script, repeat_last=True) as srv:
        proc = subprocess.run(
            [sys.executable, "-m", "mmreact", "ask", str(image), "How big is it?", "--llm",
             f"openai:test-model@{srv.base_url}", "--tools", "ocr", "--json"],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("mmreact: error: The LLM server failed (HTTP 503) after 3 retries")
    trace = Trace.from_json(proc.stdout)
    assert trace.status == "llm_error" and len(trace.steps) == 1
    assert "no tool named 'zoom'" in trace.calls[0].text


# -- tools that return nonsense ----------------------------------------------------------------
class Opaque:
    def __repr__(self) -> str:
        return "<Opaque>"


NONSENSE = {
    "object": (lambda: Opaque(), False, '"<Opaque>"'),
    "none": (lambda: None, False, "(no output)"),
    "huge string": (lambda: "y" * 5_000_000, False, "y" * 100),
    "int text": (lambda: Observation(text=123), True, "text is of type int, not a str"),  # type: ignore[arg-type]
    "bytes text": (lambda: Observation(text=b"abc"), True, "text is of type bytes"),  # type: ignore[arg-type]
    "opaque artifact": (lambda: Observation(text="ok", artifact={"thing": Opaque(), 3: {1, 2}}), False, "ok"),
    "nan": (lambda: {"score": float("nan")}, False, "NaN"),
}


@pytest.mark.parametrize("name", list(NONSENSE))
def test_a_tool_returning_nonsense_is_an_observation(name: str) -> None:
    make, is_error, needle = NONSENSE[name]

    @tool
    def odd(image: Image) -> str:
        """Return something odd."""
        return make()

    llm = ScriptedLLM(["Action: odd(image_1)", "Final Answer: went on"])
    result = Agent(llm, tools=[odd]).run("q", IMG)
    assert result.answer == "went on"
    call = result.trace.calls[0]
    assert call.error is is_error and needle in call.text
    prompt = llm.requests[1].messages[-1].content
    assert len(prompt) < MAX_OBSERVATION_CHARS + 200  # what reaches the model stays bounded
    saved = Trace.from_json(result.trace.to_json())
    if name == "nan":  # JSON has no NaN: a saved trace holds null
        assert saved.calls[0].artifact == {"score": None}
    else:
        assert saved == result.trace
    if name == "opaque artifact":
        assert call.artifact == {"thing": "<Opaque>", "3": [1, 2]}


# -- a very large photo through real OCR --------------------------------------------------------
@pytest.mark.slow
def test_a_very_large_photo_gets_boxes_in_original_coordinates() -> None:
    """The receipt's TOTAL row, upscaled 6x to 2880 px wide: past EasyOCR's 2560 px detection canvas,
    so the detector works on a downscaled copy. Boxes must still be on the 2880 px image, i.e. the
    1x boxes times 6, within 10% of the box's size (a box left in canvas coordinates would be 11% too
    small: its right edge ~320 px short)."""
    from mmreact.experts.ocr import OCRTool

    ocr = OCRTool()
    if ocr.check() is not None:
        pytest.skip(ocr.check())
    k = 6
    strip = PILImage.open(ROOT / "examples" / "receipt.png").convert("RGB").crop((0, 210, 480, 275))
    big = strip.resize((strip.width * k, strip.height * k), PILImage.Resampling.BICUBIC)
    llm = ScriptedLLM(["Action: ocr(image_1)", "Final Answer: read"], repeat_last=True)
    small_run = Agent(llm, tools=[ocr]).run("q", strip)
    llm.reset()
    big_run = Agent(llm, tools=[ocr]).run("q", big)
    assert big_run.trace.images[0].width == 2880
    assert "Image size: 2880x390 pixels" in big_run.trace.calls[0].text
    (small,) = small_run.trace.calls[0].artifact["lines"]
    (large,) = big_run.trace.calls[0].artifact["lines"]
    assert small["text"] == large["text"] == "TOTAL 7.75"
    expected = [v * k for v in small["box"]]
    width, height = expected[2] - expected[0], expected[3] - expected[1]
    for got, want, extent in zip(large["box"], expected, (width, height, width, height)):
        assert abs(got - want) <= 0.1 * extent + k, (large["box"], expected)
    assert large["box"][2] > 2560  # the right edge lies beyond the detector's canvas: original coordinates
