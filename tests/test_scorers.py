"""Scorers on tricky cases: units, case, punctuation, number words, options, judge replies, and a
table of adversarial predictions (wrong answers dressed up to pass) that every scorer must fail."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmreact import ScriptedLLM
from mmreact.errors import ConfigError
from mmreact.eval.dataset import EvalItem
from mmreact.eval.judge import SCORE_FORMAT
from mmreact.eval.scorers import (
    MAX_WORDS,
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
    ("Thought: 1 of the 2 parts is right\nFinal Answer: 0.5", 0.5),  # the last line, not the first number
    ("0.5\nThe prediction has 1 of 2 parts", None), ("Reasoning: fine.\n\n**0.8**", 0.8),
    ("Describe the picture. | A cat. | A dog. | 0.0", 0.0), ("| 0.3 |", 0.3), ("Score: 1 of 2", None),
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
    with pytest.raises(ScoreError, match="last line held no score between 0 and 1: '10 out of ten\\?'"):
        JudgeScorer(garbage, retries=2).score("x", ["y"], item())
    assert len(garbage.requests) == 3


def test_judge_is_a_plain_text_request_in_the_score_language():
    llm = ScriptedLLM(["0.9"])
    JudgeScorer(llm).score("a cat", ["cat"], item())
    (request,) = llm.requests
    assert request.kind == "text" and request.text_format is SCORE_FORMAT and not request.tools
    assert [s for s in ("0.0", "0.5", "1.0", "0.7") if SCORE_FORMAT.accepts(s)] == ["0.0", "0.5", "1.0", "0.7"]
    for bad in ("1", "0.55", "Score: 0.5", "Thought: fine\nFinal Answer: 0.5", "1.1"):
        assert not SCORE_FORMAT.accepts(bad), bad


def test_a_bare_judge_is_refused_with_one_sentence():
    for name in ("judge", "judge:", " judge: "):
        with pytest.raises(ConfigError, match=r"^The judge scorer needs a judge model: write judge:LLMSPEC") as info:
            get_scorer(name)
        assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="needs a judge model"):
        JudgeScorer("")


@pytest.mark.slow
def test_judge_with_the_embedded_local_model_replies_with_a_score_only():
    """llama.cpp enforces the score language: SmolLM2-135M can only write one of the eleven scores."""
    judge = get_scorer("judge:default")
    it = item("How many coins are there?", ("24",))
    value = judge.score("There are 24 coins.", it.answers, it)
    assert f"{value:.1f}" in ("0.0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1.0")


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


# -- the adversarial table ------------------------------------------------------------------------
SIDE = item("Is the spoon to the left or to the right of the cup?", ("right",), choices=("left", "right"))
HAND = item("Is the writing in this image handwritten or printed?", ("handwritten", "hand-written", "by hand"),
            choices=("handwritten", "printed"))
WHICH = item("Which of the two images shows an animal, the first or the second?", ("second", "image_2", "image 2"),
             choices=("first", "second"))
PARK = item("According to the sign, may you park here at noon on a Saturday? (A) yes (B) no", ("A",))
CAT_YES = item("Is there a cat?", ("yes",))
CORNER = item("Where is the cup?", ("top left",), choices=("left", "top left", "right"))
SIGN = item("Until what time of day is parking forbidden?", ("6 PM", "6pm", "6 p.m.", "18:00"))
LONG_FILLER = "word " * (MAX_WORDS + 50)

#: (scorer, prediction, item, expected). Answers come from the item; ``item()`` rows write them inline.
ADVERSARIAL = [
    # the wrong answers of the issue that once scored 1.0
    ("default", "no, the writing is not handwritten or printed. The image is printed. It shows text", HAND, 0.0),
    ("default", "8 AM 6 PM [65, 253, 335, 295]", SIGN, 0.0),
    ("default", "to the left or to the right", SIDE, 0.0),
    ("default", "the first or the second", WHICH, 0.0),
    ("default", "it is not a cat", item(answers=("cat",)), 0.0),
    # option echoes and hedges
    ("default", "to the left or to the right", item(answers=("right",)), 0.0),  # no choices: still a hedge
    ("default", "the first or the second", item(answers=("second",)), 0.0),
    ("contains", "Either left or right.", item(answers=("right",)), 0.0),
    ("default", "right", SIDE, 1.0),
    ("default", "The spoon is to the right of the cup.", SIDE, 1.0),
    ("default", "It is on the right, not the left.", SIDE, 1.0),
    ("default", "left", SIDE, 0.0),
    ("default", "Left and right", SIDE, 0.0),
    ("exact", "left right", SIDE, 0.0),
    ("default", "The writing is handwritten.", HAND, 1.0),
    ("default", "hand-written", HAND, 1.0),
    ("default", "It is printed, not handwritten.", HAND, 0.0),
    ("default", "image 2", WHICH, 1.0),
    ("default", "The second one; the first shows coffee.", WHICH, 0.0),
    ("choice", "(A) bottom left or (B) bottom right", HELMET, 0.0),
    ("choice", "A or B", HELMET, 0.0),
    ("choice", "The answer is B, bottom left", HELMET, 0.0),
    ("choice", "Answer: B. bottom right", HELMET, 1.0),
    ("choice", "It is not at the bottom left; it is at the bottom right.", HELMET, 1.0),
    ("choice", "bottom right or top left", HELMET, 0.0),
    ("choice", "top left", CORNER, 1.0),  # "left" inside "top left" is not a second option
    ("choice", "left", CORNER, 0.0),
    ("default", "top left", CORNER, 1.0),
    # yes / no
    ("choice", "No, you may not park at noon on Saturday.", PARK, 0.0),
    ("choice", "Yes, you may.", PARK, 1.0),
    ("choice", "Yes or no, hard to say.", PARK, 0.0),
    ("default", "Yes, there is no dog but there is a cat.", CAT_YES, 1.0),
    ("default", "No.", CAT_YES, 0.0),
    ("default", "yes and no", CAT_YES, 0.0),
    ("contains", "I cannot say yes", CAT_YES, 0.0),
    # negation
    ("contains", "It is not a cat.", item(answers=("cat",)), 0.0),
    ("contains", "There is no cat in the picture.", item(answers=("cat",)), 0.0),
    ("contains", "This isn't a cat, it's a dog.", item(answers=("cat",)), 0.0),
    ("contains", "It's never been a cat", item(answers=("cat",)), 0.0),
    ("contains", "It's a cat, not a dog.", item(answers=("cat",)), 1.0),
    ("contains", "Not a dog but a cat", item(answers=("cat",)), 1.0),
    ("contains", "No doubt it is a cat", item(answers=("cat",)), 1.0),
    ("contains", "The cat is without a collar", item(answers=("collar",)), 0.0),
    ("exact", "not cat", item(answers=("cat",)), 0.0),
    ("numeric", "There are not 24 coins but 23.", item(answers=("24",)), 0.0),
    ("numeric", "Not 23: there are 24 coins.", item(answers=("24",)), 1.0),
    ("default", "neither red nor green", item(answers=("green",)), 0.0),
    # numbers inside longer numbers
    ("numeric", "117.43", item(answers=("17.43",)), 0.0),
    ("numeric", "17.430", item(answers=("17.43",)), 1.0),
    ("contains", "The total is 117.43", item(answers=("17.43",)), 0.0),
    ("default", "The total is 17.43.", item(answers=("17.43",)), 1.0),
    ("default", "1743", item(answers=("17.43",)), 0.0),
    ("numeric", "2024", item(answers=("24",)), 0.0),
    ("default", "Q44", item(answers=("Q4",)), 0.0),
    ("numeric", "24 or 25", item(answers=("24",)), 0.0),
    ("numeric", "between 20 and 30", item(answers=("24",)), 0.0),
    ("exact", "5", item(answers=("-5",)), 0.0),
    # units and currency
    ("numeric", "40 km/h", item(answers=("40 mph",)), 0.0),
    ("numeric", "40 miles per hour", item(answers=("40 mph",)), 1.0),
    ("numeric", "7.75 euros", item(answers=("$7.75",)), 0.0),
    ("numeric", "7.75 cents", item(answers=("$7.75",)), 0.0),
    ("numeric", "USD 7.75", item(answers=("$7.75",)), 1.0),
    ("numeric", "$7.75", item(answers=("7.75",)), 1.0),
    ("numeric", "45%", item(answers=("0.45",)), 1.0),
    ("numeric", "3 million", item(answers=("3000000",)), 1.0),
    ("numeric", "20 °C", item(answers=("20 °F",)), 0.0),
    ("default", "It costs $1,234.50", item(answers=("1234.5",)), 1.0),
    ("default", "5 kg", item(answers=("5 lb",)), 0.0),
    ("exact", "6:00 p.m.", item(answers=("6 PM",)), 1.0),
    ("contains", "Parking is forbidden until 6:00 PM.", SIGN, 1.0),
    ("contains", "Parking is forbidden until 8 AM or 6 PM.", SIGN, 0.0),
    # MM-Vet's <AND> and <OR>
    ("numeric", "x = -1 or x = -5", item(answers=("-1 <AND> -5",)), 1.0),
    ("numeric", "x = -1", item(answers=("-1 <AND> -5",)), 0.5),
    ("contains", "It is red and blue", item(answers=("red <AND> blue <AND> green",)), 2 / 3),
    ("contains", "not red, but blue", item(answers=("red <AND> blue",)), 0.5),
    ("default", "a puppy", item(answers=("dog<OR>puppy",)), 1.0),
    ("default", "a cat", item(answers=("dog<OR>puppy",)), 0.0),
    ("exact", "Dog.", item(answers=("dog <OR> puppy",)), 1.0),
    # empty and very long predictions
    ("default", "", item(answers=("cat",)), 0.0),
    ("contains", "   \n ", item(answers=("cat",)), 0.0),
    ("contains", LONG_FILLER + "cat", item(answers=("cat",)), 0.0),
    ("default", LONG_FILLER + "It is handwritten.", HAND, 0.0),
    ("choice", LONG_FILLER + "bottom right", HELMET, 0.0),
    ("choice", LONG_FILLER + "Answer: (B)", HELMET, 1.0),  # an explicit letter is read at any length
    ("numeric", "filler " * 2000 + "so the total is 24", item(answers=("24",)), 1.0),
    ("numeric", " ".join(str(i) for i in range(1000)), item(answers=("24",)), 0.0),
    ("exact", "cat " * 5000, item(answers=("cat",)), 0.0),
    # observation lines copied whole
    ("default", "TOTAL 17.43 [38, 226, 444, 258]", item(answers=("17.43",)), 0.0),
    ("contains", "a cat: [10, 20, 30, 40]", item(answers=("cat",)), 0.0),
    ("numeric", "cat 0.91 [1, 2, 3, 4]", item(answers=("0.91",)), 0.0),
    ("default", "The box is [10, 20, 30, 40]", item(answers=("[10, 20, 30, 40]",)), 1.0),  # a box asked for
]


@pytest.mark.parametrize("scorer, prediction, it, expected", ADVERSARIAL,
                         ids=[f"{s}-{k}" for k, (s, *_rest) in enumerate(ADVERSARIAL)])
def test_adversarial_predictions(scorer, prediction, it, expected):
    assert get_scorer(scorer).score(prediction, it.answers, it) == pytest.approx(expected)


#: (judge reply, score; None: the judge failed). Whatever the prediction, only the final line counts.
JUDGE_REPLIES = [
    ("0.7", 0.7),
    ("Thought: 1 of the 2 parts is right\nFinal Answer: 0.5", 0.5),
    ("The prediction names 1 of 2 elements.\n0.0", 0.0),
    ("Score: 1.0", 1.0),
    ("What is x? | -1 <AND> -5 | x = -1 | 0.5", 0.5),
    ("0.5\nThe prediction has 1 of 2 parts", None),
    ("10", None),
    ("1 out of 1 would be too much; 0.2", None),
    ("7/10", 0.7),
]


@pytest.mark.parametrize("reply, expected", JUDGE_REPLIES)
def test_adversarial_judge_replies(reply, expected):
    judge = JudgeScorer(ScriptedLLM([reply], repeat_last=True), retries=1)
    it = item("What is x in the equation?", ("-1 <AND> -5",))
    if expected is None:
        with pytest.raises(ScoreError):
            judge.score("x = -1", it.answers, it)
    else:
        assert judge.score("x = -1", it.answers, it) == pytest.approx(expected)


def test_the_adversarial_table_covers_every_scorer_and_case():
    used = {s for s, *_ in ADVERSARIAL}
    assert used == {"default", "exact", "contains", "numeric", "choice"} and len(ADVERSARIAL) + len(JUDGE_REPLIES) >= 60
    wrong = [row for row in ADVERSARIAL if row[3] == 0.0]
    assert len(wrong) >= 40
