"""Scorers on tricky cases: units, case, punctuation, number words, options, judge replies."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmreact import ScriptedLLM
from mmreact.errors import ConfigError
from mmreact.eval.dataset import EvalItem
from mmreact.eval.scorers import (
    ChoiceScorer,
    ContainsScorer,
    DefaultScorer,
    ExactScorer,
    JudgeScorer,
    NumericScorer,
    ScoreError,
    get_scorer,
    is_numeric_answer,
    normalize,
    parse_judge_score,
    parse_options,
)


def item(question: str = "q", answers: tuple[str, ...] = ("x",), choices: tuple[str, ...] = ()) -> EvalItem:
    return EvalItem(id="i", question=question, answers=answers, choices=choices)


@pytest.mark.parametrize("text, expected", [
    ("The Cat.", "cat"),
    ("  A  dog,   an apple! ", "dog apple"),
    ("seven", "7"),
    ("Twenty-one coins", "21 coins"),
    ("one hundred and five", "105"),
    ("two thousand three hundred", "2300"),
    ("ninety nine", "99"),
    ("one two three", "1 2 3"),  # a list of numbers is not summed
    ("The total is $1,234.50.", "total is 1234.5"),
    ("7.50", "7.5"),
    ("Region-based segmentation", "region based segmentation"),
    ("someone often", "someone often"),  # number words inside words stay
    ("np.zeros_like(coins)", "np zeros_like coins"),
])
def test_normalize(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize("scorer, prediction, answers, expected", [
    (ExactScorer(), "Seven", ["7"], 1.0),
    (ExactScorer(), "The Cat.", ["cat"], 1.0),
    (ExactScorer(), "twenty-one", ["21"], 1.0),
    (ExactScorer(), "REGION BASED SEGMENTATION!", ["Region-based segmentation"], 1.0),
    (ExactScorer(), "7.50", ["7.5"], 1.0),
    (ExactScorer(), "cats", ["cat"], 0.0),
    (ExactScorer(), "a cat", ["dog", "cat"], 1.0),
    (ExactScorer(), "", ["cat"], 0.0),
    (ExactScorer(), None, ["cat"], 0.0),
    (ContainsScorer(), "I think it is a tabby cat.", ["cat"], 1.0),
    (ContainsScorer(), "concatenate", ["cat"], 0.0),
    (ContainsScorer(), "Parking is forbidden until 6 PM.", ["6 pm"], 1.0),
    (ContainsScorer(), "There are twenty-four coins", ["24"], 1.0),
    (ContainsScorer(), "It is green and red", ["green <AND> red <AND> blue"], 2 / 3),
    (NumericScorer(), "The total is $17.43.", ["17.43"], 1.0),
    (NumericScorer(), "$1,234.50", ["1234.5"], 1.0),
    (NumericScorer(), "7.75 dollars", ["$7.75"], 1.0),
    (NumericScorer(), "USD 7.75", ["7.75 dollars"], 1.0),
    (NumericScorer(), "45%", ["0.45"], 1.0),
    (NumericScorer(), "0.45", ["45 percent"], 1.0),
    (NumericScorer(), "There are twenty-four coins.", ["24"], 1.0),
    (NumericScorer(), "about 20", ["24"], 0.0),
    (NumericScorer(), "24.01", ["24"], 1.0),  # within the default 0.1%
    (NumericScorer(), "24.5", ["24"], 0.0),
    (NumericScorer(rel_tol=0.05), "24.5", ["24"], 1.0),
    (NumericScorer(rel_tol=0, abs_tol=0.015), "17.44", ["17.43"], 1.0),
    (NumericScorer(rel_tol=0, abs_tol=0.015), "17.45", ["17.43"], 0.0),
    (NumericScorer(), "3 million", ["3000000"], 1.0),
    (NumericScorer(), "x = -5", ["-5"], 1.0),
    (NumericScorer(), "x = 5", ["-5"], 0.0),
    (NumericScorer(), "6 coins in each of 4 rows, 24 in total", ["24"], 1.0),  # last number
    (NumericScorer(), "6 coins in each of 4 rows, 24 in total", ["6"], 1.0),  # first number
    (NumericScorer(), "6 coins in each of 4 rows, 24 in total", ["4"], 0.0),  # a middle number earns nothing
    (NumericScorer(), "x = -1 or x = -5", ["-1 <AND> -5"], 1.0),
    (NumericScorer(), "x = -1", ["-1 <AND> -5"], 0.5),
    (NumericScorer(), "no numbers here", ["24"], 0.0),
    (NumericScorer(), "Q4", ["4"], 0.0),  # a label, not a number
    (DefaultScorer(), "There are 24 coins", ["24"], 1.0),
    (DefaultScorer(), "24 coins", ["twenty-four"], 1.0),
    (DefaultScorer(), "about $17.40", ["$17.43"], 0.0),
    (DefaultScorer(), "the United States of America", ["United States"], 1.0),
    (DefaultScorer(), "Q4 had the most", ["Q4", "fourth quarter"], 1.0),
    (DefaultScorer(), "It was the third quarter", ["Q4", "fourth quarter"], 0.0),
    (DefaultScorer(), "Until 6 p.m.", ["6 PM", "6 p.m."], 1.0),
])
def test_scorers(scorer, prediction, answers, expected):
    assert scorer.score(prediction, answers, item()) == pytest.approx(expected)


@pytest.mark.parametrize("answer, numeric", [
    ("24", True), ("$7.75", True), ("7.75 dollars", True), ("40 mph", True), ("45%", True), ("twenty-one", True),
    ("1,234.50", True), ("6 PM", False), ("Q4", False), ("Region-based segmentation", False), ("4th quarter", False),
])
def test_default_picks_numeric_for_numbers(answer, numeric):
    assert is_numeric_answer(answer) is numeric


HELMET = item("Where is the helmet? (A) bottom left (B) bottom right (C) top left", ("B",))


@pytest.mark.parametrize("prediction, expected", [
    ("B", 1.0), ("b", 1.0), ("(B)", 1.0), ("The answer is B.", 1.0), ("Answer: (B)", 1.0), ("B. bottom right", 1.0),
    ("bottom right", 1.0), ("It is at the bottom right of the picture.", 1.0), ("Option B", 1.0),
    ("A", 0.0), ("bottom left", 0.0), ("(A) bottom left", 0.0), ("a helmet", 0.0), ("top", 0.0),
])
def test_choice_letter_or_text(prediction, expected):
    assert ChoiceScorer().score(prediction, HELMET.answers, HELMET) == expected


def test_choice_answer_given_as_text_and_explicit_choices():
    it = item("Where is it?", ("bottom right",), choices=("bottom left", "bottom right"))
    assert ChoiceScorer().score("B", it.answers, it) == 1.0
    assert ChoiceScorer().score("A", it.answers, it) == 0.0
    assert ChoiceScorer().score("the bottom right corner", it.answers, it) == 1.0


@pytest.mark.parametrize("question, options", [
    ("When? (A) at midday (B) at dusk or dawn (C) underwater",
     {"A": "at midday", "B": "at dusk or dawn", "C": "underwater"}),
    ("Is this photo (A) in colour or (B) black and white?", {"A": "in colour", "B": "black and white"}),
    ("Pick one:\nA. red\nB) green\nC: blue", {"A": "red", "B": "green", "C": "blue"}),
    ("No options (A) here", {}),
])
def test_parse_options(question, options):
    assert parse_options(question) == options


@pytest.mark.parametrize("reply, value", [
    ("0.7", 0.7), ("Score: 0.7", 0.7), ("Correctness: 1.0", 1.0), (" 0.0\n", 0.0), ("1", 1.0),
    ("Correctness score is 0.4 because the answer misses one part", 0.4), ("7/10", 0.7), ("70%", 0.7),
    ("The score (out of 1) is 0.9", 0.9), ("8 out of 10", 0.8), ("I would rate this highly", None), ("10", None),
    ("", None), ("-0.5", None), ("Score: N/A", None),
])
def test_parse_judge_score(reply, value):
    got = parse_judge_score(reply)
    assert got == (None if value is None else pytest.approx(value))


def test_judge_scores_with_any_llm_backend():
    llm = ScriptedLLM(["Score: 0.7"])
    judge = JudgeScorer(llm)
    it = item("What is x?", ("-1 <AND> -5", "minus one and minus five"))
    assert judge.score("x = -1 | or -5\nmaybe", it.answers, it) == pytest.approx(0.7)
    (request,) = llm.requests
    assert [m.role for m in request.messages] == ["user"]
    prompt = request.messages[0].content
    assert prompt.rstrip().endswith("What is x? | -1 <AND> -5 <OR> minus one and minus five | x = -1 / or -5 maybe |")
    assert "Question | Ground truth | Prediction | Correctness" in prompt
    assert judge.score("", it.answers, it) == 0.0 and len(llm.requests) == 1  # no call for an empty prediction


def test_judge_retries_garbage_then_raises():
    llm = ScriptedLLM(["I cannot say", "0.4"])
    assert JudgeScorer(llm).score("x", ["y"], item()) == pytest.approx(0.4)
    garbage = ScriptedLLM(["no idea", "still no idea", "10 out of ten?"])
    with pytest.raises(ScoreError, match="no score between 0 and 1"):
        JudgeScorer(garbage, retries=2).score("x", ["y"], item())
    assert len(garbage.requests) == 3


def test_get_scorer_names(tmp_path):
    assert isinstance(get_scorer(None), DefaultScorer)
    assert get_scorer("numeric:0.05").rel_tol == 0.05
    script = tmp_path / "judge.json"
    script.write_text(json.dumps(["0.3"]))
    judge = get_scorer(f"judge:scripted:{script}")
    assert judge is get_scorer(f"judge:scripted:{script}")  # one judge per spec
    assert judge.score("a", ["b"], item()) == pytest.approx(0.3)
    for bad, fragment in [("foo", "Unknown scorer 'foo'"), ("numeric:abc", "relative tolerance"),
                          ("exact:1", "takes no ':' argument")]:
        with pytest.raises(ConfigError, match=fragment):
            get_scorer(bad)


SCORERS = [ExactScorer(), ContainsScorer(), NumericScorer(), DefaultScorer(), ChoiceScorer()]


@settings(max_examples=150, deadline=None)
@given(prediction=st.text(max_size=40), answer=st.text(min_size=1, max_size=20))
def test_scores_stay_in_unit_interval_and_normalize_is_idempotent(prediction, answer):
    it = item(f"Pick (A) {answer} (B) other", (answer,))
    for scorer in SCORERS:
        assert 0.0 <= scorer.score(prediction, [answer], it) <= 1.0
    assert normalize(normalize(prediction)) == normalize(prediction)
