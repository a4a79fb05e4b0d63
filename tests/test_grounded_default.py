"""The embedded default answers from the evidence: never format text, never an invented number.

Real runs of the embedded default (SmolLM2-135M + the real OCR expert, shipped weights) on every
image of the built-in eval set (each with the first question the set asks about it), the
README's example documents and a receipt rendered here: the answer must be built from what the
experts read.
"""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.slow

#: Text of the observations' format (headings, the box legend, coordinates), never content.
FORMAT = re.compile(r"\[\s*-?\d+(?:\.\d+)?\s*(?:,\s*-?\d+(?:\.\d+)?\s*){3}\]|\[x1|x1, y1|Image size|pixels \(boxes|"
                    r"Text lines in reading order|\(unsure\)|<\s*/?\s*observation|No text found|reading order")


def _questions():
    from pathlib import Path

    from mmreact.eval.dataset import load_dataset

    root = Path(__file__).resolve().parents[1]
    first: dict[tuple[str, ...], str] = {}  # every image once, with the first question asked about it
    for it in load_dataset("builtin"):
        first.setdefault(tuple(it.images), it.question)
    out: list[tuple[str, list[str]]] = [(q, list(images)) for images, q in first.items()]
    for name in ("receipt.png", "poster.png", "book.png", "label.png"):
        out.append(("What does the text say?", [str(root / "examples" / name)]))
    return out


@pytest.fixture(scope="module")
def agent():
    from mmreact import Agent

    return Agent()  # the embedded default, every tool that is ready here (OCR)


def test_the_default_grounds_its_answers(agent) -> None:
    assert agent.grounding == "constrain"


@pytest.mark.parametrize(("question", "images"), _questions(), ids=lambda v: str(v)[:40])
def test_no_answer_holds_format_text_and_every_fact_was_seen(agent, question: str, images: list[str]) -> None:
    result = agent.run(question, images)
    assert result.ok, result.message
    assert not FORMAT.search(result.answer), result.answer
    check = result.trace.grounding
    assert check is not None and check.mode == "constrain"
    assert check.supported, (result.answer, check.summary())
    last = result.trace.steps[-1]
    assert last.decided in ("ranked", "forced", "without_thought")


def test_a_rendered_receipt_is_answered_from_its_total(agent, tmp_path) -> None:
    from fixtures import render_receipt

    receipt = render_receipt(items=(("Tea", "2.10"), ("Scone", "3.40")), shop="HARBOUR CAFE")
    result = agent.run("What is the total on this receipt?", [receipt.save(tmp_path / "r.png")])
    assert "5.50" in result.answer
    (fact,) = [f for f in result.trace.grounding.facts if f.kind == "number"]
    assert fact.supported and fact.evidence is not None and fact.evidence.box is not None


def test_llama_cpp_decodes_under_the_grounded_grammar(tmp_path) -> None:
    """Without ranking (no prefill: as llama.cpp's server decodes) the answer comes from llama.cpp's own
    grammar engine, decoding the GBNF of the grounded language: a run of words of what OCR read."""
    from fixtures import render_receipt

    from mmreact import Agent
    from mmreact.llms.gguf import GGUFLLM, default_model_path
    from mmreact.llms.grammar import EMBEDDED

    llm = GGUFLLM(default_model_path(), options=EMBEDDED, prefill=False, name="gguf:no-prefill")
    receipt = render_receipt()
    result = Agent(llm, tools=["ocr"]).run("What is the total on this receipt?", [receipt.save(tmp_path / "r.png")])
    answer = result.answer
    assert result.trace.steps[-1].decided == "without_thought"  # decoded, not ranked
    lines = [" ".join(line.split()) for line in receipt.lines]
    assert any(answer in line for line in lines), answer  # OCR reads the rendered lines exactly here
    assert result.trace.grounding.mode == "constrain" and result.trace.grounding.supported
