"""The grounding check: which facts of an answer the experts saw (mmreact.grounding).

A table of answers against fixed evidence, each with the verdict expected for every fact it holds,
per fact kind, with near misses and OCR's usual confusions: a supported fact marked unsupported,
or the reverse, or a fact missed or invented, fails the table.
"""

from __future__ import annotations

import pytest

from mmreact.grounding import (
    Evidence,
    answer_phrases,
    evidence_from_artifact,
    evidence_from_calls,
    ground,
    is_yes_no,
    question_options,
)
from mmreact.trace import CallRecord

OCR = ["CORNER CAFE", "12 Main Street", "Latte 3.50", "Croissant 2.75", "TOTAL 7.75", "Doors open 7:30 PM",
       "Tickets $12", "GATE B12 dep 14.35", "Flight KL 1234 to Amsterdam", "Issued 2024-03-05", "Green Leaf",
       "Grocery", "1O.50 Water", "THE QUIET RIVER"]
TEXT = [Evidence(text=t, kind="text", call="ocr(image_1)", image="image_1", line=i, box=(0, 10 * i, 100, 10 * i + 9))
        for i, t in enumerate(OCR)]
#: a time without AM/PM and a price with a decimal comma, as OCR reads European receipts and signs
BARE = [Evidence(text="Last entry 8:15", kind="text", call="ocr(image_3)", image="image_3", line=0),
        Evidence(text="Espresso 2,40", kind="text", call="ocr(image_3)", image="image_3", line=1)]
VISUAL = [Evidence(text="a dog sitting on a couch", kind="caption", call="caption(image_2)", image="image_2"),
          Evidence(text="dog", kind="object", call="detect(image_2)", image="image_2", line=0, box=(1, 2, 3, 4)),
          Evidence(text="2 cups", kind="count", call="detect(image_2)", image="image_2")]

# (answer, evidence, {fact text: supported})
CASES: list[tuple[str, list[Evidence], dict[str, bool]]] = [
    # numbers and amounts: by value, a trailing zero or currency sign changes nothing
    ("7.75", TEXT, {"7.75": True}),
    ("The total is $7.75.", TEXT, {"$7.75": True}),
    ("7.750", TEXT, {"7.750": True}),
    ("7.15", TEXT, {"7.15": False}),                       # near miss: one digit
    ("77.5", TEXT, {"77.5": False}),
    ("Tickets cost $12.00", TEXT, {"$12.00": True}),
    ("Tickets cost $25", TEXT, {"$25": False}),
    ("10.50", TEXT, {"10.50": True}),                      # OCR wrote 1O.50 (letter O)
    ("It costs 3.5", TEXT, {"3.5": True}),
    ("four", TEXT, {"four": False}),
    # times: ':' vs '.', AM/PM vs 24 h
    ("7:30 PM", TEXT, {"7:30 PM": True}),
    ("19:30", TEXT, {"19:30": True}),
    ("7:30 AM", TEXT, {"7:30 AM": False}),
    ("9:00 PM", TEXT, {"9:00 PM": False}),
    ("14:35", TEXT, {"14:35": True}),                      # OCR read 14.35
    ("14:53", TEXT, {"14:53": False}),
    ("8:15 PM", BARE, {"8:15 PM": True}),                  # "8:15" may be morning or evening
    ("20:15", BARE, {"20:15": True}),
    ("8:15 AM", BARE, {"8:15 AM": True}),
    ("9:15 PM", BARE, {"9:15 PM": False}),
    # a decimal comma is a decimal point
    ("2.40", BARE, {"2.40": True}),
    ("It costs 2.4", BARE, {"2.4": True}),
    ("2.04", BARE, {"2.04": False}),
    # dates
    ("5 March 2024", TEXT, {"5 March 2024": True}),
    ("March 5, 2024", TEXT, {"March 5, 2024": True}),
    ("05/03/2024", TEXT, {"05/03/2024": True}),
    ("March 6, 2024", TEXT, {"March 6, 2024": False}),
    ("5 March 2023", TEXT, {"5 March 2023": False}),
    # codes: case and '0'/'O', '1'/'l' folded; split tokens joined
    ("Gate B12", TEXT, {"B12": True}),
    ("Gate B13", TEXT, {"B13": False}),
    ("KL1234", TEXT, {"KL1234": True}),
    ("KL-1234", TEXT, {"KL-1234": True}),
    ("KL1243", TEXT, {"KL1243": False}),
    # names and quotes
    ("Corner Cafe", TEXT, {"Corner Cafe": True}),
    ("It goes to Amsterdam.", TEXT, {"Amsterdam": True}),
    ("It goes to Berlin.", TEXT, {"Berlin": False}),
    ("The shop is Green Leaf Grocery.", TEXT, {"Green Leaf Grocery": True}),   # across two OCR lines
    ("The book is called The Quiet River.", TEXT, {"Quiet River": True}),
    ("The book is called The Loud River.", TEXT, {"Loud River": False}),
    ('The sign says "Doors open".', TEXT, {"Doors open": True}),
    ('The sign says "Doors closed".', TEXT, {"Doors closed": False}),
    ("Latte and Croissant", TEXT, {"Latte and Croissant": True}),
    # format text copied from an observation is not a fact the experts saw
    ("The express goes to the city of [x1, y1, x2, y2].", TEXT, {"x1": False, "y1": False, "x2": False, "y2": False}),
    # computed from the evidence in one step
    ("Together they cost 6.25.", TEXT, {"6.25": True}),
    ("Together they cost 6.35.", TEXT, {"6.35": False}),
    ("Berlin", TEXT, {"Berlin": False}),
    # nothing to check
    ("yes", TEXT, {}),
    ("the second", TEXT, {}),
    # object words: checked only when an expert saw objects
    ("A puppy on a sofa.", VISUAL, {"puppy": True, "sofa": True}),
    ("A cat on a couch.", VISUAL, {"cat": False, "couch": True}),
    ("There is no cat.", VISUAL, {}),
    ("There are 2 cups.", VISUAL, {"2": True, "cups": True}),
    ("There are 3 cups.", VISUAL, {"3": False, "cups": True}),
    ("A cat is on the receipt.", TEXT, {}),                 # only OCR ran: object words not checked
]


@pytest.mark.parametrize(("answer", "evidence", "expected"), CASES, ids=[c[0][:40] for c in CASES])
def test_each_fact_gets_the_expected_verdict(answer: str, evidence: list[Evidence], expected: dict[str, bool]) -> None:
    check = ground(answer, evidence, question="How much do a latte and a croissant cost?")
    got = {f.text: f.supported for f in check.facts}
    assert got == expected
    for f in check.facts:
        assert answer[f.start:f.end] == f.text
        assert (f.evidence is not None) == f.supported
    assert check.supported == all(expected.values())


def test_support_names_the_call_the_line_and_the_box() -> None:
    check = ground("The total is 7.75", TEXT)
    (fact,) = check.facts
    assert fact.evidence is not None
    assert (fact.evidence.call, fact.evidence.line, fact.evidence.text) == ("ocr(image_1)", 4, "TOTAL 7.75")
    assert fact.evidence.box == (0, 40, 100, 49)


def test_notes_say_how_the_evidence_wrote_a_tolerated_fact() -> None:
    (time,) = ground("14:35", TEXT).facts
    assert time.note == "read as '14.35'"
    (total,) = ground("6.25", TEXT, question="How much do a latte and a croissant cost?").facts
    assert total.note == "computed: 3.50 + 2.75"


def test_a_question_number_is_an_operand() -> None:
    (fact,) = ground("9.00", TEXT, question="How much do two croissants and a latte cost together?").facts
    assert fact.supported and fact.note == "computed: 2 x 2.75 + 3.50"
    assert not ground("9.00", TEXT, question="What does the sign say?").supported  # no arithmetic asked


def test_computed_support_needs_a_question_that_asks_for_arithmetic() -> None:
    # The issue's own case: "$25" is 30 - 5 (from "7:30" and a date), but nobody asked to compute.
    check = ground("The doors open at 9:00 PM and tickets cost $25", TEXT, question="What does the poster say?")
    assert [(f.text, f.supported) for f in check.facts] == [("9:00 PM", False), ("$25", False)]


def test_small_whole_numbers_are_never_computed() -> None:
    assert not ground("There are 4 of them.", TEXT, question="How many in total?").supported  # 7.75 - 3.75


def test_summary_and_json_round_trip() -> None:
    from mmreact.grounding import Grounding

    check = ground("The doors open at 9:00 PM and tickets cost $12", TEXT, mode="constrain")
    assert check.summary() == "1 of 2 facts unsupported: '9:00 PM'"
    assert Grounding.model_validate_json(check.model_dump_json()) == check


# -- evidence --------------------------------------------------------------------------------
def test_evidence_is_content_never_format_or_coordinates() -> None:
    art = {"lines": [{"text": "TOTAL 7.75", "box": [1, 2, 3, 4], "confidence": 0.9}]}
    (e,) = evidence_from_artifact(art, "ocr(image_1)", "image_1")
    assert (e.text, e.kind, e.box, e.line) == ("TOTAL 7.75", "text", (1.0, 2.0, 3.0, 4.0), 0)
    objs = evidence_from_artifact({"objects": [{"label": "person", "box": [0, 0, 1, 1]},
                                               {"label": "person", "box": [1, 1, 2, 2]}]})
    assert [(e.kind, e.text) for e in objs] == [("object", "person"), ("object", "person"), ("count", "2 people")]
    text = "Image size: 320x240 pixels\nMain colours: green 95%, white 3% [1, 2, 3, 4]\nNo text found."
    (other,) = evidence_from_artifact({"share": 0.5}, text=text)
    assert other.text == "green 95%, white 3%"


def test_failed_calls_are_no_evidence() -> None:
    ok = CallRecord(tool="ocr", call="ocr(image_1)", args={"image": "image_1"}, text="...",
                    artifact={"lines": [{"text": "STOP", "box": [0, 0, 5, 5]}]})
    bad = CallRecord(tool="detect", call="detect(image_1)", args={"image": "image_1"}, text="Error: no weights",
                     error=True)
    (e,) = evidence_from_calls([ok, bad])
    assert (e.text, e.image) == ("STOP", "image_1")


# -- what a grounded answer may be -------------------------------------------------------------
def test_answer_phrases_split_lists_and_add_the_questions_options() -> None:
    ev = [Evidence(text="green 95%, white 3%", kind="other")]
    assert answer_phrases(ev, "Is it green or white?") == [("green", "95%"), ("white", "3%"), ("green",), ("white",),
                                                            ("yes",), ("no",)]
    assert answer_phrases([], "What is the total?") == [("The", "tools", "found", "nothing", "that", "answers",
                                                         "this.")]


@pytest.mark.parametrize(("question", "options"), [
    ("Where is it? (A) bottom left (B) bottom right (C) top left", ["A", "bottom left", "B", "bottom right", "C",
                                                                     "top left"]),
    ("Is the writing in this image handwritten or printed?", ["handwritten", "printed"]),
    ("Which of the two images shows an animal, the first or the second?", ["first", "second"]),
    ("Is the spoon to the left or to the right of the cup?", ["left", "right"]),
    ("What is the total?", []),
])
def test_question_options(question: str, options: list[str]) -> None:
    assert question_options(question) == options


@pytest.mark.parametrize(("question", "yes_no"), [
    ("Is it red?", True), ("According to the sign, may you park here? (A) yes (B) no", True),
    ("Does it point left?", True), ("What is the title?", False), ("How many coins are there?", False),
])
def test_yes_no_questions(question: str, yes_no: bool) -> None:
    assert is_yes_no(question) is yes_no


# -- relevance ---------------------------------------------------------------------------------
def test_relevance_ranks_the_line_that_answers_the_question_first() -> None:
    from mmreact.grounding import relevance

    lines = ["CORNER CAFE", "Croissant 2.75", "TOTAL 7.75", "Thank you"]
    scores = relevance("How much was the croissant?", lines)
    assert scores is not None and len(scores) == 4 and max(scores) == scores[1]
    assert relevance("q", []) == []


def test_without_the_embedder_relevance_is_none(monkeypatch) -> None:
    from mmreact.grounding import _relevance

    monkeypatch.setattr(_relevance, "model_dir", lambda: None)
    assert _relevance.relevance("How much?", ["a", "b"]) is None


def test_ranking_weighs_likelihood_and_relevance() -> None:
    from mmreact.llms.grammar import RELEVANCE_WEIGHT, rank_answers

    # the model prefers the first by 2 nats; the second is far more relevant: relevance wins
    assert rank_answers(["a", "b"], [-1.0, -3.0], [0.0, 3.0 / RELEVANCE_WEIGHT]) == 1
    # equally relevant candidates: the model decides
    assert rank_answers(["a", "b"], [-1.0, -3.0], [0.5, 0.5]) == 0
    assert rank_answers(["a", "b"], [-1.0, -3.0], None) == 0


def test_an_arithmetic_questions_own_numbers_are_given_not_claimed() -> None:
    """"Two tickets would cost $24" restates the question's "two": supported (from the question);
    a question that asks for no arithmetic lends its numbers nothing."""
    check = ground("Two tickets would cost $24.", TEXT, question="How much would two tickets cost together?")
    assert [(f.text, f.supported, f.note) for f in check.facts] == [
        ("Two", True, "from the question"), ("$24", True, "computed: 12 x 2")]
    leading = ground("Yes, tickets cost $25.", TEXT, question="Do tickets cost $25?")
    assert [(f.text, f.supported) for f in leading.facts] == [("$25", False)]


@pytest.mark.parametrize(("question", "place"), [
    ("What is the title at the top of this page?", "top"),
    ("What is the name of the shop?", "top"),
    ("What is the heading?", "top"),
    ("Which function is called in the line of code at the bottom?", "bottom"),
    ("What does the last line say?", "bottom"),
    ("What is the total on this receipt?", None),
    ("How much is a latte?", None),
    ("What is this person's job title?", None),
])
def test_questions_that_ask_for_a_documents_top_or_bottom(question: str, place: str | None) -> None:
    from mmreact.grounding import asks_for_place

    assert asks_for_place(question) == place


def test_the_layout_prior_favours_the_first_or_last_line_of_each_ocr_call() -> None:
    """A receipt prints its shop's name first and thanks the customer last: a question about the
    shop's name gains on the first line (not on "Thank you for shopping", which shares its words)."""
    from mmreact.grounding import LAYOUT_BONUS, answer_phrases, layout_prior

    lines = ["GREEN LEAF GROCERY", "Bread 2.45", "Thank you for shopping!"]
    ev = [Evidence(text=t, kind="text", call="ocr(image_1)", image="image_1", line=i) for i, t in enumerate(lines)]
    ev += [Evidence(text="MENU", kind="text", call="ocr(image_2)", image="image_2", line=0),
           Evidence(text="a shop front", kind="caption", call="caption(image_1)", image="image_1")]
    phrases = answer_phrases(ev, "What is the name of the shop?")
    prior = dict(zip(phrases, layout_prior(ev, phrases, "What is the name of the shop?"), strict=True))
    assert {p for p, b in prior.items() if b} == {("GREEN", "LEAF", "GROCERY"), ("MENU",)}
    assert set(prior.values()) == {0.0, LAYOUT_BONUS}
    bottom = dict(zip(phrases, layout_prior(ev, phrases, "What is written at the bottom?"), strict=True))
    assert {p for p, b in bottom.items() if b} == {("Thank", "you", "for", "shopping!"), ("MENU",)}
    assert not any(layout_prior(ev, phrases, "How much is the bread?"))
