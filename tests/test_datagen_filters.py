"""mmreact.datagen's pure parts: reply formats and parsers, context building, the object
vocabulary, every quality filter (table-driven), and the prompt folders."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmreact.datagen.context import Context, ContextObject, ContextOptions, from_artifacts, normalise_box
from mmreact.datagen.filters import (
    FILTERS,
    apply_filters,
    check_pair,
    context_facts,
    count_mismatch,
    hallucination,
    leakage,
    mark_duplicates,
    mark_generic,
    refusal,
    repetition,
    structure,
)
from mmreact.datagen._formats import (
    QA,
    block_format,
    json_format,
    paragraph_format,
    parse_blocks,
    parse_json,
    parse_paragraph,
    render_blocks,
    render_json,
)
from mmreact.datagen.prompts import KINDS, example_pairs, load_folder, load_prompts, reply_spec
from mmreact.datagen.records import Reason, Record
from mmreact.grounding.vocab import default_vocabulary, plural, tokenize
from mmreact.errors import ConfigError

VOCAB = default_vocabulary()

# -- formats -----------------------------------------------------------------------------------------
# One-line texts that could be questions or answers: no line break, not starting with a space or "=".
line_text = st.text(st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1, max_size=60).map(
    lambda s: " ".join(s.split())).filter(lambda s: s and s[0] != "=" and not s.lower().startswith(("question",
                                                                                                  "answer")))
pairs_st = st.lists(st.builds(QA, line_text, line_text), min_size=1, max_size=5)


@settings(max_examples=150, deadline=None)
@given(pairs_st)
def test_blocks_render_parse_round_trip_and_the_grammar_accepts_them(pairs):
    text = render_blocks(pairs)
    parsed = parse_blocks(text)
    assert parsed.ok and list(parsed.pairs) == pairs
    assert block_format(1, 5, question_chars=60, answer_chars=60).accepts(text)


@settings(max_examples=150, deadline=None)
@given(pairs_st)
def test_json_render_parse_round_trip_and_the_grammar_accepts_them(pairs):
    text = render_json(pairs)
    parsed = parse_json(text)
    assert parsed.ok and list(parsed.pairs) == pairs
    fmt = json_format(1, 5, question_chars=400, answer_chars=400)
    if all('"' not in p.question + p.answer and "\\" not in p.question + p.answer for p in pairs):
        assert fmt.accepts(text)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_parsers_never_raise_on_any_text(text):
    for parsed in (parse_blocks(text), parse_json(text)):
        assert parsed.ok == (not parsed.problems and bool(parsed.pairs))
        assert all(p.question and p.answer for p in parsed.pairs)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_every_reply_the_block_grammar_accepts_parses(text):
    fmt = block_format(1, 3, question_chars=40, answer_chars=40)
    if fmt.accepts(text):
        assert parse_blocks(text).ok


def test_block_grammar_bounds():
    fmt = block_format(1, 2, question_chars=12, answer_chars=10)
    one = "Question:\nWhat is it?\n===\nAnswer:\nA red cup."
    assert fmt.accepts(one) and fmt.accepts(one + "\n===\n" + one)
    assert not fmt.accepts(one + "\n===\n" + one + "\n===\n" + one)  # more than max_pairs
    assert not fmt.accepts("Question:\nWhat colour is it?\n===\nAnswer:\nRed.")  # question too long
    assert not fmt.accepts("Sure! " + one)  # nothing outside the blocks
    assert not fmt.accepts("Question:\nWhat?\n===\nAnswer:\n")  # empty answer
    assert fmt.accepts_prefix("Question:\nWha") and not fmt.accepts_prefix("Q:")


@pytest.mark.parametrize("text, pairs, problem", [
    ("Question:\nA?\n===\nAnswer:\nB.", [("A?", "B.")], None),
    ("Question: A?\n===\nAnswer: B.\n===\n", [("A?", "B.")], None),  # text on the head line, trailing ===
    ("question:\r\nA?\r\n ===\r\nANSWER:\r\nB\r\nand more.", [("A?", "B and more.")], None),
    ("Question:\nA?\nAnswer:\nB.", [("A?", "B.")], None),  # no separator between the two heads
    ("Sure, here it is.\n===\nQuestion:\nA?\n===\nAnswer:\nB.", [("A?", "B.")], "starts with neither"),
    ("Question:\nA?\n===\nAnswer:\nB.\n===\nQuestion:\nC?", [("A?", "B.")], "cut off"),
    ("Answer:\nB.", [], "no question before"),
    ("Question:\nA?\n===\nQuestion:\nC?\n===\nAnswer:\nD.", [("C?", "D.")], "question follows a question"),
    ("Question:\nA?\n===\n===\nAnswer:\nB.", [("A?", "B.")], "empty"),
    ("", [], "no question/answer block"),
])
def test_block_parser_cases(text, pairs, problem):
    parsed = parse_blocks(text)
    assert [(p.question, p.answer) for p in parsed.pairs] == pairs
    if problem is None:
        assert parsed.ok, parsed.problems
    else:
        assert any(problem in p for p in parsed.problems), parsed.problems


@pytest.mark.parametrize("text, n, problem", [
    ('```json\n[{"question": "A?", "answer": "B."}]\n```', 1, None),
    ('{"question": "A?", "answer": "B."}', 1, None),
    ('[{"question": "A?", "answer": 3}]', 0, "string"),
    ('[{"question": "A?", "answer": "B."}, 7]', 1, "item 2"),
    ('{"q": 1}', 0, "item 1"),
    ("[1, 2", 0, "not valid JSON"),
    ('"just text"', 0, "not a list"),
])
def test_json_parser_cases(text, n, problem):
    parsed = parse_json(text)
    assert len(parsed.pairs) == n
    assert (problem is None) == (not parsed.problems)
    if problem:
        assert any(problem in p for p in parsed.problems)


def test_paragraph_format_and_parser():
    fmt = paragraph_format(max_chars=100, max_paragraphs=2, min_chars=5)
    assert fmt.accepts("A red cup on a table.") and fmt.accepts("First part.\n\nSecond part.")
    assert not fmt.accepts("Tiny") and not fmt.accepts("One.\n\nTwo.\n\nThree.") and not fmt.accepts("x" * 101)
    parsed = parse_paragraph("  A red\ncup.\n\n\nIt is hot.  ", "Describe it.")
    assert parsed.ok and parsed.pairs == (QA("Describe it.", "A red cup.\n\nIt is hot."),)
    assert not parse_paragraph("   ", "Describe it.").ok


@pytest.mark.parametrize("kind", KINDS)
def test_reply_spec_budget_covers_the_longest_reply(kind):
    spec = reply_spec(kind)
    assert spec.text_format.max_chars is not None and spec.max_tokens > spec.text_format.max_chars
    assert spec.blocks == (kind != "detail")
    with pytest.raises(ConfigError, match="reply format"):
        reply_spec("conversation", "xml")


# -- context -------------------------------------------------------------------------------------
# Artifacts in the shapes the built-in experts write (see mmreact/experts/*.py).
ARTIFACTS = {
    "caption": {"caption": "a cup of coffee on a table"},
    "dense_caption": {"regions": [{"caption": "a red saucer", "box": [76.8, 72.0, 480.0, 388.0]}]},
    "detect": {"objects": [
        {"label": "cup", "confidence": 0.912, "box": [174.0, 18.0, 408.0, 296.0]},
        {"label": "spoon", "confidence": 0.41, "box": [324.0, 66.0, 424.8, 326.0]},
        {"label": "dog", "confidence": 0.12, "box": [0.0, 0.0, 10.0, 10.0]},  # below the floor
    ]},
    "ocr": {"lines": [{"text": "ESPRESSO  BAR", "box": [0, 0, 50, 10], "confidence": 0.8},
                      {"text": "noise", "box": [0, 0, 5, 5], "confidence": 0.02}]},
    "tags": {"tags": [{"tag": "coffee", "score": 0.6}, {"tag": "wood", "score": 0.01}]},
}


def test_context_from_artifacts_normalises_rounds_and_filters():
    ctx = from_artifacts(ARTIFACTS, 600, 400)
    assert ctx.captions == ("A cup of coffee on a table.",)
    assert [(o.label, o.box, o.source) for o in ctx.objects] == [
        ("cup", (0.29, 0.045, 0.68, 0.74), "detect"),
        ("spoon", (0.54, 0.165, 0.708, 0.815), "detect"),
        ("a red saucer", (0.128, 0.18, 0.8, 0.97), "dense_caption"),
    ]
    assert ctx.ocr == ("ESPRESSO BAR",) and ctx.tags == ("coffee",) and ctx.detected
    assert ctx.detection_counts() == Counter({"cup": 1, "spoon": 1})
    assert ctx.text() == ("A cup of coffee on a table.\n\n"
                          "cup: [0.29, 0.045, 0.68, 0.74]\nspoon: [0.54, 0.165, 0.708, 0.815]\n"
                          "a red saucer: [0.128, 0.18, 0.8, 0.97]\n\nTags: coffee\n\nText in the image:\nESPRESSO BAR")
    assert ctx.text(boxes=False).splitlines()[2] == "Objects: cup, spoon, a red saucer"
    assert Context.from_dict(json.loads(json.dumps(ctx.to_dict()))) == ctx


def test_context_limits_and_box_edges():
    objects = [{"label": "car", "confidence": 0.5 + i / 100, "box": [i, i, 700 + i, 500]} for i in range(40)]
    ctx = from_artifacts({"detect": {"objects": objects}}, 640, 480, ContextOptions(max_objects=5))
    assert len(ctx.objects) == 5 and ctx.objects[0].confidence == 0.89  # most confident first
    assert all(o.box[2] == 1.0 and o.box[3] == 1.0 for o in ctx.objects)  # clipped into the image
    assert normalise_box([30, 40, 10, 20], 100, 100) == (0.1, 0.2, 0.3, 0.4)  # corners put in order
    assert normalise_box([1, 1, 2, 2], 3, 3) == (0.333, 0.333, 0.667, 0.667)
    assert from_artifacts({"detect": {"objects": []}}, 10, 10).detected  # detection ran, found nothing
    assert from_artifacts({"ocr": {"lines": []}}, 10, 10).empty
    long = from_artifacts({"ocr": {"lines": [{"text": "x" * 500, "confidence": 1.0}] * 40}}, 10, 10)
    assert len(long.ocr) == ContextOptions().max_ocr_lines and len(long.ocr[0]) == ContextOptions().max_ocr_chars


# -- vocabulary ----------------------------------------------------------------------------------
def test_vocabulary_covers_the_tag_lists_and_maps_synonyms():
    for word, canon in [("puppies", "dog"), ("women", "person"), ("sofa", "couch"), ("mobile phones", "cell phone"),
                        ("doughnut", "donut"), ("knives", "knife"), ("espresso", "coffee"), ("Fire Hydrants",
                                                                                              "fire hydrant")]:
        assert VOCAB.canonical(word) == canon, word
    for generic in ("animal", "food", "orange", "watch", "hand", "table"):
        assert VOCAB.canonical(generic) is None, generic
    assert {"giraffe", "toothbrush", "saxophone", "croissant"} <= VOCAB.classes
    assert plural("bus") == "buses" and plural("strawberry") == "strawberries" and plural("hot dog") == "hot dogs"
    assert tokenize("The dog's bowl, $2.50!") == ["the", "dog", "bowl", ",", "$", "2.50", "!"]


@pytest.mark.parametrize("text, expected", [
    ("A dog sits on the sofa.", [("dog", False, None), ("couch", False, None)]),
    ("There is no dog in the picture.", [("dog", True, None)]),
    ("The man isn't holding an umbrella.", [("person", False, None), ("umbrella", True, None)]),
    ("No cat, but a dog.", [("cat", True, None), ("dog", False, None)]),
    ("Two large brown puppies play.", [("dog", False, 2)]),
    ("Both cats sleep.", [("cat", False, 2)]),
    ("3 people and 1 car.", [("person", False, 3), ("car", False, None)]),
    ("A latte costs $2 cup", [("coffee", False, None), ("cup", False, None)]),
    ("The teddy bear sits next to a bear.", [("teddy bear", False, None), ("bear", False, None)]),
])
def test_mentions(text, expected):
    assert [(m.canonical, m.negated, m.count) for m in VOCAB.mentions(text)] == expected


# -- filters -------------------------------------------------------------------------------------
CONTEXT = Context(width=600, height=400, captions=("A cup of espresso on a red saucer.",),
                  objects=(ContextObject("cup", (0.29, 0.05, 0.68, 0.74), "detect", 0.9),
                           ContextObject("cup", (0.7, 0.05, 0.9, 0.5), "detect", 0.8),
                           ContextObject("spoon", (0.5, 0.2, 0.7, 0.8), "detect", 0.7)),
                  ocr=("Latte 3.50",), detected=True)


@pytest.mark.parametrize("question, answer, expected", [
    ("What is on the saucer?", "A cup of espresso sits on the saucer.", []),
    ("Is there a dog?", "No, there is no dog in the image.", []),  # negated: asserts nothing
    ("What else is there?", "A dog sleeps next to the cup.", ["hallucination"]),
    ("Is there a dog?", "Yes, lying under the table.", ["hallucination"]),  # "yes" asserts the question's object
    ("How many cups?", "There are two cups on the table.", []),
    ("How many cups?", "There are three cups.", ["count"]),
    ("What is written?", "It says latte for 3.50.", []),  # OCR text is part of the context
    ("Where is the cup?", "The cup is at [0.29, 0.05, 0.68, 0.74].", ["leakage"]),
    ("Where is the cup?", "Its bounding box covers the middle.", ["leakage"]),
    ("What is it?", "According to the description, a cup.", ["leakage"]),
    ("What is it?", "The caption says it is a cup.", ["leakage"]),
    ("What is it?", "Based on the provided information, a cup.", ["leakage"]),
    ("What is it?", "I'm sorry, I cannot see the image.", ["refusal"]),
    ("What is it?", "As an AI, I think it is a cup.", ["refusal"]),
    ("How hot is it?", "It is impossible to determine the temperature.", ["refusal"]),
    ("What is it?", "An <image> of a cup.", ["structure"]),
    ("", "A cup.", ["structure"]),
])
def test_pair_filters(question, answer, expected):
    present, detected = context_facts(CONTEXT, VOCAB)
    found = sorted({r.filter for r in check_pair(question, answer, present, detected, VOCAB)})
    assert found == sorted(expected)


def test_filters_are_pure_functions_returning_reasons():
    assert structure("Q?", "A.") == [] and structure(" ", "") == ["the question is empty", "the answer is empty"]
    assert refusal("I apologize, but I can't tell.") and not refusal("Sorry is written on the sign.")
    assert leakage("(0.2, 0.4)") and not leakage("It costs 3.50 (cash).") and not leakage("In 2023 they sold 90.")
    assert hallucination("Q", "A giraffe.", {"cup"}, VOCAB) == ["'giraffe' is not in the image's context"]
    assert count_mismatch("Two spoons.", Counter({"spoon": 1}), VOCAB) == ["says 2 spoons, the detector found 1"]
    assert count_mismatch("Two forks.", Counter({"spoon": 1}), VOCAB) == []  # not detected: hallucination's job
    assert count_mismatch("There are not two spoons.", Counter({"spoon": 1}), VOCAB) == []


def test_no_count_check_when_detection_did_not_run():
    ctx = Context(width=10, height=10, captions=("Two cups on a table.",))
    present, detected = context_facts(ctx, VOCAB)
    assert detected is None
    assert check_pair("How many?", "There are five cups.", present, detected, VOCAB) == []


def test_repetition():
    pairs = [{"question": "What is it?", "answer": "It is a small red cup. It stands on a saucer."},
             {"question": "What colour?", "answer": "Red. It is a small red cup."},
             {"question": "what is it", "answer": "A cup."},
             {"question": "More?", "answer": "the cup the cup the cup the cup the cup"}]
    found = repetition(pairs)
    assert set(found) == {1, 2, 3}
    # a run of six words said again, in the same answer or a later one (the 135M default's habit)
    said = repetition([{"question": "Total?", "answer": "It is 17.43, and the item is 12 Elm Street 14 Mar."},
                       {"question": "Spent?", "answer": "17.43 was spent, and the item is 12 Elm Street 14 Mar."}])
    assert said == {1: ["says 'and the item is 12 elm' again"]}
    assert "repeats the sentence" in found[1][0] and "asked before" in found[2][0] and "over and over" in found[3][0]


def record(kind="conversation", pairs=(), problems=(), raw="x", **kw) -> Record:
    return Record(id=f"abc-{kind}", image="a.png", kind=kind, image_sha256="abc" * 20, context=CONTEXT.to_dict(),
                  raw=raw, pairs=tuple({"question": q, "answer": a} for q, a in pairs), problems=tuple(problems), **kw)


def test_apply_filters_drops_pairs_and_rejects_empty_records():
    good = ("What is on the saucer?", "A cup of espresso.")
    bad = ("What else?", "A dog and a cat.")
    r = apply_filters(record(pairs=[good, bad, good]))
    assert r.status == "accepted" and r.kept == (0,)
    assert {(x.filter, x.pair) for x in r.reasons} == {("hallucination", 1), ("repetition", 2)}
    assert apply_filters(record(pairs=[bad])).status == "rejected"
    broken = apply_filters(record(pairs=[good], problems=["the last question has no answer"]))
    assert broken.status == "rejected" and broken.reasons[0] == Reason("structure", "the last question has no answer")
    assert apply_filters(record(pairs=[])).reasons == (Reason("structure", "no question/answer pair"),)
    assert apply_filters(r) == r  # idempotent: rerunning gives the same verdict
    error = Record(id="e", image="a.png", kind="detail", status="error", error="boom")
    assert apply_filters(error) is error


def test_duplicates_by_pixel_hash_first_record_wins():
    a, b, c = record(pairs=[("Q?", "A cup.")]), record(pairs=[("Q?", "A cup.")]), record(kind="detail")
    b = b.with_(image="copy/a.png")
    marked = mark_duplicates([apply_filters(a), apply_filters(b), c])
    assert marked[0].status == "accepted" and marked[2].reasons == c.reasons
    assert marked[1].status == "rejected" and marked[1].reasons[0] == Reason("duplicate", "the same pixels as a.png")
    assert apply_filters(marked[1]).status == "rejected"  # a refilter keeps the duplicate verdict


# -- prompts -------------------------------------------------------------------------------------
def test_shipped_prompts_load_and_their_examples_pass_the_filters():
    prompts = load_prompts(KINDS)
    for kind, p in prompts.items():
        assert 2 <= len(p.examples) <= 3 and "coordinates" in p.system
        for caps, pairs in (example_pairs(p) if kind != "detail" else
                            [(c, [QA("Describe it.", conv)]) for c, conv in p.examples]):
            assert pairs
            present = VOCAB.classes_in(caps)
            for qa in pairs:
                assert check_pair(qa.question, qa.answer, present, None, VOCAB) == [], (kind, qa)
            assert repetition([qa.to_dict() for qa in pairs]) == {}
    messages = prompts["conversation"].messages("CONTEXT")
    assert [m.role for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[-1].content == "CONTEXT"
    as_json = prompts["conversation"].messages("CONTEXT", "json")
    assert parse_json(as_json[2].content).pairs == parse_blocks(messages[2].content).pairs
    assert prompts["detail"].instructions


def write_folder(root: Path, kind: str, files: dict[str, str]) -> Path:
    folder = root / kind
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def test_few_shot_folder_in_llavas_layout(tmp_path):
    conv = "Question:\nWhat is it?\n===\nAnswer:\nA kite.\n"
    for kind in ("conversation", "detail_description", "complex_reasoning"):
        write_folder(tmp_path, kind, {"system_message.txt": f"System {kind}.", "000_caps.txt": "A kite.",
                                      "000_conv.txt": conv if kind != "detail_description" else "A kite flies."})
    prompts = load_prompts(KINDS, tmp_path)
    assert prompts["reasoning"].system == "System complex_reasoning." and prompts["detail"].examples[0][1] == \
        "A kite flies."
    one = load_prompts(["conversation"], tmp_path / "conversation")  # one kind's folder itself
    assert one["conversation"].digest() == prompts["conversation"].digest()


@pytest.mark.parametrize("files, message", [
    ({"000_caps.txt": "x", "000_conv.txt": "Question:\nA?\n===\nAnswer:\nB."}, "no system_message.txt"),
    ({"system_message.txt": "S"}, "has no examples"),
    ({"system_message.txt": "S", "000_caps.txt": "x"}, "no 000_conv.txt"),
    ({"system_message.txt": "S", "000_caps.txt": "x", "000_conv.txt": "just text"}, "Question:/===/Answer:"),
    ({"system_message.txt": "", "000_caps.txt": "x", "000_conv.txt": "y"}, "is empty"),
])
def test_bad_few_shot_folders_are_one_sentence(tmp_path, files, message):
    folder = write_folder(tmp_path, "conversation", files)
    with pytest.raises(ConfigError, match=message):
        load_folder(folder, "conversation")


def test_few_shot_folder_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_prompts(["conversation"], tmp_path / "nope")
    with pytest.raises(ConfigError, match="no detail_description/"):
        load_prompts(["detail"], tmp_path)
    write_folder(tmp_path, "x", {"system_message.txt": "S", "000_caps.txt": "c", "000_conv.txt": "A."})
    with pytest.raises(ConfigError, match="one kind"):
        load_prompts(["detail", "conversation"], tmp_path / "x")
    with pytest.raises(ConfigError, match="Unknown kind"):
        load_prompts(["dialogue"])


def test_the_facts_filter_is_the_grounding_check():
    """A generated answer whose times and prices contradict the OCR is rejected, naming the spans."""
    from mmreact.grounding import evidence_from_context

    ctx = Context(640, 480, ocr=("JAZZ NIGHT", "Doors open 7:30 PM", "Tickets $12"))
    present, detected = context_facts(ctx, VOCAB)
    evidence = evidence_from_context(ctx)
    bad = check_pair("When do the doors open and what does a ticket cost?",
                     "The doors open at 9:00 PM and tickets cost $25", present, detected, VOCAB, evidence)
    assert [(r.filter, r.detail) for r in bad] == [("facts", "time '9:00 PM' is not in the image's context"),
                                                   ("facts", "amount '$25' is not in the image's context")]
    good = check_pair("When do the doors open?", "The doors open at 7:30 PM; tickets are $12.", present, detected,
                      VOCAB, evidence)
    assert good == []


# -- the adversarial table (issue 22): a wrong pair cannot pass, a right one is kept -------------
# Contexts as the experts leave them: OCR alone (a poster, a book cover, signs), or a caption and a
# detector (a room). Every wrong pair names the rule that must reject it.
POSTER = Context(800, 1200, ocr=("JAZZ NIGHT", "The Blue Note Quartet", "Friday March 8", "Doors open 7:30 PM",
                                 "Tickets $12", "Riverside Hall"), sources=("ocr",))
BOOK = Context(600, 900, ocr=("THE QUIET RIVER", "a novel", "ANNA BERG"), sources=("ocr",))
SIGN = Context(400, 600, ocr=("CAUTION", "WET FLOOR"), sources=("ocr",))
EXIT = Context(400, 200, ocr=("SALIDA DE EMERGENCIA",), sources=("ocr",))
ROOM = Context(640, 480, captions=("A dog lying on a red couch next to a lamp.",),
               objects=(ContextObject("dog", (0.1, 0.2, 0.5, 0.9), "detect", 0.9),
                        ContextObject("couch", (0.0, 0.3, 1.0, 1.0), "detect", 0.8)),
               detected=True, sources=("caption", "detect"))
# A description that is the OCR lines pasted in (a context dump):
DUMP = "JAZZ NIGHT The Blue Note Quartet Friday March 8 Doors open 7:30 PM Tickets $12 Riverside Hall"
#: (context, kind, question, answer, the rule that must reject it)
BAD = [
    (POSTER, "conversation", "What is the event?", "What is the event?", "echo"),
    (POSTER, "conversation", "", "Jazz night.", "structure"),
    (POSTER, "conversation", "Who plays?", "The band is the band that is not the band of the night.", "repetition"),
    (POSTER, "conversation", "What is it?", "The night is the jazz that is not the jazz of the night.", "repetition"),
    (SIGN, "conversation", "Who parked here?", "The person is the person who is parked on the floor.", "repetition"),
    (POSTER, "conversation", "What is the night for the night of jazz?", "It is a jazz night.", "repetition"),
    (POSTER, "conversation", "What is the event?", "An <image> of a jazz poster.", "structure"),
    (POSTER, "conversation", "What is the event?", "[ANSWER]", "placeholder"),
    (POSTER, "conversation", "[QUESTION]", "Jazz night.", "placeholder"),
    (POSTER, "conversation", "What is the event?", "Lorem ipsum dolor sit amet.", "placeholder"),
    (POSTER, "conversation", "Who is playing?", "N/A", "placeholder"),
    (POSTER, "conversation", "Who is playing?", ".", "placeholder"),
    (POSTER, "conversation", "Who is playing?", "I don't know.", "refusal"),
    (POSTER, "conversation", "When do the doors open?", "The doors open at 9:00 PM.", "facts"),
    (POSTER, "conversation", "How much is a ticket?", "Tickets cost $25.", "facts"),
    (POSTER, "conversation", "What is the event?", "El concierto de jazz es el viernes por la noche.", "language"),
    (POSTER, "conversation", "What is the event?", "这是一场爵士音乐会。", "language"),
    (POSTER, "conversation", "When do the doors open?",
     "According to the extracted text, the doors open at 7:30 PM.", "leakage"),
    (POSTER, "conversation", "What is the event?", "Jazz night is a night of jazz music and more. " * 230, "length"),
    (POSTER, "detail", "Describe the image in detail.", DUMP, "copy"),
    (POSTER, "conversation", "Which band plays?", "The Beatles play their song Yesterday.", "facts"),
    (SIGN, "conversation", "Where is this sign?", "It is in New York City Hospital.", "facts"),
    (SIGN, "conversation", "What is this place?", "It is a hospital.", "unrelated"),
    (POSTER, "conversation", "Is there a dog?", "Yes, a dog sits by the door.", "hallucination"),
    (ROOM, "conversation", "What is on the couch?", "A cat is sleeping on the couch.", "hallucination"),
    (ROOM, "conversation", "How many dogs are there?", "There are three dogs.", "count"),
    (ROOM, "conversation", "Where is the dog?", "The dog is at [0.1, 0.2, 0.5, 0.9].", "leakage"),
    (ROOM, "conversation", "What is it?", "The caption says a dog lies on a couch.", "leakage"),
    (POSTER, "conversation", "Who is playing?", "I'm sorry, I cannot see the image.", "refusal"),
    (POSTER, "conversation", "¿Qué día es el concierto?", "Friday, March 8.", "language"),
    (POSTER, "conversation", "Who is playing?", "Unknown.", "refusal"),
    (POSTER, "conversation", "What day is it?", "The event is on March 12.", "facts"),
    (POSTER, "conversation", "Who is playing?", "The answer is {answer}.", "placeholder"),
    (POSTER, "conversation", "When is it?", "Is it on Friday?", "echo"),
    (POSTER, "conversation", "How much is a ticket?",
     "Based on the provided information, tickets cost $12.", "leakage"),
    (POSTER, "conversation", "What is the event?", "Le concert a lieu vendredi soir avec le quartet.", "language"),
    (POSTER, "conversation", "What is the event?",
     "Das Konzert ist am Freitag und die Karten kosten zwölf Dollar.", "language"),
    (ROOM, "detail", "Describe the image.",
     "A man rides a bicycle down a busy city street full of cars.", "hallucination"),
    (BOOK, "conversation", "Who wrote the book?", "It was written by Ernest Hemingway.", "facts"),
    (SIGN, "conversation", "What color is the sign?", "The sign is bright yellow.", "unrelated"),
    (POSTER, "reasoning", "Why would someone go?", "Text in the image: JAZZ NIGHT, so they like jazz.", "leakage"),
]
#: (context, kind, question, answer): correct pairs, each of which must be kept
GOOD = [
    (POSTER, "conversation", "What is the event?", "It is a jazz night with The Blue Note Quartet."),
    (POSTER, "conversation", "When do the doors open?", "The doors open at 7:30 PM."),
    (POSTER, "conversation", "How much is a ticket?", "A ticket costs $12."),
    (POSTER, "conversation", "Where is the concert?", "At Riverside Hall."),
    (POSTER, "conversation", "What day is the concert?", "It is on Friday, March 8."),
    (BOOK, "conversation", "What is the title of the book?", "The book is called The Quiet River."),
    (BOOK, "conversation", "Who wrote it?", "It was written by Anna Berg."),
    (BOOK, "conversation", "Is it a novel?", "Yes, the cover says it is a novel."),
    (BOOK, "detail", "Describe the image in detail.",
     "The cover of the novel The Quiet River by Anna Berg shows its title in large letters."),
    (BOOK, "conversation", "What kind of book is this?", "It is a novel, The Quiet River by Anna Berg."),
    (ROOM, "conversation", "What is on the couch?", "A dog is lying on the red couch."),
    (ROOM, "conversation", "Is there a cat?", "No, there is no cat, only a dog."),
    (ROOM, "conversation", "How many dogs are there?", "There is one dog."),
    (ROOM, "detail", "Describe the image in detail.", "A dog rests on a red couch, and a lamp stands beside it."),
    (SIGN, "conversation", "What does the sign warn about?", "It warns that the floor is wet."),
    (SIGN, "reasoning", "Why is the sign there?",
     "The floor is wet, so people should walk carefully to avoid slipping."),
    (POSTER, "conversation", "Who is playing?", "The Blue Note Quartet is playing."),
    (EXIT, "conversation", "What does the sign say?",
     "The sign says SALIDA DE EMERGENCIA, which means emergency exit."),
    (POSTER, "conversation", "Is the concert on Friday?", "Yes."),
    (POSTER, "conversation", "When can people go in?", "They can go in from 7:30 PM, when the doors open."),
    (POSTER, "reasoning", "What could someone do at this event?",
     "They could listen to live jazz played by The Blue Note Quartet at Riverside Hall on Friday, March 8, after "
     "the doors open at 7:30 PM; a ticket costs $12, so it is an affordable night out for anyone who enjoys music."),
    (POSTER, "conversation", "How much would two tickets cost together?", "Two tickets would cost $24."),
    # a question after a statement is a friendly answer, not an echo
    (POSTER, "conversation", "How much is a ticket?", "A ticket costs $12. Would you like to go?"),
    # no word in common with the context, but the same thing: "puppy" is a "dog"
    (ROOM, "conversation", "Who is resting?", "A puppy is resting."),
]


def verdict(ctx: Context, kind: str, question: str, answer: str) -> list[Reason]:
    from mmreact.grounding import evidence_from_context

    present, detected = context_facts(ctx, VOCAB)
    return check_pair(question, answer, present, detected, VOCAB, evidence_from_context(ctx), kind=kind,
                      language="en", context_text=ctx.vocabulary_text())


@pytest.mark.parametrize("ctx, kind, question, answer, rule", BAD, ids=[f"{b[4]}-{i}" for i, b in enumerate(BAD)])
def test_a_wrong_pair_is_rejected_by_its_rule(ctx, kind, question, answer, rule):
    found = verdict(ctx, kind, question, answer)
    assert rule in {r.filter for r in found}, [(r.filter, r.detail) for r in found]
    assert all(r.filter in FILTERS and r.detail for r in found)  # every rejection names its rule and why


def test_every_correct_pair_is_kept():
    dropped = {(q, a): [(r.filter, r.detail) for r in verdict(ctx, kind, q, a)] for ctx, kind, q, a in GOOD}
    dropped = {k: v for k, v in dropped.items() if v}
    share = 1 - len(dropped) / len(GOOD)
    assert share == 1.0, (share, dropped)  # all 24 kept
    assert len(BAD) > 22 and len({b[4] for b in BAD}) >= 12


def test_object_words_count_only_when_an_expert_that_sees_objects_ran():
    """Text printed on a thing does not name the thing: with OCR alone, "book" is no evidence
    against "The book is called The Quiet River"; with a caption that saw a poster, it is."""
    ocr_only = verdict(BOOK, "conversation", "What is the title?", "The book is called The Quiet River.")
    assert ocr_only == []
    captioned = Context(600, 900, captions=("A poster on a wall.",), ocr=BOOK.ocr, sources=("caption", "ocr"))
    assert [r.filter for r in verdict(captioned, "conversation", "What is the title?",
                                      "The book is called The Quiet River.")] == ["hallucination"]
    detector_saw_nothing = Context(600, 900, ocr=BOOK.ocr, detected=True, sources=("detect", "ocr"))
    assert [r.filter for r in verdict(detector_saw_nothing, "conversation", "What is there?",
                                      "A book called The Quiet River.")] == ["hallucination"]


def test_a_pair_said_on_three_images_is_generic():
    def rec(i: int, pairs) -> Record:
        return apply_filters(Record(id=f"{i:016d}-conversation", image=f"{i}.png", kind="conversation",
                                    image_sha256=f"{i:064d}", context=CONTEXT.to_dict(), raw="x",
                                    pairs=tuple({"question": q, "answer": a} for q, a in pairs)))

    stock = ("What is on the saucer?", "A cup of espresso.")
    own = [("What is written?", "It says latte for 3.50."), ("Is there a spoon?", "Yes, a spoon.")]
    two = mark_generic([rec(0, [stock, own[0]]), rec(1, [stock])])
    assert [r.status for r in two] == ["accepted", "accepted"]  # twice is not yet generic
    three = mark_generic([rec(0, [stock, own[0]]), rec(1, [stock]), rec(2, [own[1], ("What is ON the saucer",
                                                                                     "a cup of espresso")])])
    assert [(r.status, r.kept) for r in three] == [("accepted", (1,)), ("rejected", ()), ("accepted", (0,))]
    assert three[1].reasons == (Reason("generic", "said word for word on 3 images", 0),)
    assert mark_generic(three) == three  # idempotent


def test_the_prompt_language_is_the_expected_one(tmp_path):
    """A Spanish few-shot folder expects Spanish replies: they pass, and English ones do not."""
    write_folder(tmp_path, "conversation", {
        "system_message.txt": "Eres un asistente que ve la imagen. Escribe una conversación sobre la imagen, "
                              "con preguntas y respuestas que se puedan contestar con lo que hay en ella.",
        "000_caps.txt": "Una taza.", "000_conv.txt": "Question:\n¿Qué hay?\n===\nAnswer:\nUna taza."})
    prompt = load_prompts(["conversation"], tmp_path)["conversation"]
    assert prompt.language == "es" and load_prompts(["conversation"])["conversation"].language == "en"
    present, detected = context_facts(CONTEXT, VOCAB)
    spanish = check_pair("¿Qué hay en la mesa?", "Hay una taza de café con una cuchara.", present, detected, VOCAB,
                         language="es")
    english = check_pair("What is on the table?", "There is a cup of coffee with a spoon on the saucer.", present,
                         detected, VOCAB, language="es")
    assert spanish == [] and [r.filter for r in english] == ["language", "language"]  # question and answer


def test_a_long_reply_outside_the_format_is_rejected_for_its_length():
    """A 10,000-character answer is flagged format_ok=false by the parser's grammar check, and
    the length rule acts on it."""
    long = "The cup of espresso stands on a red saucer. " * 230
    r = apply_filters(record(kind="detail", pairs=[("Describe the image.", long)], raw=long, format_ok=False))
    assert r.status == "rejected" and "length" in {x.filter for x in r.reasons}
