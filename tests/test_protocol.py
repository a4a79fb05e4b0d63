"""Reading the model's text: calls, final answers, and errors the model can act on."""

from __future__ import annotations

import pytest

from mmreact.protocol import ParseError, parse


def calls(text):
    return [(c.tool, c.args, c.kwargs) for c in parse(text).calls]


def test_action_forms():
    assert calls("Thought: t\nAction: ocr(image_1)") == [("ocr", ("image_1",), {})]
    assert calls("Action: detect(image=image_2, min_confidence=0.5)") == [
        ("detect", (), {"image": "image_2", "min_confidence": 0.5})]
    assert calls("Action: `ocr(image_1)`") == [("ocr", ("image_1",), {})]
    assert calls("Action 1: ocr(image_1)\nAction 2: caption(image_2)") == [
        ("ocr", ("image_1",), {}), ("caption", ("image_2",), {})]
    assert calls("Action: ocr\nAction Input: image_1") == [("ocr", ("image_1",), {})]
    assert calls('Action: tags\nAction Input: {"image": "image_1", "top_k": 3}') == [
        ("tags", (), {"image": "image_1", "top_k": 3})]
    assert calls("Action: f(image_1, words=['a', 'b'],\n  n=2)\nsome trailing prose") == [
        ("f", ("image_1",), {"words": ["a", "b"], "n": 2})]
    assert calls("Action: f(text='a ) tricky', n=1)") == [("f", (), {"text": "a ) tricky", "n": 1})]


def test_thought_and_final_answer():
    p = parse("Thought: The total is shown.\nFinal Answer: 7.75")
    assert p.thought == "The total is shown." and p.final_answer == "7.75" and p.calls == ()
    p = parse("Final Answer: line one\nline two\nObservation: invented")
    assert p.final_answer == "line one\nline two"
    assert parse("final answer: yes").final_answer == "yes"


def test_first_marker_wins():
    p = parse("Action: ocr(image_1)\nFinal Answer: made up")
    assert [c.tool for c in p.calls] == ["ocr"] and p.final_answer is None
    p = parse("Action: ocr(image_1)\nObservation: fake\nAction: caption(image_1)")
    assert [c.tool for c in p.calls] == ["ocr"]
    assert parse("Final Answer: cat\nAction: ocr(image_1)").final_answer == "cat\nAction: ocr(image_1)"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("I don't know", "neither"),
        ("", "neither"),
        ("Final Answer:   ", "Final Answer is empty"),
        ("Action: ocr(image_1", "could not read the call"),
        ("Action: ocr(__import__('os'))", "not a literal"),
        ("Action: os.system('x')", "not a tool call"),
        ("Action: f(*a)", "not allowed"),
        ("Action Input: image_1", "must follow"),
        ("Action: f(image_1)\nAction Input: image_2", "both arguments"),
        ('Action: f\nAction Input: {"a": ', "not valid JSON"),
    ],
)
def test_parse_errors_have_actionable_messages(text, message):
    with pytest.raises(ParseError, match=message):
        parse(text)
