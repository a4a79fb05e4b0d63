"""Grounding in runs: every answered trace records its check, and each view shows it.

Driven by the scripted LLM and a small text-reading tool whose artifact has the OCR expert's
shape (lines with boxes), so the evidence is real tool output, not a fixture string.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from mmreact import Agent, Image, Observation, ScriptedLLM, Trace, tool
from mmreact.errors import ConfigError

POSTER = np.full((200, 120, 3), 255, dtype=np.uint8)
LINES = [("JAZZ NIGHT", [10, 5, 110, 20]), ("Doors open 7:30 PM", [10, 80, 110, 95]), ("Tickets $12", [10, 140, 80, 155])]


@tool
def read_text(image: Image) -> Observation:
    """Read the text in the image."""
    lines = [{"text": t, "box": b, "confidence": 0.9} for t, b in LINES]
    text = "Text lines (text [x1, y1, x2, y2]):\n" + "\n".join(f"{t} {b}" for t, b in LINES)
    return Observation(text=text, artifact={"lines": lines})


def run(replies: list[str], grounding: str = "auto", **kw) -> Trace:
    agent = Agent(ScriptedLLM(replies), tools=[read_text], grounding=grounding, **kw)
    return agent.run("When do the doors open, and what do tickets cost?", POSTER).trace


BAD = "Final Answer: The doors open at 9:00 PM and tickets cost $25."
GOOD = "Final Answer: Doors open at 7:30 PM; tickets cost $12."
CALL = "Thought: read it\nAction: read_text(image_1)"


def test_every_answered_run_records_its_check_and_the_mode() -> None:
    trace = run([CALL, BAD])
    assert trace.grounding_mode == "check"  # a scripted model cannot be constrained: auto checks
    check = trace.grounding
    assert check is not None and check.mode == "check" and not check.supported
    assert [(f.text, f.kind, f.supported) for f in check.facts] == [
        ("9:00 PM", "time", False), ("$25", "amount", False)]
    good = run([CALL, GOOD]).grounding
    assert good is not None and good.supported
    time, price = good.facts
    assert time.evidence is not None and (time.evidence.call, time.evidence.line) == ("read_text(image_1)", 1)
    assert price.evidence is not None and price.evidence.box == (10, 140, 80, 155)
    assert Trace.from_json(run([CALL, GOOD]).to_json()).grounding == good  # survives JSON


def test_grounding_off_records_nothing_and_says_so() -> None:
    trace = run([CALL, BAD], grounding="off")
    assert trace.grounding_mode == "off" and trace.grounding is None and trace.answer


def test_settings_are_checked_when_the_agent_is_made() -> None:
    with pytest.raises(ConfigError, match="grounding must be one of"):
        Agent(ScriptedLLM(["x"]), tools=[read_text], grounding="strict")
    with pytest.raises(ConfigError, match="decodes under a grammar"):
        Agent(ScriptedLLM(["x"]), tools=[read_text], grounding="constrain")


def test_reask_asks_once_naming_the_unsupported_facts_and_the_trace_keeps_both() -> None:
    llm = ScriptedLLM([CALL, BAD, GOOD])
    trace = Agent(llm, tools=[read_text], grounding="reask", max_steps=2).run("When?", POSTER).trace
    assert trace.answer == GOOD.removeprefix("Final Answer: ")
    first, second, third = trace.steps  # the re-ask does not count against max_steps=2
    assert second.final_answer == BAD.removeprefix("Final Answer: ") and second.reask
    assert "'9:00 PM'" in second.reask and "'$25'" in second.reask
    assert second.grounding is not None and not second.grounding.supported
    assert third.reask is None and third.grounding is not None and third.grounding.supported
    check = trace.grounding
    assert check is not None and check.mode == "reask" and check.first_answer == second.final_answer
    assert llm.requests[2].messages[-1].content == second.reask  # the model saw the reason


def test_reask_happens_once_and_keeps_the_second_answer_even_if_unsupported() -> None:
    trace = run([CALL, BAD, BAD], grounding="reask")
    assert len(trace.steps) == 3 and trace.status == "answered"
    assert trace.grounding is not None and not trace.grounding.supported


def test_reask_leaves_supported_answers_alone() -> None:
    trace = run([CALL, GOOD], grounding="reask")
    assert len(trace.steps) == 2 and trace.steps[-1].reask is None


def test_views_mark_unsupported_facts() -> None:
    from mmreact.views.notebook import trace_html
    from mmreact.serve._response import reasoning_text

    trace = run([CALL, BAD])
    text = trace.pretty()
    assert "Grounding (check): 2 of 2 facts unsupported: '9:00 PM', '$25'" in text
    assert "UNSUPPORTED amount '$25': no observation says it" in text
    html = trace_html(trace)
    assert '<span class="mmr-unsupported" title="no observation says it">$25</span>' in html
    assert "Grounding (check)" in reasoning_text(trace)
    good = run([CALL, GOOD]).pretty()
    assert "supported time '7:30 PM': read_text(image_1) line 2 'Doors open 7:30 PM'" in good


def test_annotated_with_grounding_draws_only_the_supporting_boxes() -> None:
    from mmreact.views.boxes import support_artifact

    result = Agent(ScriptedLLM([CALL, GOOD]), tools=[read_text]).run("When?", POSTER)
    art = support_artifact(result, "image_1")
    assert art == {"answer": [{"label": "7:30 PM", "box": [10, 80, 110, 95]}, {"label": "$12", "box": [10, 140, 80, 155]}]}
    plain = np.asarray(result.annotated())
    only = np.asarray(result.annotated(grounding=True))
    assert (only != POSTER).any() and (only[5:21, 10:111] == 255).all()  # JAZZ NIGHT's box is not drawn
    assert (plain[5:21, 10:111] != 255).any()


def test_eval_reports_the_grounded_share_next_to_accuracy(tmp_path) -> None:
    from mmreact.eval.report import summarize
    from mmreact.eval.runner import run_eval

    data = tmp_path / "set.jsonl"
    POSTER_PATH = tmp_path / "poster.png"
    from PIL import Image as PILImage

    PILImage.fromarray(POSTER).save(POSTER_PATH)
    rows = [{"id": "a", "images": ["poster.png"], "question": "When?", "answers": ["7:30 PM"], "capabilities": ["ocr"]},
            {"id": "b", "images": ["poster.png"], "question": "Price?", "answers": ["$12"], "capabilities": ["ocr"]}]
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n")

    def reply(request):  # call the tool first, then answer "a" well and "b" with an invented price
        if not any(m.role == "observation" for m in request.messages):
            return CALL
        return GOOD if "When?" in request.messages[1].content else "Final Answer: $25"

    agent = Agent(ScriptedLLM([reply], repeat_last=True), tools=[read_text])
    from mmreact.eval.dataset import load_dataset

    results = run_eval(load_dataset(str(data)), {"agent": agent}, out_dir=tmp_path / "out", progress=False)
    assert [(r.item, r.grounded, r.unsupported) for r in sorted(results, key=lambda r: r.item)] == [
        ("a", True, ()), ("b", False, ("$25",))]
    report = summarize(results)
    (s,) = report.systems
    assert (s.grounded, s.grounded_by_capability, s.checked) == (50.0, {"ocr": 50.0}, 2)
    assert "Grounded answers (%)" in report.to_markdown()
